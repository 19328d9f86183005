// Every metric family of API.md "Operations", on one prom-client Registry per
// app (tests build several apps in one process), and the domain events (events.ts)
// that move them.
import type { CertificateName, CertificateReloadResult, GatewayEvents } from './events.ts';
import type { Change } from './registry/types.ts';
import { Counter, Gauge, Histogram, Registry as PromRegistry, collectDefaultMetrics, type Metric } from 'prom-client';

/** One label set of a RouteHistogram: cumulative counts are computed at scrape. */
interface Series {
  readonly labels: Record<string, string | number>;
  /** Observations per bucket, not cumulative; the last one is +Inf. */
  readonly counts: number[];
  sum: number;
  count: number;
}

/**
 * A histogram over (method, route, status_code), the same series and text as
 * prom-client's Histogram, which formats it. Recorded here because prom-client's
 * observe(labels, value) validates and hashes the labels and allocates on every
 * call: several microseconds on the hottest path, against a Map lookup here.
 */
export class RouteHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets: readonly number[],
    registry: PromRegistry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  /** A recorder for one route: its series are found by method and status, no key built per call. */
  route(route: string): (method: string, statusCode: number, seconds: number) => void {
    const byMethod = new Map<string, Map<number, Series>>();
    return (method, statusCode, seconds) => {
      let byStatus = byMethod.get(method);
      if (!byStatus) byMethod.set(method, (byStatus = new Map()));
      let s = byStatus.get(statusCode);
      if (!s) byStatus.set(statusCode, (s = this.seriesOf(method, route, statusCode)));
      let i = 0;
      for (const bound of this.buckets) {
        if (seconds <= bound) break;
        i++;
      }
      s.counts[i] = (s.counts[i] ?? 0) + 1;
      s.sum += seconds;
      s.count++;
    };
  }

  private seriesOf(method: string, route: string, statusCode: number): Series {
    const key = `${method} ${statusCode} ${route}`;
    let s = this.series.get(key);
    if (!s) {
      s = {
        labels: { method, route, status_code: statusCode },
        counts: new Array<number>(this.buckets.length + 1).fill(0),
        sum: 0,
        count: 0,
      };
      this.series.set(key, s);
    }
    return s;
  }

  /** What the registry formats: prom-client's own Histogram's values, in its order. */
  get() {
    const bucket = `${this.name}_bucket`;
    const values = [];
    for (const s of this.series.values()) {
      let acc = 0;
      this.buckets.forEach((le, i) => {
        acc += s.counts[i] ?? 0;
        values.push({ labels: { le }, sharedLabels: s.labels, value: acc, metricName: bucket });
      });
      values.push(
        { labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket },
        { labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count` },
      );
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.series.clear();
  }
}

/**
 * A labelled counter counted as a plain integer per label set where it is hot,
 * and handed to prom-client's Counter (same name, labels and text) at scrape: a
 * labelled inc() validates and hashes its labels on every call.
 */
class CountedAtScrape<L extends string> {
  private readonly series = new Map<string, { labels: Record<L, string>; count: number; counted: number }>();

  constructor(
    opts: { name: string; help: string; labelNames: readonly L[]; registry: PromRegistry },
    /** The labels of a series, from its key (called once per key). */
    private readonly labelsOf: (key: string) => Record<L, string>,
  ) {
    const series = this.series;
    new Counter<L>({
      name: opts.name,
      help: opts.help,
      labelNames: opts.labelNames,
      registers: [opts.registry],
      collect() {
        for (const s of series.values()) {
          this.inc(s.labels, s.count - s.counted);
          s.counted = s.count;
        }
      },
    });
  }

  inc(key: string): void {
    this.seriesOf(key).count++;
  }

  /** One series, to hold and count on directly (`.count++`): shown at 0 from now on. */
  seriesOf(key: string): { count: number } {
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels: this.labelsOf(key), count: 0, counted: 0 }));
    return s;
  }
}

/** Question types counted by name in discovery_dns_queries_total; any other is `other` (a bounded label set). */
const COUNTED_DNS_TYPES = new Set(['A', 'AAAA', 'SRV', 'SOA', 'ANY', 'NS', 'PTR', 'TXT', 'MX', 'CNAME', 'HTTPS', 'SVCB', 'none']);

/** Delivery delays: from well under a millisecond (a fan-out in one turn) to seconds (a member that stalls). */
const LAG_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type MetricEvents = Omit<GatewayEvents, 'storeWarning' | 'warning' | 'notice'>;

export class Metrics implements MetricEvents {
  /** The prom-client registry (not the service registry). */
  readonly prom = new PromRegistry();
  readonly httpDuration = new RouteHistogram(
    'http_request_duration_seconds',
    'HTTP request latency by route pattern (change streams excluded)',
    // from a cached read (well under a millisecond) to a slow store round trip
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    this.prom,
  );
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
  private readonly cacheRequests = new CountedAtScrape(
    {
      name: 'discovery_cache_requests_total',
      help: 'Discovery reads by cache result: hit (served from memory) or miss (read from the store)',
      labelNames: ['result'],
      registry: this.prom,
    },
    (result) => ({ result }),
  );
  /** The hottest count (every cached GET): its two series held, no lookup per read. */
  private readonly reads = { hit: this.cacheRequests.seriesOf('hit'), miss: this.cacheRequests.seriesOf('miss') };
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
  readonly storeAlarm = new Gauge({
    name: 'discovery_store_alarm',
    help: 'Alarms raised in the store, 1 while raised (nospace: its space quota is exhausted, new data is refused)',
    labelNames: ['alarm'] as const,
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
  readonly watchLag = new Histogram({
    name: 'discovery_watch_lag_seconds',
    help: 'From the store acknowledging a write this gateway made to its watch applying that revision, for writes the watch had not applied by then',
    buckets: LAG_BUCKETS,
    registers: [this.prom],
  });
  readonly sseClients = new Gauge({ name: 'discovery_sse_clients', help: 'Open change streams', registers: [this.prom] });
  readonly sseEventsSent = this.counter('discovery_sse_events_sent_total', 'Events written to change streams');
  readonly sseDelivery = new Histogram({
    name: 'discovery_stream_delivery_seconds',
    help: 'From the watch applying changes to their frames being handed to change-stream connections: once per batch for the whole fan-out, again for each frame that waited behind a full connection or a snapshot',
    buckets: LAG_BUCKETS,
    registers: [this.prom],
  });
  readonly sseUnreadBytes = new Gauge({
    name: 'discovery_sse_unread_bytes',
    help: 'Bytes held for change-stream data not yet handed to the connections (shared data counted once)',
    registers: [this.prom],
  });
  private readonly dnsQueries = new CountedAtScrape(
    {
      name: 'discovery_dns_queries_total',
      help: 'DNS messages answered, by question type and response code',
      labelNames: ['qtype', 'rcode'],
      registry: this.prom,
    },
    (key) => {
      const [qtype = '', rcode = ''] = key.split(' ');
      return { qtype, rcode };
    },
  );
  readonly certificateReloads = new Counter({
    name: 'discovery_certificate_reloads_total',
    help: 'Reads of the certificate files (change, poll, SIGHUP) that put new ones to use (reloaded) or found files they could not use (refused: the current ones stay), by certificate (serving, etcd-client)',
    labelNames: ['certificate', 'result'] as const,
    registers: [this.prom],
  });
  readonly certificateExpiry = new Gauge({
    name: 'discovery_certificate_expiry_timestamp_seconds',
    help: 'The end of validity (notAfter, Unix seconds) of the certificate in use, by certificate (serving, etcd-client); only the configured ones are listed',
    labelNames: ['certificate'] as const,
    registers: [this.prom],
  });

  /** The store's raised alarms: 1 for each of them, 0 for every alarm seen before (nospace is always listed). */
  storeAlarms(active: string[]): void {
    for (const alarm of new Set(['nospace', ...active])) this.storeAlarm.set({ alarm }, 0);
    for (const alarm of active) this.storeAlarm.set({ alarm }, 1);
  }

  /** A counter without labels, on this app's registry. */
  private counter(name: string, help: string): Counter {
    return new Counter({ name, help, registers: [this.prom] });
  }

  constructor() {
    collectDefaultMetrics({ register: this.prom });
    for (const result of ['ok', 'not_found', 'error']) this.heartbeats.inc({ result }, 0);
    for (const type of ['register', 'update', 'deregister']) this.watchEvents.inc({ type }, 0);
    // Listed at 0 from the start: an alert on an increase of `refused` fires on the first one.
    for (const certificate of ['serving', 'etcd-client'] satisfies CertificateName[])
      for (const result of ['reloaded', 'refused']) this.certificateReloads.inc({ certificate, result }, 0);
    this.storeUp.set(0);
    this.storeAlarms([]);
  }

  storeRequest(op: string, seconds: number): void {
    this.storeDuration.observe({ op }, seconds);
  }

  storeReachable(up: boolean): void {
    this.storeUp.set(up ? 1 : 0);
  }

  changesApplied(changes: readonly Change[]): void {
    for (const c of changes) {
      this.watchEvents.inc({ type: c.type });
      if (c.reason === 'expired') this.expirations.inc();
    }
  }

  watchReloaded(): void {
    this.watchRestarts.inc();
  }

  discoveryRead(result: 'hit' | 'miss'): void {
    this.reads[result].count++;
  }

  registered(instances: number): void {
    this.registrations.inc(instances);
  }

  deregistered(instances: number): void {
    this.deregistrations.inc(instances);
  }

  heartbeat(result: 'ok' | 'not_found' | 'error'): void {
    this.heartbeats.inc({ result });
  }

  streamsOpen(streams: number): void {
    this.sseClients.set(streams);
  }

  eventsSent(events: number): void {
    this.sseEventsSent.inc(events);
  }

  streamDelivered(seconds: number): void {
    this.sseDelivery.observe(seconds);
  }

  writeWatched(seconds: number): void {
    this.watchLag.observe(seconds);
  }

  streamsUnread(bytes: number): void {
    this.sseUnreadBytes.set(bytes);
  }

  certificateReload(certificate: CertificateName, result: CertificateReloadResult): void {
    this.certificateReloads.inc({ certificate, result });
  }

  certificateInUse(certificate: CertificateName, notAfter: Date): void {
    this.certificateExpiry.set({ certificate }, notAfter.getTime() / 1000);
  }

  dnsQuery(qtype: string, rcode: string): void {
    this.dnsQueries.inc(`${COUNTED_DNS_TYPES.has(qtype) ? qtype : 'other'} ${rcode}`);
  }
}
