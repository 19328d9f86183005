// What a soak run records: etcd's history under the prefix (the ground truth)
// and what every client saw. The checker reads only this (no gateway code), so
// the same data can be fed to it doctored in its tests. Times are milliseconds
// since the run started, all taken in the driver process.
import { createHash } from 'node:crypto';

/** One event of etcd's watch under the prefix. `key` is relative to the prefix ("svc/id", "_/…"). */
export interface HistoryEvent {
  revision: number;
  key: string;
  type: 'put' | 'delete';
  /** For a put: the key's create revision (equal to `revision` when the put created it). */
  createRevision?: number;
  /** For a put: the stored value. */
  value?: string;
  /** When the recorder's watch delivered it. */
  at: number;
}

export interface History {
  /** The store revision when recording started (nothing under the prefix yet). */
  startRevision: number;
  events: HistoryEvent[];
  /** The last revision the recorder knows it has seen everything up to. */
  endRevision: number;
  /** Set when the recorder's own watch broke (then the history cannot be trusted). */
  broken?: string;
}

/** A compaction seen (explicit, or etcd's periodic one through its metrics). */
export interface Compaction {
  revision: number;
  at: number;
}

/** Which services a subscriber's stream carries: listed ones, or every service. */
export type Scope = { services: string[] } | { all: true };

export type StreamItem =
  | { kind: 'snapshot'; revision: number; reset: boolean; digest: string; count: number; at: number }
  | { kind: 'change'; type: string; service: string; id: string; revision: number; reason?: string; at: number }
  | { kind: 'progress'; revision: number; at: number };

export interface Connection {
  replica: number;
  /** The Last-Event-ID this connection sent ('' for none). */
  lastEventId: string;
  openedAt: number;
  status: number;
  items: StreamItem[];
}

export interface SubscriberLog {
  name: string;
  path: string;
  scope: Scope;
  connections: Connection[];
}

/** One write the gateway acknowledged (2xx with X-Registry-Revision). */
export interface AckedWrite {
  op: 'register' | 'replace' | 'status' | 'deregister' | 'batch';
  replica: number;
  revision: number;
  sentAt: number;
  answeredAt: number;
  /** The store changes it made: "svc/id" with the kind, and for puts the status written. */
  changes: { key: string; kind: 'put' | 'delete'; status?: string }[];
}

/** An answered renewal (registration or heartbeat 200) of one instance. */
export interface Renewal {
  key: string;
  sentAt: number;
  ttl: number;
  /** A registration starts a new lease; a heartbeat renews the current one. */
  registration: boolean;
}

/** A heartbeat answered 404 instance-not-found. */
export interface NotFoundAnswer {
  key: string;
  replica: number;
  sentAt: number;
  answeredAt: number;
}

/** A heartbeat that failed: no answer (status 0), a 503, or another status. */
export interface FailedHeartbeat {
  key: string;
  replica: number;
  status: number;
  sentAt: number;
  answeredAt: number;
}

/** A read of a service's instances: a minRevision read after a write, or a blocking query. */
export interface ServiceRead {
  kind: 'minRevision' | 'blocking';
  service: string;
  replica: number;
  /** minRevision=R or index=R. */
  bound: number;
  status: number;
  /** X-Registry-Revision of the answer. */
  label: number;
  digest: string;
  count: number;
  /** A blocking query's `wait`. */
  waitMs?: number;
  /** The answer carried X-Registry-Stale: true. */
  stale: boolean;
  sentAt: number;
  answeredAt: number;
}

export interface FaultRecord {
  kind: FaultKind;
  target: string;
  start: number;
  end: number;
  detail?: string;
}

export type FaultKind =
  | 'leader-kill'
  | 'member-freeze'
  | 'gateway-kill'
  | 'gateway-term'
  | 'compaction'
  | 'burst'
  // Network faults (soak/net-pipe.ts on client links, test/helpers/partition.ts on peer links):
  | 'client-partition'
  | 'link-delay'
  | 'packet-loss'
  | 'minority-leader'
  | 'asymmetric-cut'
  | 'long-partition'
  // Store faults (soak/store-faults.ts):
  | 'store-full'
  | 'store-restore'
  | 'member-replace';
export const FAULT_KINDS: readonly FaultKind[] = [
  'leader-kill',
  'member-freeze',
  'gateway-kill',
  'gateway-term',
  'compaction',
  'burst',
  'client-partition',
  'link-delay',
  'packet-loss',
  'minority-leader',
  'asymmetric-cut',
  'long-partition',
  'store-full',
  'store-restore',
  'member-replace',
];
/** The one-minute smoke: every process fault and one network fault, so that it fits its minute. */
export const SMOKE_FAULT_KINDS: readonly FaultKind[] = FAULT_KINDS.filter(
  (k) =>
    ![
      'link-delay',
      'packet-loss',
      'minority-leader',
      'asymmetric-cut',
      'long-partition',
      'store-full',
      'store-restore',
      'member-replace',
    ].includes(k),
);

/** The gateways' event ring (EVENT_HISTORY): a process's memory is warm once this many changes have passed through it. */
export const EVENT_RING = 10_000;

