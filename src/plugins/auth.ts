// Access control (API.md "Access control"): bearer tokens with per-service rights.
//
// Order, per request:
//   onRequest   find the token (Authorization: Bearer, or ?access_token= on change
//               streams); the rate limiter, a route-level onRequest hook that runs
//               after this one, then counts the request per token name or per address;
//   preParsing  no valid token: 401 unauthorized, before the body is read or anything
//               is validated; then 403 forbidden if a route parameter `name` or a
//               querystring `service` names a service the token may not use;
//   preValidation  the same check for every service a parsed body names (/batch items),
//               before any of it is validated or written.
// The checks go by those generic places, not by route, so new routes are covered.
// GET and HEAD need the read right, every other method the write right.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { isServiceName } from '../rules.ts';
import type { AccessToken, TokenSet } from '../auth/tokens.ts';
import { HttpProblem } from './errors.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The token this request carries, once the auth plugin has found it valid. */
    accessToken?: AccessToken;
  }
}

export interface AuthOptions {
  tokens: TokenSet;
  /** AUTH_METRICS: /metrics needs a (any) valid token. */
  protectMetrics: boolean;
}

/** Open whatever the tokens: probes, and the pages a browser loads before it has a token. */
const OPEN_ROUTES = new Set(['/health', '/health/live', '/health/ready', '/', '/openapi.json']);

const REALM = 'Bearer realm="etcd-discovery-gateway"';

type Failure = 'missing' | 'invalid';
const failures = new WeakMap<FastifyRequest, Failure>();

/** The request carries no valid token where one is needed: it will be answered 401. */
export function isRefused(req: FastifyRequest): boolean {
  return failures.has(req);
}

function isOpen(req: FastifyRequest, protectMetrics: boolean): boolean {
  // CORS preflights carry no credentials; an unmatched path is a plain 404.
  if (req.method === 'OPTIONS' || req.is404) return true;
  const url = req.routeOptions.url ?? '';
  if (OPEN_ROUTES.has(url) || url === '/docs' || url.startsWith('/docs/')) return true;
  return url === '/metrics' && !protectMetrics;
}

/** The presented secret: the Authorization header, or ?access_token= on a change stream only. */
function presented(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    return m ? m[1] : '';
  }
  if (!req.routeOptions.config?.stream) return undefined;
  const q = (req.query as Record<string, unknown> | undefined)?.access_token;
  const v = Array.isArray(q) ? q[0] : q;
  return typeof v === 'string' ? v : undefined;
}

/** Services a parsed body names: its own `service`, and that of every item of its arrays. */
function servicesInBody(body: unknown): string[] {
  if (typeof body !== 'object' || body === null) return [];
  const out: string[] = [];
  const visit = (x: unknown) => {
    const s = (x as { service?: unknown } | null)?.service;
    if (typeof s === 'string') out.push(s);
  };
  visit(body);
  for (const v of Object.values(body)) if (Array.isArray(v)) v.forEach(visit);
  return out;
}

function servicesInRequest(req: FastifyRequest): string[] {
  const out: string[] = [];
  const name = (req.params as Record<string, unknown> | undefined)?.name;
  if (typeof name === 'string') out.push(name);
  const service = (req.query as Record<string, unknown> | undefined)?.service;
  for (const s of Array.isArray(service) ? service : [service]) if (typeof s === 'string') out.push(s);
  return out;
}

function checkRights(req: FastifyRequest, token: AccessToken, services: string[]): void {
  if (!services.length) return;
  const write = req.method !== 'GET' && req.method !== 'HEAD';
  // A string outside the naming rules names no service: validation answers it with 400.
  for (const s of services.filter(isServiceName)) {
    if (write ? token.canWrite(s) : token.canRead(s)) continue;
    throw new HttpProblem(
      'forbidden',
      `token ${JSON.stringify(token.name)} may not ${write ? 'write' : 'read'} service ${JSON.stringify(s)}`,
    );
  }
}

export default fp(async function auth(app: FastifyInstance, opts: AuthOptions) {
  const { tokens, protectMetrics } = opts;

  app.addHook('onRequest', async (req) => {
    const secret = presented(req);
    // An open route never refuses a token, but learns a valid one: /health shows it the store's details.
    if (isOpen(req, protectMetrics)) {
      if (secret) req.accessToken = tokens.lookup(secret);
      return;
    }
    const token = secret ? tokens.lookup(secret) : undefined;
    if (token) {
      req.accessToken = token;
      req.canRead = token.canRead;
    } else failures.set(req, secret === undefined ? 'missing' : 'invalid');
  });

  app.addHook('preParsing', async (req) => {
    const failure = failures.get(req);
    if (failure === 'missing') {
      throw new HttpProblem('unauthorized', 'this gateway requires an access token: send Authorization: Bearer <token>', {
        'www-authenticate': REALM,
      });
    }
    if (failure === 'invalid') {
      throw new HttpProblem('unauthorized', 'the access token is not valid', { 'www-authenticate': `${REALM}, error="invalid_token"` });
    }
    if (req.accessToken) checkRights(req, req.accessToken, servicesInRequest(req));
  });

  app.addHook('preValidation', async (req) => {
    if (req.accessToken) checkRights(req, req.accessToken, servicesInBody(req.body));
  });
});
