// Every problem code the gateway answers with, its HTTP status and its title: the one table.
// The error handler (plugins/errors.ts) answers from it, the OpenAPI Problem.code enum
// (routes/schemas.ts, and through the generated types the client) is built from it, and
// README.md and docs/errors.md list it (test/error-codes.test.ts compares them).

export const PROBLEMS = {
  'invalid-request': { status: 400, title: 'Invalid request' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  forbidden: { status: 403, title: 'Forbidden' },
  'instance-not-found': { status: 404, title: 'Instance not found' },
  'no-instance-available': { status: 404, title: 'No instance available' },
  'not-found': { status: 404, title: 'Not found' },
  'method-not-allowed': { status: 405, title: 'Method not allowed' },
  'request-timeout': { status: 408, title: 'Request timeout' },
  'payload-too-large': { status: 413, title: 'Payload too large' },
  'unsupported-media-type': { status: 415, title: 'Unsupported media type' },
  'too-many-requests': { status: 429, title: 'Too many requests' },
  'headers-too-large': { status: 431, title: 'Request header fields too large' },
  internal: { status: 500, title: 'Internal error' },
  'store-unavailable': { status: 503, title: 'Store unavailable' },
  'too-many-streams': { status: 503, title: 'Too many streams' },
  'revision-not-reached': { status: 504, title: 'Revision not reached' },
  'store-full': { status: 507, title: 'Store full' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof PROBLEMS;

export const ERROR_CODES = Object.keys(PROBLEMS) as ErrorCode[];
