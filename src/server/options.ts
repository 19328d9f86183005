// fastify's options for the gateway: limits, routing, request ids, errors raised
// before a route runs, and the server itself (plain HTTP, or TLS with HTTP/2: tls.ts).
import { randomUUID } from 'node:crypto';
import type { FastifyServerOptions } from 'fastify';
import type { DestinationStream } from 'pino';
import type { Config } from '../config.ts';
import { answerClientError, answerError } from '../plugins/errors.ts';
import { RequestLines } from './logger.ts';
import { createTlsServer } from './tls.ts';

/** An instance body may be up to 64 KiB (a batch up to 1 MiB: routes/batch.ts). */
const BODY_LIMIT = 64 * 1024;
/** Longest time a client may take to send a whole request (headers and body): slow clients. */
const RECEIVE_TIMEOUT_MS = 30_000;

export interface ServerDeps {
  /** Where log lines go instead of stdout (tests capture them), with the same redaction. */
  logStream?: DestinationStream;
  /** Time to receive a request (default RECEIVE_TIMEOUT_MS; tests use a short one). */
  receiveTimeoutMs?: number;
}

/**
 * TRUST_PROXY as fastify takes it. A hop count trusts that many hops from the socket
 * whoever they are, as Express does; fastify 5 itself turns a bare number into "trust
 * nothing", so it is passed as a function (docs/security.md says when a count is safe).
 */
function trustProxyOption(trust: Config['trustProxy']): FastifyServerOptions['trustProxy'] {
  return typeof trust === 'number' ? (_address: string, hop: number) => hop < trust : trust;
}

const REQ_ID_PREFIX = randomUUID().slice(0, 8);
let requestCount = 0;

export function serverOptions(config: Config, deps: ServerDeps): FastifyServerOptions {
  const receiveMs = deps.receiveTimeoutMs ?? RECEIVE_TIMEOUT_MS;
  const options: FastifyServerOptions = {
    // No logger of fastify's own: the gateway's is app.log (server/logger.ts says why).
    logger: false,
    // fastify would still build its per-request lines for the no-op logger: not even that.
    logController: new RequestLines(),
    bodyLimit: BODY_LIMIT,
    // Receiving the request only (headers and body): never cuts a long answer. Node checks
    // the deadlines every connectionsCheckingInterval (30 s by default: up to 60 s late).
    requestTimeout: receiveMs,
    ...({
      http: { headersTimeout: receiveMs, connectionsCheckingInterval: Math.min(1000, receiveMs / 4) },
    } as Partial<FastifyServerOptions>),
    // On close only idle keep-alive sockets are cut: requests in flight finish (plugins/shutdown.ts).
    forceCloseConnections: 'idle',
    // Above any URL Node accepts (16 KiB of headers on HTTP/1.1, 64 KiB on HTTP/2): a name or id
    // of any length meets the token check (401) and validation (400), never the router's 414.
    routerOptions: { maxParamLength: 65_536 },
    // Errors raised before a route runs are problem+json too.
    frameworkErrors: answerError,
    clientErrorHandler: answerClientError,
    // Off by default: X-Forwarded-For is believed only from the proxies TRUST_PROXY names (req.ip).
    trustProxy: trustProxyOption(config.trustProxy),
    // Unique across replicas and restarts, cheaper than a UUID per request.
    genReqId: () => `${REQ_ID_PREFIX}-${(++requestCount).toString(36)}`,
  };
  if (!config.tls) return options;
  const tls = config.tls;
  return {
    ...options,
    // HTTP/2 by ALPN, so that a browser's streams share one connection; HTTP/1.1 still accepted.
    http2: true,
    serverFactory: (handler: Parameters<typeof createTlsServer>[1]) => createTlsServer(tls, handler, receiveMs),
    // An HTTP/2 server cannot close only idle connections: plugins/shutdown.ts does it.
    forceCloseConnections: false,
  } as unknown as FastifyServerOptions;
}
