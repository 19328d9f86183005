// Every error answer is RFC 9457 problem+json with a stable code, its status and title
// from the one table (../errors.ts); fastify's own errors are mapped by their codes.
// Anything else is a logged 500 that says nothing about the inside.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { PROBLEMS, type ErrorCode } from '../errors.ts';
import { RegistryError } from '../registry/errors.ts';

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload-too-large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported-media-type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid-request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid-request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid-request',
  FST_ERR_VALIDATION: 'invalid-request',
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
  const { status, title } = PROBLEMS[code];
  // The store is expected to reach the revision soon: say when to ask again.
  if (code === 'revision-not-reached') headers = { 'retry-after': '1', ...headers };
  return reply
    .code(status)
    .headers(headers)
    .type('application/problem+json')
    .send(JSON.stringify({ type: `https://etcd-discovery-gateway.dev/problems/${code}`, title, status, detail, code }));
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

export default fp(async function errors(app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const known = describe(err);
    if (known) {
      if (known.code === 'store-unavailable') req.log.debug({ err }, 'store unavailable');
      return sendProblem(reply, known.code, known.detail, err instanceof HttpProblem ? err.headers : {});
    }
    req.log.error({ err }, 'unexpected error');
    return sendProblem(reply, 'internal', 'the gateway failed to answer this request; see its log');
  });
  app.setNotFoundHandler((req, reply) => sendProblem(reply, 'not-found', `no route matches ${req.method} ${req.url.split('?')[0]}`));
});
