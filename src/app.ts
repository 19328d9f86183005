// buildApp(config) -> a ready fastify instance: fastify's options, parsers and
// plugins, the registry (built by registry/index.ts), and the routes. No listening here.
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { DestinationStream } from 'pino';
import { readSettingFile, type Config } from './config.ts';
import type { Gateway } from './gateway.ts';
import { Metrics } from './metrics.ts';
import { TokenSet } from './auth/tokens.ts';
import dns from './dns/plugin.ts';
import auth from './plugins/auth.ts';
import errors, { answerClientError, answerError } from './plugins/errors.ts';
import observability, { loggableUrl, metricsRoute } from './plugins/observability.ts';
import openapi from './plugins/openapi.ts';
import { lazyChildLogger } from './plugins/request-logger.ts';
import timeouts from './plugins/timeouts.ts';
import { createStore, RegistryRoot } from './registry/index.ts';
import type { Store } from './registry/store/store.ts';
import pickRoutes from './routes/pick.ts';
import batchRoutes from './routes/batch.ts';
import eventRoutes from './routes/events.ts';
import healthRoutes from './routes/health.ts';
import instanceRoutes from './routes/instances.ts';
import prometheusRoutes from './routes/prometheus.ts';
import { Instance, Problem, Registered } from './routes/schemas.ts';
import { isHost } from './rules.ts';
import serviceRoutes from './routes/services.ts';
import { STREAM_SCHEMAS } from './routes/stream-schemas.ts';
import uiRoutes from './routes/ui.ts';
import { Hub } from './streams/hub.ts';
import { Views } from './routes/views.ts';
import { randomUUID } from 'node:crypto';
import type { Http2SecureServer, Http2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';

/** An instance body may be up to 64 KiB (a batch up to 1 MiB: routes/batch.ts). */
const BODY_LIMIT = 64 * 1024;
/** How often a closing gateway closes keep-alive connections whose answer has left. */
const IDLE_SWEEP_MS = 100;
/** How often an idle gateway checks that the store answers (discovery_store_up, readiness, stale answers). */
const STORE_PROBE_INTERVAL_MS = 2000;
/** RATE_LIMIT_MAX counts requests in fixed windows of this length (API.md: one minute). */
const RATE_LIMIT_WINDOW_MS = 60_000;
/**
 * Longest time an ordinary request may take from arrival to answer (503 after);
 * change streams have none and blocking queries their own (plugins/timeouts.ts).
 */
const HANDLER_TIMEOUT_MS = 30_000;
/** Longest time a client may take to send a whole request (headers and body): slow-body clients. */
const REQUEST_RECEIVE_TIMEOUT_MS = 30_000;

/**
 * TRUST_PROXY as fastify takes it. A hop count trusts that many hops from the socket
 * whoever they are, as Express does; fastify 5 itself turns a bare number into "trust
 * nothing", so it is passed as a function (docs/security.md says when a count is safe).
 */
function trustProxyOption(trust: Config['trustProxy']): FastifyServerOptions['trustProxy'] {
  return typeof trust === 'number' ? (_address: string, hop: number) => hop < trust : trust;
}

export interface AppDeps {
  /** A store to use instead of the one the config names (tests). */
  store?: Store;
  /** Extra fastify options. */
  fastify?: Partial<FastifyServerOptions>;
  /** Where log lines go instead of stdout (tests capture them), with the same redaction. */
  logStream?: DestinationStream;
  /** Interval of the background store probe (default STORE_PROBE_INTERVAL_MS). */
  storeProbeIntervalMs?: number;
  /** Rate-limit window (default RATE_LIMIT_WINDOW_MS; tests use a short one). */
  rateLimitWindowMs?: number;
  /** Handler timeout of ordinary routes (default HANDLER_TIMEOUT_MS). */
  handlerTimeoutMs?: number;
}

const REQ_ID_PREFIX = randomUUID().slice(0, 8);
let requestCount = 0;

export async function buildApp(config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  // A bad tokens file stops the start before the store is even tried.
  const tokens = config.authTokensFile ? TokenSet.load(config.authTokensFile) : undefined;
  const options: FastifyServerOptions = {
    logger: {
      level: config.logLevel,
      redact: { paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]' },
      serializers: { req: (req) => ({ method: req.method, url: loggableUrl(req.url), id: req.id }) },
      ...(deps.logStream ? { stream: deps.logStream } : {}),
    },
    // fastify's own two lines per request are off: plugins/observability.ts writes one (REQUEST_LOG).
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyChildLogger,
    bodyLimit: BODY_LIMIT,
    requestTimeout: REQUEST_RECEIVE_TIMEOUT_MS, // receiving the request only: never cuts a long answer
    // On close only idle keep-alive sockets are cut: requests in flight finish (streams and
    // parked queries are ended in preClose below).
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
    ...deps.fastify,
  };
  if (config.tls)
    Object.assign(options, {
      // HTTP/2 by ALPN, so that a browser's streams share one connection; HTTP/1.1 still accepted.
      http2: true,
      https: {
        allowHTTP1: true,
        cert: readSettingFile('TLS_CERT_FILE', config.tls.certFile),
        key: readSettingFile('TLS_KEY_FILE', config.tls.keyFile),
      },
      // An HTTP/2 server cannot close only idle connections: closeConnections below does it.
      forceCloseConnections: false,
    });
  const app = Fastify(options).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies are strict (no coercion: "port": "8080" is a 400); query strings are text and are parsed.
  const strict = new Ajv({ allErrors: false, coerceTypes: false, useDefaults: false, removeAdditional: false, strict: false });
  const lenient = new Ajv({ coerceTypes: 'array', useDefaults: true, removeAdditional: false, strict: false });
  for (const ajv of [strict, lenient]) ajv.addSchema(Instance).addFormat('host', isHost);
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : lenient).compile(schema));
  // An empty JSON body is null (a plain heartbeat); routes whose schema needs an object reject it.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    if (body === '' || (typeof body === 'string' && body.trim() === '')) return done(null, null);
    try {
      done(null, JSON.parse(body as string));
    } catch {
      done(Object.assign(new Error('the body is not valid JSON'), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' }), undefined);
    }
  });
  // JSON only: any other body is 415 (fastify would parse text/plain by default).
  app.removeContentTypeParser('text/plain');
  for (const schema of [Instance, Problem, Registered, ...STREAM_SCHEMAS]) app.addSchema(schema);

  const metrics = new Metrics();
  const log = (err: unknown) => ({ err: err instanceof Error ? err.message : undefined });
  const root = new RegistryRoot(
    deps.store ?? createStore(config),
    {
      prefix: config.prefix,
      defaultTtlSeconds: config.defaultTtlSeconds,
      writeDeadlineMs: config.writeDeadlineMs,
      probeIntervalMs: deps.storeProbeIntervalMs ?? STORE_PROBE_INTERVAL_MS,
    },
    {
      request: (op, seconds) => metrics.storeDuration.observe({ op }, seconds),
      reachability: (up, err) => {
        metrics.storeUp.set(up ? 1 : 0);
        if (up) app.log.info({ store: config.store.kind }, 'store reachable');
        else app.log.warn({ store: config.store.kind, ...log(err) }, 'store unreachable');
      },
      warning: (message) => app.log.warn({ store: config.store.kind }, message),
      alarms: (active) => {
        metrics.storeAlarms(active);
        if (active.length) app.log.warn({ store: config.store.kind, alarms: active }, 'store alarm raised');
        else app.log.info({ store: config.store.kind }, 'store alarms cleared');
      },
      read: (result) => metrics.cacheRequests.inc({ result }),
      registered: (n) => metrics.registrations.inc(n),
      deregistered: (n) => metrics.deregistrations.inc(n),
      heartbeat: (result) => metrics.heartbeats.inc({ result }),
      reloaded: () => metrics.watchRestarts.inc(),
      warn: (message, err) => app.log.warn(log(err), message),
      info: (message) => app.log.info(message),
    },
  );
  root.onChanges((changes) => {
    for (const c of changes) {
      metrics.watchEvents.inc({ type: c.type });
      if (c.reason === 'expired') metrics.expirations.inc();
    }
  });
  const views = new Views(config.cacheMaxBytes);
  root.onReset(() => views.clear());
  await root.start();
  const hub = new Hub(
    root,
    {
      history: config.eventHistory,
      keepAliveMs: config.sseKeepAliveSeconds * 1000,
      bufferBytes: config.sseBufferBytes,
      maxStreams: config.sseMaxStreams,
      memoryBudget: config.sseMemoryBudgetBytes,
      stallMs: config.sseStallSeconds * 1000,
    },
    {
      clients: (n) => metrics.sseClients.set(n),
      sent: (n) => metrics.sseEventsSent.inc(n),
      unread: (bytes) => metrics.sseUnreadBytes.set(bytes),
    },
  );
  const gateway: Gateway = { config, metrics, registry: root.registry, discovery: root.discovery, hub, health: root.health, views };
  app.decorate('gateway', gateway);
  app.decorate('registryRoot', root);

  let drainTimer: NodeJS.Timeout | undefined;
  const connections: Connections = config.tls ? tlsConnections(app.server as unknown as Http2SecureServer) : plainConnections(app.server);
  app.addHook('preClose', async () => {
    root.release();
    hub.closeAll();
    connections.finish();
    // Requests in flight get the drain (long enough for a write's store call and its wait
    // for the watch: config.ts) to finish; connections still open after that are cut.
    drainTimer = setTimeout(connections.cut, config.drainMs);
    drainTimer.unref();
  });
  app.addHook('onClose', async () => {
    clearTimeout(drainTimer);
    connections.cut();
    await root.close();
  });

  await app.register(errors);
  // Both give each route its own hooks as it is added: before any route.
  await app.register(timeouts, { timeoutMs: deps.handlerTimeoutMs ?? HANDLER_TIMEOUT_MS });
  await app.register(observability, { requestLog: config.requestLog });
  if (tokens) await app.register(auth, { tokens, protectMetrics: config.authMetrics });
  await app.register(openapi);
  await app.register(metricsRoute);
  if (config.corsOrigins) {
    await app.register(cors, {
      origin: config.corsOrigins === '*' ? '*' : config.corsOrigins,
      exposedHeaders: ['etag', 'x-registry-revision', 'x-registry-stale', 'age', 'location'],
    });
  }
  if (config.rateLimitMax) {
    await app.register(rateLimit, {
      max: config.rateLimitMax,
      timeWindow: deps.rateLimitWindowMs ?? RATE_LIMIT_WINDOW_MS,
      // Probes and scrapes are never limited: an orchestrator must see the gateway.
      allowList: (req) => req.url.startsWith('/health') || req.url.startsWith('/metrics'),
      // Per valid token (the auth plugin's onRequest hook ran before this one), else per
      // client address (behind a trusted proxy, the one it names: TRUST_PROXY): an
      // unverified header must not buy a fresh allowance.
      keyGenerator: (req) => (req.accessToken ? `token:${req.accessToken.name}` : `ip:${req.ip}`),
      errorResponseBuilder: (_req, ctx) =>
        Object.assign(new Error(`more than ${ctx.max} requests in a minute; retry after ${ctx.after}`), {
          statusCode: 429,
          code: 'too-many-requests',
        }),
    });
  }
  await app.register(dns, { tokens });
  for (const routes of [instanceRoutes, serviceRoutes, pickRoutes, prometheusRoutes, batchRoutes, eventRoutes, healthRoutes, uiRoutes])
    await app.register(routes);
  await app.ready();
  return app;
}

/** Ending a server's connections on close: ask them to finish, later cut what is still open. */
interface Connections {
  finish(): void;
  cut(): void;
}

/**
 * HTTP/1.1: Node closes only the keep-alive connections idle when closing starts;
 * close each one as soon as its answer is out, so the process exits when the last
 * answer is.
 */
function plainConnections(server: FastifyInstance['server']): Connections {
  let idleSweep: NodeJS.Timeout | undefined;
  return {
    finish: () => {
      idleSweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS);
      idleSweep.unref();
    },
    cut: () => {
      clearInterval(idleSweep);
      server.closeAllConnections();
    },
  };
}

/**
 * The HTTP/2 server (TLS) lacks closeAllConnections: keep its connections; on
 * close HTTP/2 sessions get GOAWAY (streams in flight go on), then everything
 * still open is cut.
 */
function tlsConnections(server: Http2SecureServer): Connections {
  const sockets = new Set<TLSSocket>();
  const sessions = new Set<Http2Session>();
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('session', (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  return {
    finish: () => {
      for (const session of sessions) session.close();
    },
    cut: () => {
      for (const socket of sockets) socket.destroy();
    },
  };
}
