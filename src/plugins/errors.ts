// Every error answer is RFC 9457 problem+json with a stable code, its status and title
// from the one table (../errors.ts); fastify's own errors are mapped by their codes.
// Anything else is a logged 500 that says nothing about the inside.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import FindMyWay from 'find-my-way';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { PROBLEMS, type ErrorCode } from '../errors.ts';
import { RegistryError } from '../registry/errors.ts';

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload-too-large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported-media-type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid-request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid-request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid-request',
  FST_ERR_VALIDATION: 'invalid-request',
  FST_ERR_BAD_URL: 'invalid-request',
};

export class HttpProblem extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function sendProblem(reply: FastifyReply, code: ErrorCode, detail: string, headers: Record<string, string> = {}): FastifyReply {
  const { status } = PROBLEMS[code];
  // The store is expected to reach the revision soon: say when to ask again.
  if (code === 'revision-not-reached') headers = { 'retry-after': '1', ...headers };
  return reply.code(status).headers(headers).type(PROBLEM_TYPE).send(problemBody(code, detail));
}

const PROBLEM_TYPE = 'application/problem+json';

function problemBody(code: ErrorCode, detail: string): string {
  const { status, title } = PROBLEMS[code];
  return JSON.stringify({ type: `https://etcd-discovery-gateway.dev/problems/${code}`, title, status, detail, code });
}

function describe(err: FastifyError): { code: ErrorCode; detail: string } | undefined {
  if (err instanceof RegistryError || err instanceof HttpProblem) return { code: err.code, detail: err.message };
  if (err.validation) {
    const where = err.validationContext ?? 'request';
    const details = err.validation.map((v) => {
      const field = [where, ...(v.instancePath || '').split('/').filter(Boolean)].join('.');
      const missing = (v.params as { missingProperty?: string })?.missingProperty;
      const extra = (v.params as { additionalProperty?: string })?.additionalProperty;
      if (missing) return `${field}.${missing} is required`;
      if (extra) return `${field}.${extra} is not a known field`;
      return `${field} ${v.message ?? 'is invalid'}`;
    });
    return { code: 'invalid-request', detail: [...new Set(details)].slice(0, 5).join('; ') };
  }
  const mapped = err.code ? FASTIFY_CODES[err.code] : undefined;
  if (mapped) return { code: mapped, detail: err.message };
  if (err.statusCode === 429) return { code: 'too-many-requests', detail: err.message };
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return { code: 'invalid-request', detail: err.message };
  return undefined;
}

/** The error handler, also fastify's `frameworkErrors`: errors the router raises before any route or hook runs. */
export function answerError(err: FastifyError, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const known = describe(err);
  if (known) {
    if (known.code === 'store-unavailable') req.server.log.debug({ reqId: req.id, err }, 'store unavailable');
    return sendProblem(reply, known.code, known.detail, err instanceof HttpProblem ? err.headers : {});
  }
  req.server.log.error({ reqId: req.id, err }, 'unexpected error');
  return sendProblem(reply, 'internal', 'the gateway failed to answer this request; see its log');
}

/** Node's HTTP parser refused the request (no fastify request exists): a problem+json written on the socket. */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  if (socket.writable) {
    const [code, detail] = CLIENT_ERRORS[err.code ?? ''] ?? ['invalid-request', 'the request is not valid HTTP'];
    const body = problemBody(code, detail);
    const { status } = PROBLEMS[code];
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: ${PROBLEM_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

const CLIENT_ERRORS: Record<string, [ErrorCode, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: ['request-timeout', 'the request did not arrive in time'],
  HPE_HEADER_OVERFLOW: ['headers-too-large', 'the request line and headers are larger than the gateway accepts'],
};

/**
 * Which methods have a route for a path: a request whose path matches a route but not its
 * method is 405 with `Allow` (RFC 9110), not 404. A second router of the same paths, asked
 * only when fastify's own found nothing.
 */
class AllowedMethods {
  private readonly router = FindMyWay({ ignoreTrailingSlash: false });
  private readonly methods = new Set<string>();

  add(methods: string | string[], url: string): void {
    for (const method of [methods].flat()) {
      this.methods.add(method);
      this.router.on(method as FindMyWay.HTTPMethod, url, () => undefined);
    }
  }

  for(path: string): string[] {
    return [...this.methods].filter((method) => this.router.find(method as FindMyWay.HTTPMethod, path) !== null);
  }
}

export default fp(async function errors(app: FastifyInstance) {
  const allowed = new AllowedMethods();
  // A catch-all (the CORS preflight's `OPTIONS *`) says nothing about which paths exist.
  app.addHook('onRoute', (route) => {
    if (route.url !== '*') allowed.add(route.method, route.url);
  });
  app.setErrorHandler(answerError);
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!;
    const methods = allowed.for(path);
    if (methods.length > 0)
      return sendProblem(reply, 'method-not-allowed', `${req.method} is not allowed on ${path}; allowed: ${methods.join(', ')}`, {
        allow: methods.join(', '),
      });
    return sendProblem(reply, 'not-found', `no route matches ${req.method} ${path}`);
  });
});
