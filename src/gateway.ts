// What the routes are given: the registry (writes), discovery (reads), the
// change hub, the health view and the rendered views, built by app.ts.
import type { Config } from './config.ts';
import type { Metrics } from './metrics.ts';
import type { Health } from './registry/health.ts';
import type { Discovery } from './registry/discovery.ts';
import type { RegistryRoot } from './registry/index.ts';
import type { Registry } from './registry/registry.ts';
import type { Views } from './routes/views.ts';
import type { Hub } from './streams/hub.ts';

export interface Gateway {
  config: Config;
  metrics: Metrics;
  registry: Registry;
  discovery: Discovery;
  hub: Hub;
  health: Health;
  views: Views;
}

declare module 'fastify' {
  interface FastifyInstance {
    gateway: Gateway;
    /** The parts behind the routes (store, cache, watch), for tests that check what a request cost. Routes use `gateway`. */
    registryRoot: RegistryRoot;
  }
  interface FastifyRequest {
    /** Set by the auth plugin when tokens are configured: may this request read that service? */
    canRead?: (service: string) => boolean;
    /** Held by a blocking query: its duration is the client's wait, kept out of latency metrics. */
    heldByBlockingQuery?: boolean;
  }
  interface FastifyContextConfig {
    /** A change stream: kept out of request timing and logs. */
    stream?: boolean;
  }
}
