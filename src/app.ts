// buildApp(config) -> a ready fastify instance: the server's options (server/options.ts),
// the domain (registry/index.ts, streams/hub.ts) with its events joined for metrics and
// logs, the plugins in the order their hooks must run, and the routes. No listening here.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { TokenSet } from './auth/tokens.ts';
import type { Config } from './config.ts';
import { joinEvents, logEvents } from './events.ts';
import type { Gateway } from './gateway.ts';
import { Metrics } from './metrics.ts';
import dns from './dns/plugin.ts';
import auth from './plugins/auth.ts';
import cors from './plugins/cors.ts';
import errors from './plugins/errors.ts';
import metricsRoute from './plugins/metrics.ts';
import observability from './plugins/observability.ts';
import openapi from './plugins/openapi.ts';
import parsing from './plugins/parsing.ts';
import rateLimit from './plugins/rate-limit.ts';
import shutdown from './plugins/shutdown.ts';
import timeouts from './plugins/timeouts.ts';
import tlsReload from './plugins/tls-reload.ts';
import etcdCertReload from './plugins/etcd-cert-reload.ts';
import { createStore, RegistryRoot } from './registry/index.ts';
import { createLogger } from './server/logger.ts';
import type { Store } from './registry/store/store.ts';
import batchRoutes from './routes/batch.ts';
import eventRoutes from './routes/events.ts';
import healthRoutes from './routes/health.ts';
import instanceRoutes from './routes/instances.ts';
import pickRoutes from './routes/pick.ts';
import prometheusRoutes from './routes/prometheus.ts';
import serviceRoutes from './routes/services.ts';
import uiRoutes from './routes/ui.ts';
import { Views } from './routes/views.ts';
import { serverOptions, type ServerDeps } from './server/options.ts';
import { Hub } from './streams/hub.ts';

/** How often an idle gateway checks that the store answers (discovery_store_up, readiness, stale answers). */
const STORE_PROBE_INTERVAL_MS = 2000;
/** RATE_LIMIT_MAX counts requests in fixed windows of this length (API.md: one minute). */
const RATE_LIMIT_WINDOW_MS = 60_000;
/**
 * Longest time an ordinary request may take from arrival to answer (503 after);
 * change streams have none and blocking queries their own (plugins/timeouts.ts).
 */
const HANDLER_TIMEOUT_MS = 30_000;

export interface AppDeps extends ServerDeps {
  /** A store to use instead of the one the config names (tests). */
  store?: Store;
  /** Interval of the background store probe (default STORE_PROBE_INTERVAL_MS). */
  storeProbeIntervalMs?: number;
  /** Rate-limit window (default RATE_LIMIT_WINDOW_MS; tests use a short one). */
  rateLimitWindowMs?: number;
  /** Handler timeout of ordinary routes (default HANDLER_TIMEOUT_MS). */
  handlerTimeoutMs?: number;
}

export async function buildApp(config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  // A bad tokens file stops the start before the store is even tried.
  const tokens = config.authTokensFile ? TokenSet.load(config.authTokensFile) : undefined;
  const app = Fastify(serverOptions(config, deps)).withTypeProvider<TypeBoxTypeProvider>();
  // fastify has no logger of its own (server/logger.ts): this one is every plugin's app.log,
  // and fastify's too for what it logs about the server (listening, a failing onListen hook).
  app.log = createLogger(config, deps.logStream);
  await app.register(parsing);

  const metrics = new Metrics();
  const events = joinEvents(metrics, logEvents(app.log, config.store.kind));
  const probeIntervalMs = deps.storeProbeIntervalMs ?? STORE_PROBE_INTERVAL_MS;
  const store = deps.store ?? createStore(config);
  const root = new RegistryRoot(
    store,
    { prefix: config.prefix, defaultTtlSeconds: config.defaultTtlSeconds, writeDeadlineMs: config.writeDeadlineMs, probeIntervalMs },
    events,
  );
  const views = new Views(config.cacheMaxBytes);
  root.onReset(() => views.clear());
  await root.start();
  const keepAliveMs = config.sseKeepAliveSeconds * 1000;
  const hub = new Hub(
    root,
    {
      history: config.eventHistory,
      keepAliveMs,
      bufferBytes: config.sseBufferBytes,
      maxStreams: config.sseMaxStreams,
      memoryBudget: config.sseMemoryBudgetBytes,
      stallMs: config.sseStallSeconds * 1000,
    },
    events,
  );
  const gateway: Gateway = { config, metrics, registry: root.registry, discovery: root.discovery, hub, health: root.health, views };
  app.decorate('gateway', gateway);
  app.decorate('registryRoot', root);

  await app.register(shutdown, { tls: !!config.tls, drainMs: config.drainMs });
  await app.register(errors);
  if (config.tls) await app.register(tlsReload, { ...config.tls, events });
  if (config.store.kind === 'etcd') {
    const { caFile: ca, certFile: cert, keyFile: key } = config.store;
    if (ca || cert) await app.register(etcdCertReload, { root, events, files: { ca, cert, key } });
  }
  // Both give each route its own hooks as it is added: before any route.
  await app.register(timeouts, { timeoutMs: deps.handlerTimeoutMs ?? HANDLER_TIMEOUT_MS });
  await app.register(observability, { requestLog: config.requestLog });
  // Before the rate limit: it counts by the token this finds (and every refused one).
  if (tokens) await app.register(auth, { tokens, protectMetrics: config.authMetrics });
  await app.register(openapi);
  // Limits the routes added after it: /metrics among them (a refused token there counts).
  const windowMs = deps.rateLimitWindowMs ?? RATE_LIMIT_WINDOW_MS;
  if (config.rateLimitMax) await app.register(rateLimit, { max: config.rateLimitMax, windowMs });
  await app.register(metricsRoute);
  if (config.corsOrigins) await app.register(cors, { origins: config.corsOrigins });
  await app.register(dns, { tokens, events, changes: root });
  for (const routes of [instanceRoutes, serviceRoutes, pickRoutes, prometheusRoutes, batchRoutes, eventRoutes, healthRoutes, uiRoutes])
    await app.register(routes);
  await app.ready();
  return app;
}