/** A gateway's memory at one moment: RSS from /proc, the rest from its /metrics (absent when the scrape failed). */
export interface RssSample {
  replica: number;
  pid: number;
  at: number;
  mb: number;
  /** V8 heap in use, garbage included (nodejs_heap_size_used_bytes). */
  heapUsedMb?: number;
  /** V8 heap reserved (nodejs_heap_size_total_bytes). */
  heapTotalMb?: number;
  /** Memory of JS objects held outside the V8 heap, Buffers included (nodejs_external_memory_bytes). */
  externalMb?: number;
}

/** A full garbage collection in a gateway (logged by V8's --trace-gc). */
export interface MajorGc {
  replica: number;
  pid: number;
  /** Run time, placed from the process's start (within the spawn's few hundred ms). */
  at: number;
  /** The V8 heap right after the collection: the live objects. */
  liveMb: number;
  reservedMb: number;
}

/** One scrape of a gateway's delay histograms (soak/gateway-lag.ts): cumulative counts per bucket since its start. */
export interface GatewayLagSample {
  replica: number;
  pid: number;
  at: number;
  /** discovery_watch_lag_seconds: a write it made acknowledged → its watch applied it. */
  watch: number[];
  /** discovery_stream_delivery_seconds: its watch applied changes → their frames handed to the connections. */
  delivery: number[];
}

/** Heartbeat answers in one time bucket (a heartbeat a second per instance is too many to keep one by one). */
export interface HeartbeatBucket {
  /** Start of the bucket. */
  at: number;
  ok: number;
  /** 404: the instance was gone, the client registers again. */
  notFound: number;
  /** No answer (refused, reset, timed out) or another status. */
  failed: number;
}

export interface RunLog {
  seed: number;
  minutes: number;
  replicas: number;
  startedAt: string;
  durationMs: number;
  history: History;
  /** Writes stopped and the run waited for subscribers to catch up: each must hold every change of its scope up to here. */
  settleRevision: number;
  /**
   * By replica: the revision its /health said it had applied when the quiet phase ended (null: no answer).
   * A replica still below `settleRevision` (its store watch not back) could not yet deliver the rest (absent in older logs).
   */
  settledApplied?: (number | null)[];
  compactions: Compaction[];
  subscribers: SubscriberLog[];
  writes: AckedWrite[];
  renewals: Renewal[];
  /** Heartbeats answered 404: each must have met an instance etcd did not hold. */
  notFound: NotFoundAnswer[];
  /** Heartbeats that failed, one by one (absent in logs of runs before they were recorded). */
  failedHeartbeats?: FailedHeartbeat[];
  /**
   * Instances the driver stopped heartbeating whose DELETE (or /batch) got no answer or a 5xx: if it did not
   * land, the TTL ends them, and their expiry is expected (absent in logs of runs before they were recorded).
   */
  unansweredDeregistrations?: { key: string; sentAt: number }[];
  /** Revisions the store-full fault wrote outside the prefix (its filler): no gateway or recorder sees them (absent in older logs). */
  foreignRevisions?: number[];
  /** The store restored from a snapshot: the history starts again at each one's revision (absent in older logs). */
  restores?: Restore[];
  /** Writes answered 507 store-full (they did not land): expected while the store is full (absent in older logs). */
  storeFull?: { key: string; sentAt: number }[];
  /** Instances left to expire on purpose ("svc/id"); their expiries are expected. */
  abandoned: { key: string; registeredAt: number; ttl: number }[];
  /** Instances kept by discovery-agent processes ("svc/id"): they must never expire. */
  agentKeys: string[];
  reads: ServiceRead[];
  heartbeats: HeartbeatBucket[];
  faults: FaultRecord[];
  rss: RssSample[];
  /** Present when the gateways ran with --trace-gc (--gateway-node-options). */
  majorGcs?: MajorGc[];
  /** Options the gateways' node ran with, if any. */
  gatewayNodeOptions?: string;
  /** The driver's own event-loop delay (p99 per sample): delivery lag includes it. */
  loopDelay: { at: number; p99: number }[];
  /** The gateways' delay histograms, scraped every 5 s; `bounds` are the buckets' upper bounds in seconds (absent in older logs). */
  gatewayLag?: { bounds: number[]; samples: GatewayLagSample[] };
}

/** A restore of the store from a snapshot (the store-restore fault). */
export interface Restore {
  /** The snapshot's revision: where the restored store's history starts again. */
  revision: number;
  /** The last revision of the old store (everything up to it was recorded). */
  head: number;
  /** The old store's history ends (the gateways cut off, the recorder past its last write); the gateways could reach the restored one. */
  stoppedAt: number;
  restartedAt: number;
  /** By replica: when its /health first showed a revision below `head` (null: not within a minute). */
  detectedAt: (number | null)[];
}

/** The digest both the clients and the checker compute for a set of instances: the hash of their "svc/id@modRevision" lines, sorted. */
export function digestOf(entries: Iterable<string>): string {
  return createHash('sha1')
    .update([...entries].sort().join('\n'))
    .digest('hex')
    .slice(0, 16);
}
