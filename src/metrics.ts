// Every metric family of API.md "Operations", on one prom-client Registry per
// app (tests build several apps in one process).
import { Counter, Gauge, Histogram, Registry as PromRegistry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  /** The prom-client registry (not the service registry). */
  readonly prom = new PromRegistry();
  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request latency by route pattern (change streams excluded)',
    labelNames: ['method', 'route', 'status_code'] as const,
    // from a cached read (well under a millisecond) to a slow store round trip
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.prom],
  });
  readonly services = new Gauge({ name: 'discovery_services', help: 'Services with at least one instance', registers: [this.prom] });
  readonly instances = new Gauge({ name: 'discovery_instances', help: 'Registered instances', registers: [this.prom] });
  readonly registrations = this.counter('discovery_registrations_total', 'Instances registered through this gateway');
  readonly deregistrations = this.counter('discovery_deregistrations_total', 'Instances deregistered through this gateway');
  readonly heartbeats = new Counter({
    name: 'discovery_heartbeats_total',
    help: 'Heartbeats by result (ok, not_found, error)',
    labelNames: ['result'] as const,
    registers: [this.prom],
  });
  readonly cacheRequests = new Counter({
    name: 'discovery_cache_requests_total',
    help: 'Discovery reads by cache result: hit (served from memory) or miss (read from the store)',
    labelNames: ['result'] as const,
    registers: [this.prom],
  });
  readonly storeDuration = new Histogram({
    name: 'discovery_store_request_duration_seconds',
    help: 'Store round trips by operation',
    labelNames: ['op'] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.prom],
  });
  readonly storeUp = new Gauge({
    name: 'discovery_store_up',
    help: '1 when the store answers, 0 when it does not',
    registers: [this.prom],
  });
  readonly watchEvents = new Counter({
    name: 'discovery_watch_events_total',
    help: 'Changes applied from the store watch, by type',
    labelNames: ['type'] as const,
    registers: [this.prom],
  });
  readonly watchRestarts = this.counter(
    'discovery_watch_restarts_total',
    'Times the watch lost its place (compaction, cancellation) and the cache was reloaded',
  );
  readonly expirations = this.counter('discovery_expirations_total', 'Instances whose TTL ran out, as the watch saw them');
  readonly sseClients = new Gauge({ name: 'discovery_sse_clients', help: 'Open change streams', registers: [this.prom] });
  readonly sseEventsSent = this.counter('discovery_sse_events_sent_total', 'Events written to change streams');

  /** A counter without labels, on this app's registry. */
  private counter(name: string, help: string): Counter {
    return new Counter({ name, help, registers: [this.prom] });
  }

  constructor() {
    collectDefaultMetrics({ register: this.prom });
    for (const result of ['ok', 'not_found', 'error']) this.heartbeats.inc({ result }, 0);
    for (const result of ['hit', 'miss']) this.cacheRequests.inc({ result }, 0);
    for (const type of ['register', 'update', 'deregister']) this.watchEvents.inc({ type }, 0);
    this.storeUp.set(0);
  }
}
