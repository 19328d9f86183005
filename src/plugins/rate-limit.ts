// RATE_LIMIT_MAX: requests per fixed window per token, or per client address without
// a valid one. Probes and scrapes are not counted, except a refused token: every 401,
// on every route, counts against the caller (token guessing on /metrics too).
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { isRefused } from './auth.ts';

export default fp(async function rateLimits(app: FastifyInstance, opts: { max: number; windowMs: number }) {
  await app.register(rateLimit, {
    max: opts.max,
    timeWindow: opts.windowMs,
    // An orchestrator must always see the gateway; the auth plugin's onRequest hook ran before this one.
    allowList: (req) => (req.url.startsWith('/health') || req.url.startsWith('/metrics')) && !isRefused(req),
    // Per valid token, else per client address (behind a trusted proxy, the one it
    // names: TRUST_PROXY): an unverified header must not buy a fresh allowance.
    keyGenerator: (req) => (req.accessToken ? `token:${req.accessToken.name}` : `ip:${req.ip}`),
    errorResponseBuilder: (_req, ctx) =>
      Object.assign(new Error(`more than ${ctx.max} requests in a minute; retry after ${ctx.after}`), {
        statusCode: 429,
        code: 'too-many-requests',
      }),
  });
});
