// What the routes are given: the registry and its read side, built by app.ts.
import type { Config } from './config.ts';
import type { Metrics } from './metrics.ts';
import type { Cache } from './registry/cache.ts';
import type { Hub } from './registry/hub.ts';
import type { Registry } from './registry/registry.ts';
import type { MonitoredStore } from './registry/store/monitored.ts';
import type { WatchSync } from './registry/sync.ts';

export interface Gateway {
  config: Config;
  metrics: Metrics;
  store: MonitoredStore;
  cache: Cache;
  sync: WatchSync;
  registry: Registry;
  hub: Hub;
}

declare module 'fastify' {
  interface FastifyInstance {
    gateway: Gateway;
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
