// The soak's checker: compares what clients saw with etcd's history under the
// prefix. It knows the API's promises (API.md) and etcd's semantics, and none
// of the gateway's code. Each property is a function of the run log alone.
import { digestOf, type FailedHeartbeat, type HistoryEvent, type RunLog, type Scope, type StreamItem } from './observations.ts';
import { restoreViolations, splitAtRestores } from './restores.ts';

export type Property =
  | 'history-complete'
  | 'stream-exact'
  | 'stream-reset'
  | 'snapshot-state'
  | 'event-content'
  | 'ack-in-history'
  | 'no-early-expiry'
  | 'heartbeat-404'
  | 'agent-kept'
  | 'abandoned-expired'
  | 'read-own-write'
  | 'blocking-not-behind'
  | 'read-state'
  | 'no-time-travel'
  | 'restore-reset';

export const PROPERTIES: Record<Property, string> = {
  'history-complete': "the recorder saw every revision of etcd's history (harness integrity)",
  'stream-exact': 'every subscriber got the history of its scope: none lost, none twice, none out of order',
  'stream-reset': 'a reset only after a compaction that passed its id, and flagged reset',
  'snapshot-state': "a snapshot equals etcd's state at its revision, in its scope",
  'event-content': 'each event has the type and reason the history implies',
  'ack-in-history': 'every acknowledged write is in the history at its answered revision',
  'no-early-expiry': 'no instance expired while its last answered renewal was within its TTL',
  'heartbeat-404': 'a heartbeat was answered 404 only if etcd lacked the instance at some moment while it was in flight',
  'agent-kept': 'no instance kept by a discovery-agent expired',
  'abandoned-expired': 'every instance left to expire did expire',
  'read-own-write': 'a minRevision read never answered with a view older than its write',
  'blocking-not-behind':
    'before its wait ended, a blocking query was answered only with a revision above its index (at its index by a draining gateway)',
  'read-state': "a read labelled revision V equals etcd's state of the service at V",
  'no-time-travel':
    'no stream delivered a revision below one it had already delivered (or resumed from), and no read of a service on a replica was labelled below a read of it there that finished before it started',
  'restore-reset':
    'after the store was restored from a snapshot, every gateway showed the restored store and every stream got a snapshot flagged reset before any change of it (each restored stretch is checked on its own: a revision below the restore point is not time travel)',
};

export interface Violation {
  property: Property;
  detail: string;
}

/** One change a subscriber got: when, how long after the recorder saw it, and how it came. */
export interface Lag {
  at: number;
  ms: number;
  /**
   * It happened before the connection that brought it was opened: the subscriber was away
   * (a move, a broken stream) and got it in the replay, so its lag includes the time away.
   */
  resumed: boolean;
}

export interface CheckResult {
  violations: Violation[];
  /** Violations per property (every one counted; `violations` keeps the first few of each kind per subject). */
  counts: Record<Property, number>;
  /** Delivery lag of every change a subscriber got. */
  lags: Lag[];
  /** Why the instances that expired did (undefined for logs before unanswered deregistrations were recorded). */
  expiries: ExpiryAccount | undefined;
  stats: {
    revisions: number;
    changes: number;
    expiries: number;
    deliveries: number;
    resets: number;
    connections: number;
    snapshotsChecked: number;
    readsChecked: number;
    /** Blocking queries a lagging replica answered at the end of `wait` below their index (allowed by API.md). */
    blockingBelowIndexAtWaitEnd: number;
    /** Changes a subscriber lacked at the end because its replica had not applied them when the quiet phase ended: not checked. */
    unsettledChanges: number;
    writesChecked: number;
    renewalsChecked: number;
  };
}

/**
 * Every expiry, by why it happened. Only `kept` ones are worth a look: fleet instances the driver
 * was still heartbeating. They are not violations when no answered renewal was within its TTL
 * (no-early-expiry checks that), but each means a client could not reach a renewal for a whole TTL.
 */
export interface ExpiryAccount {
  total: number;
  /** Left to expire on purpose. */
  abandoned: number;
  /** Left the fleet with a DELETE or /batch that got no answer or a 5xx (and did not land). */
  afterUnansweredDeregistration: number;
  /** No registration or heartbeat of it was ever answered (an unanswered registration that landed anyway). */
  neverAcknowledged: number;
  /** Kept by heartbeats until they expired: the key, when, the last answered renewal, the heartbeats that failed since it was sent. */
  kept: { key: string; at: number; lastRenewalSentAt: number | undefined; failedHeartbeats: FailedHeartbeat[] }[];
}

/** A change the history implies, as the API names it. */
interface Change {
  revision: number;
  key: string; // "svc/id"
  service: string;
  type: 'register' | 'update' | 'deregister';
  reason?: 'deregistered' | 'expired';
  at: number;
}

const DETAILS_PER_SUBJECT = 3;
/** etcd's periodic compaction is seen by polling its metrics: allow this much for the poll. */
const COMPACTION_POLL_SLACK_MS = 3000;
/** An instance left to expire must be gone this long after its TTL (lease re-extension on leader change, slow expiry sweeps). */
const ABANDONED_EXPIRY_SLACK_MS = 60_000;

export function check(log: RunLog): CheckResult {
  const epochs = splitAtRestores(log).map(checkEpoch);
  const result = epochs.reduce(mergeResults);
  for (const v of restoreViolations(log)) {
    result.counts['restore-reset']++;
    if (result.violations.filter((x) => x.property === 'restore-reset').length < 20)
      result.violations.push({ property: 'restore-reset', detail: v.detail });
  }
  return result;
}

/** Two stretches' results as one (the stretches between store restores are checked apart). */
function mergeResults(a: CheckResult, b: CheckResult): CheckResult {
  const counts = { ...a.counts };
  for (const p of Object.keys(counts) as Property[]) counts[p] += b.counts[p];
  const stats = { ...a.stats };
  for (const k of Object.keys(stats) as (keyof CheckResult['stats'])[]) stats[k] += b.stats[k];
  const expiries =
    a.expiries && b.expiries
      ? {
          total: a.expiries.total + b.expiries.total,
          abandoned: a.expiries.abandoned + b.expiries.abandoned,
          afterUnansweredDeregistration: a.expiries.afterUnansweredDeregistration + b.expiries.afterUnansweredDeregistration,
          neverAcknowledged: a.expiries.neverAcknowledged + b.expiries.neverAcknowledged,
          kept: [...a.expiries.kept, ...b.expiries.kept],
        }
      : (a.expiries ?? b.expiries);
  return { violations: [...a.violations, ...b.violations], counts, lags: [...a.lags, ...b.lags], expiries, stats };
}

function checkEpoch(log: RunLog): CheckResult {
  const out = new Collector();
  const changes = changesOf(log.history.events);
  const leaseEnded = withoutRequestedDeletes(log, changes);
  const stats = {
    revisions: log.history.endRevision - log.history.startRevision,
    changes: changes.length,
    expiries: leaseEnded.filter((c) => c.reason === 'expired').length,
    deliveries: 0,
    resets: 0,
    connections: 0,
    snapshotsChecked: 0,
    readsChecked: 0,
    blockingBelowIndexAtWaitEnd: 0,
    unsettledChanges: 0,
    writesChecked: 0,
    renewalsChecked: 0,
  };
  checkHistoryComplete(log, out);
  const stateChecks: StateCheck[] = [];
  const lags: Lag[] = [];
  const atOfRevision = new Map<number, number>();
  for (const e of log.history.events) if (!atOfRevision.has(e.revision)) atOfRevision.set(e.revision, e.at);
  const scoped = new ScopeIndex(changes);
  for (const sub of log.subscribers) {
    const r = checkSubscriber(log, sub, scoped.of(sub.scope), out, stateChecks);
    stats.deliveries += r.deliveries;
    stats.resets += r.resets;
    stats.connections += r.connections;
    stats.unsettledChanges += r.notApplied;
    for (const [at, revision, openedAt] of r.received) {
      const seen = atOfRevision.get(revision);
      if (seen !== undefined) lags.push({ at, ms: Math.max(0, at - seen), resumed: seen < openedAt });
    }
  }
  stats.writesChecked = checkAckedWrites(log, out);
  stats.renewalsChecked = checkExpiries(log, leaseEnded, out);
  const expiries = accountForExpiries(log, leaseEnded);
  checkNotFound(log, changes, out);
  const reads = checkReads(log, out, stateChecks);
  stats.readsChecked = reads.checked;
  stats.blockingBelowIndexAtWaitEnd = reads.lagging;
  stats.snapshotsChecked = checkStates(log.history.events, stateChecks, out);
  checkNoTimeTravel(log, out);
  return { violations: out.violations, counts: out.counts, lags, expiries, stats };
}

class Collector {
  readonly violations: Violation[] = [];
  readonly counts = Object.fromEntries(Object.keys(PROPERTIES).map((p) => [p, 0])) as Record<Property, number>;
  private readonly perSubject = new Map<string, number>();

  add(property: Property, detail: string, subject = ''): void {
    this.counts[property]++;
    const k = `${property}|${subject}`;
    const n = this.perSubject.get(k) ?? 0;
    this.perSubject.set(k, n + 1);
    if (!subject || n < DETAILS_PER_SUBJECT) this.violations.push({ property, detail });
  }
}

/** "svc/id" of an instance key, or undefined for bookkeeping (`_/…`) and anything else. */
function instanceKey(key: string): { service: string; id: string } | undefined {
  if (key.startsWith('_/')) return undefined;
  const slash = key.indexOf('/');
  if (slash <= 0 || slash === key.length - 1) return undefined;
  return { service: key.slice(0, slash), id: key.slice(slash + 1) };
}

/**
 * The API's view of the history: a put that created its key is a register,
 * another put an update, a delete a deregister, "deregistered" when the same
 * revision carries a `_/deregistered/` bookkeeping key naming it (API.md "Why
 * an instance left"), else "expired".
 */
export function changesOf(events: HistoryEvent[]): Change[] {
  const out: Change[] = [];
  for (let i = 0; i < events.length;) {
    const revision = events[i]!.revision;
    let j = i;
    while (j < events.length && events[j]!.revision === revision) j++;
    const group = events.slice(i, j);
    const named = new Set<string>();
    for (const e of group) {
      if (e.type !== 'put' || !e.key.startsWith('_/deregistered/')) continue;
      try {
        const v = JSON.parse(e.value ?? '') as { instances?: unknown };
        if (Array.isArray(v.instances)) for (const x of v.instances) named.add(String(x));
      } catch {}
    }
    for (const e of group) {
      const k = instanceKey(e.key);
      if (!k) continue;
      const base = { revision, key: e.key, service: k.service, at: e.at };
      if (e.type === 'put') out.push({ ...base, type: e.createRevision === revision ? 'register' : 'update' });
      else out.push({ ...base, type: 'deregister', reason: named.has(e.key) ? 'deregistered' : 'expired' });
    }
    i = j;
  }
  return out;
}

/**
 * The changes without the deletes the driver asked for that read as expiries: a full store cannot
 * take the bookkeeping key that names a deregistration (API.md), so its delete looks like a lease's end.
 * An acknowledged deregistration is known by its revision; one that got no answer counts only while the store was full.
 */
function withoutRequestedDeletes(log: RunLog, changes: Change[]): Change[] {
  const acked = new Set(log.writes.flatMap((w) => w.changes.filter((c) => c.kind === 'delete').map((c) => `${w.revision}|${c.key}`)));
  const full = log.faults.filter((f) => f.kind === 'store-full');
  const unanswered = groupByKey(log.unansweredDeregistrations ?? []);
  const renewals = groupByKey(log.renewals);
  const requested = (c: Change): boolean => {
    if (acked.has(`${c.revision}|${c.key}`)) return true;
    if (!full.some((f) => f.start <= c.at && c.at <= f.end)) return false;
    // Sent before the delete, and no renewal after it: the instance was meant to be gone.
    return (unanswered.get(c.key) ?? []).some(
      (d) => d.sentAt < c.at && !(renewals.get(c.key) ?? []).some((r) => r.sentAt > d.sentAt && r.sentAt < c.at),
    );
  };
  return changes.filter((c) => !(c.reason === 'expired' && requested(c)));
}

function checkHistoryComplete(log: RunLog, out: Collector): void {
  const h = log.history;
  if (h.broken) out.add('history-complete', `the recorder's watch broke: ${h.broken}`);
  // Only the gateways write to this etcd, all under the prefix: every revision must show up
  // (but those of the store-full fault's filler, written outside the prefix on purpose).
  const seen = new Set([...h.events.map((e) => e.revision), ...(log.foreignRevisions ?? [])]);
  let gaps = 0;
  for (let r = h.startRevision + 1; r <= h.endRevision; r++) if (!seen.has(r)) gaps++;
  if (gaps) out.add('history-complete', `${gaps} revisions between ${h.startRevision} and ${h.endRevision} never reached the recorder`);
  for (let i = 1; i < h.events.length; i++) {
    if (h.events[i]!.revision < h.events[i - 1]!.revision) {
      out.add('history-complete', `history goes back from revision ${h.events[i - 1]!.revision} to ${h.events[i]!.revision}`);
      break;
    }
  }
}

interface Scoped {
  changes: Change[];
  position: Map<string, number>;
  /** How many changes have revision <= r. */
  countUpTo(r: number): number;
  includes(service: string): boolean;
}

class ScopeIndex {
  private readonly cache = new Map<string, Scoped>();
  constructor(private readonly all: Change[]) {}

  of(scope: Scope): Scoped {
    const name = 'all' in scope ? '*' : [...scope.services].sort().join(',');
    let s = this.cache.get(name);
    if (!s) {
      const includes = 'all' in scope ? () => true : (svc: string) => scope.services.includes(svc);
      const changes = this.all.filter((c) => includes(c.service));
      const position = new Map(changes.map((c, i) => [`${c.revision}|${c.key}`, i]));
      const countUpTo = (r: number) => {
        let lo = 0;
        let hi = changes.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (changes[mid]!.revision <= r) lo = mid + 1;
          else hi = mid;
        }
        return lo;
      };
      s = { changes, position, countUpTo, includes };
      this.cache.set(name, s);
    }
    return s;
  }
}

interface StateCheck {
  revision: number;
  includes: (service: string) => boolean;
  digest: string;
  count: number;
  property: Property;
  what: string;
  subject: string;
}

/**
 * Walks every connection of one subscriber in order. `next` is the position in
 * the scope's history of the next change the subscriber must get; a snapshot
 * moves it past the snapshot's revision, a progress event asserts everything up
 * to its revision came, a resumed connection continues from it.
 */
function checkSubscriber(log: RunLog, sub: RunLog['subscribers'][number], scoped: Scoped, out: Collector, stateChecks: StateCheck[]) {
  let next = 0;
  let lastRevision: number | undefined;
  const delivered = new Set<number>();
  const missing = new Set<number>();
  /** [received at, revision, opened at of the connection that brought it]. */
  const received: [number, number, number][] = [];
  let resets = 0;
  let connections = 0;
  const markMissingUpTo = (upTo: number) => {
    for (let i = next; i < upTo; i++) if (!delivered.has(i)) missing.add(i);
    next = Math.max(next, upTo);
  };
  for (const conn of sub.connections) {
    if (conn.status !== 200) continue;
    connections++;
    conn.items.forEach((item: StreamItem, idx) => {
      if (item.kind === 'snapshot') {
        const initial = idx === 0 && conn.lastEventId === '' && lastRevision === undefined;
        if (!initial) {
          resets++;
          const since = idx === 0 && conn.lastEventId !== '' ? Number(conn.lastEventId) : (lastRevision ?? 0);
          // Or an id of the store before a restore: a gateway cannot tell it from a restored-store id below the old head.
          const passed =
            log.compactions.some((c) => c.revision > since && c.at <= item.at + COMPACTION_POLL_SLACK_MS) ||
            (log.restores ?? []).some((r) => since <= r.head);
          if (!passed)
            out.add(
              'stream-reset',
              `${sub.name}: reset snapshot at revision ${item.revision} after id ${since}, but no compaction had passed ${since}`,
              sub.name,
            );
          if (!item.reset) out.add('stream-reset', `${sub.name}: a snapshot after id ${since} not flagged reset`, sub.name);
        }
        stateChecks.push({
          revision: item.revision,
          includes: scoped.includes,
          digest: item.digest,
          count: item.count,
          property: 'snapshot-state',
          what: `${sub.name} snapshot at ${item.revision}`,
          subject: sub.name,
        });
        const upTo = scoped.countUpTo(item.revision);
        for (const i of missing) if (i < upTo) missing.delete(i); // a snapshot stands for what it covers
        next = Math.max(next, upTo);
        lastRevision = item.revision;
        return;
      }
      if (item.kind === 'progress') {
        if (lastRevision === undefined) out.add('stream-exact', `${sub.name}: a progress event before any snapshot`, sub.name);
        markMissingUpTo(scoped.countUpTo(item.revision));
        lastRevision = Math.max(lastRevision ?? 0, item.revision);
        return;
      }
      received.push([item.at, item.revision, conn.openedAt]);
      const key = `${item.service}/${item.id}`;
      const q = scoped.position.get(`${item.revision}|${key}`);
      if (q === undefined) {
        out.add(
          'stream-exact',
          `${sub.name}: ${item.type} ${key} at revision ${item.revision} is not in the history of its scope`,
          sub.name,
        );
        return;
      }
      const expected = scoped.changes[q]!;
      if (expected.type !== item.type || (item.type === 'deregister' && item.reason !== expected.reason)) {
        out.add(
          'event-content',
          `${sub.name}: ${key} at ${item.revision} came as ${item.type}/${item.reason ?? '-'}, the history says ${expected.type}/${expected.reason ?? '-'}`,
          sub.name,
        );
      }
      if (delivered.has(q)) {
        out.add('stream-exact', `${sub.name}: ${item.type} ${key} at revision ${item.revision} delivered twice`, sub.name);
      } else if (q < next) {
        if (missing.delete(q))
          out.add(
            'stream-exact',
            `${sub.name}: ${item.type} ${key} at revision ${item.revision} out of order (after revision ${lastRevision})`,
            sub.name,
          );
        // else: covered by a snapshot that came before it — a replayed change older than the snapshot is a duplicate too
        else
          out.add(
            'stream-exact',
            `${sub.name}: ${item.type} ${key} at revision ${item.revision} after a snapshot at ${lastRevision} that already held it`,
            sub.name,
          );
      } else {
        markMissingUpTo(q);
        next = q + 1;
      }
      delivered.add(q);
      lastRevision = Math.max(lastRevision ?? 0, item.revision);
    });
  }
  // The run ends with a quiet phase: by then every subscriber must have got its whole scope,
  // except what its replica had not applied when the wait ended (the store never let it catch up):
  // it could not have sent that yet. What the replica had applied stays required.
  markMissingUpTo(scoped.countUpTo(log.settleRevision));
  const last = sub.connections.at(-1);
  const applied = last?.status === 200 ? log.settledApplied?.[last.replica] : undefined;
  let notApplied = 0;
  if (typeof applied === 'number' && applied < log.settleRevision)
    for (const i of missing)
      if (scoped.changes[i]!.revision > applied) {
        missing.delete(i);
        notApplied++;
      }
  if (missing.size) {
    const first = [...missing]
      .sort((a, b) => a - b)
      .slice(0, 3)
      .map((i) => `${scoped.changes[i]!.type} ${scoped.changes[i]!.key}@${scoped.changes[i]!.revision}`);
    out.counts['stream-exact'] += missing.size - 1;
    out.add('stream-exact', `${sub.name}: ${missing.size} changes of its scope never came (first: ${first.join(', ')})`, sub.name);
  }
  return { deliveries: received.length, received, resets, connections, notApplied };
}

function checkAckedWrites(log: RunLog, out: Collector): number {
  const byRevision = new Map<number, HistoryEvent[]>();
  for (const e of log.history.events) {
    const list = byRevision.get(e.revision);
    if (list) list.push(e);
    else byRevision.set(e.revision, [e]);
  }
  for (const w of log.writes) {
    const at = byRevision.get(w.revision) ?? [];
    for (const c of w.changes) {
      const e = at.find((x) => x.key === c.key);
      if (!e || e.type !== c.kind) {
        out.add(
          'ack-in-history',
          `${w.op} through replica ${w.replica}: ${c.kind} ${c.key} answered revision ${w.revision}, the history has ${e ? e.type : 'nothing for it'} there`,
          w.op,
        );
        continue;
      }
      if (c.status !== undefined) {
        let status: unknown;
        try {
          status = (JSON.parse(e.value ?? '') as { status?: unknown }).status;
        } catch {}
        if (status !== c.status)
          out.add('ack-in-history', `${w.op} ${c.key}@${w.revision}: wrote status ${c.status}, the history holds ${String(status)}`, w.op);
      }
    }
  }
  return log.writes.length;
}

function checkExpiries(log: RunLog, changes: Change[], out: Collector): number {
  const renewals = groupByKey(log.renewals);
  for (const list of renewals.values()) list.sort((a, b) => a.sentAt - b.sentAt);
  const agents = new Set(log.agentKeys);
  const expiredAfter = new Map<string, number[]>();
  for (const c of changes) {
    if (c.reason !== 'expired') continue;
    (expiredAfter.get(c.key) ?? expiredAfter.set(c.key, []).get(c.key)!).push(c.at);
    if (agents.has(c.key)) out.add('agent-kept', `agent instance ${c.key} expired at revision ${c.revision}`, c.key);
    const list = renewals.get(c.key);
    if (!list) continue;
    // The last renewal sent before the watch saw the expiry: the lease lives at least TTL after it was sent.
    let last: RunLog['renewals'][number] | undefined;
    for (const r of list) if (r.sentAt < c.at) last = r;
    if (last && last.sentAt + last.ttl * 1000 > c.at) {
      out.add(
        'no-early-expiry',
        `${c.key} expired at revision ${c.revision} (t=${(c.at / 1000).toFixed(1)} s), ${((last.sentAt + last.ttl * 1000 - c.at) / 1000).toFixed(1)} s before the TTL (${last.ttl} s) of its renewal answered at t=${(last.sentAt / 1000).toFixed(1)} s`,
        c.key,
      );
    }
  }
  for (const a of log.abandoned) {
    if (a.registeredAt + a.ttl * 1000 + ABANDONED_EXPIRY_SLACK_MS > log.durationMs) continue;
    if (!(expiredAfter.get(a.key) ?? []).some((t) => t > a.registeredAt))
      out.add(
        'abandoned-expired',
        `${a.key} (ttl ${a.ttl} s, registered t=${(a.registeredAt / 1000).toFixed(1)} s) never expired`,
        'abandoned',
      );
  }
  return log.renewals.length;
}

function accountForExpiries(log: RunLog, changes: Change[]): ExpiryAccount | undefined {
  if (!log.unansweredDeregistrations) return undefined;
  const abandoned = new Set(log.abandoned.map((a) => a.key));
  const agents = new Set(log.agentKeys); // their expiries are agent-kept violations
  const unanswered = groupByKey(log.unansweredDeregistrations);
  const renewals = groupByKey(log.renewals);
  const failed = groupByKey(log.failedHeartbeats ?? []);
  const account: ExpiryAccount = { total: 0, abandoned: 0, afterUnansweredDeregistration: 0, neverAcknowledged: 0, kept: [] };
  for (const c of changes) {
    if (c.reason !== 'expired' || agents.has(c.key)) continue;
    account.total++;
    if (abandoned.has(c.key)) account.abandoned++;
    else if (unanswered.get(c.key)?.some((d) => d.sentAt < c.at)) account.afterUnansweredDeregistration++;
    else if (!renewals.has(c.key)) account.neverAcknowledged++;
    else {
      const before = (renewals.get(c.key) ?? []).filter((r) => r.sentAt < c.at);
      const lastRenewalSentAt = before.length ? Math.max(...before.map((r) => r.sentAt)) : undefined;
      const failedHeartbeats = (failed.get(c.key) ?? []).filter((f) => f.sentAt >= (lastRenewalSentAt ?? 0) && f.sentAt < c.at);
      account.kept.push({ key: c.key, at: c.at, lastRenewalSentAt, failedHeartbeats });
    }
  }
  return account;
}

function groupByKey<T extends { key: string }>(items: T[]): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const list = groups.get(item.key);
    if (list) list.push(item);
    else groups.set(item.key, [item]);
  }
  return groups;
}

/**
 * The driver's acknowledged writes are etcd's clock: while a heartbeat was in
 * flight, etcd's revision was at least that of every write answered before it
 * was sent, and below that of every write sent after it was answered. A 404 is
 * wrong only if the instance was there at every revision in that range.
 */
function checkNotFound(log: RunLog, changes: Change[], out: Collector): void {
  const byKey = groupByKey(changes);
  const answered = [...log.writes].sort((a, b) => a.answeredAt - b.answeredAt);
  const sent = [...log.writes].sort((a, b) => a.sentAt - b.sentAt);
  for (const nf of log.notFound) {
    let lo = log.history.startRevision;
    for (const w of answered) {
      if (w.answeredAt >= nf.sentAt) break;
      lo = Math.max(lo, w.revision);
    }
    let hi = Infinity;
    for (let i = sent.length - 1; i >= 0 && sent[i]!.sentAt > nf.answeredAt; i--) hi = Math.min(hi, sent[i]!.revision - 1);
    const list = byKey.get(nf.key) ?? [];
    const atLo = list.filter((c) => c.revision <= lo).at(-1);
    const heldAtLo = atLo !== undefined && atLo.type !== 'deregister';
    const goneBetween = list.some((c) => c.type === 'deregister' && c.revision > lo && c.revision <= hi);
    if (heldAtLo && !goneBetween)
      out.add(
        'heartbeat-404',
        `${nf.key}: heartbeat to replica ${nf.replica} sent at t=${(nf.sentAt / 1000).toFixed(1)} s answered 404, but etcd held it from revision ${lo} to ${hi === Infinity ? 'the end' : hi}`,
        nf.key,
      );
  }
}

function checkReads(log: RunLog, out: Collector, stateChecks: StateCheck[]): { checked: number; lagging: number } {
  let n = 0;
  let lagging = 0;
  for (const r of log.reads) {
    if (r.status !== 200) continue; // 504 revision-not-reached and 503 are allowed answers
    n++;
    const what = `${r.kind} read of ${r.service} on replica ${r.replica} (${r.kind === 'blocking' ? 'index' : 'minRevision'}=${r.bound})`;
    const how = `after ${((r.answeredAt - r.sentAt) / 1000).toFixed(1)} s at t=${(r.sentAt / 1000).toFixed(1)} s${r.stale ? ', marked stale' : ''}`;
    if (r.kind === 'minRevision') {
      if (r.label < r.bound) out.add('read-own-write', `${what} answered revision ${r.label} ${how}`, r.kind);
    } else if (r.answeredAt - r.sentAt < (r.waitMs ?? 0)) {
      // API.md: before `wait` ends, only a revision above the index answers a blocking query. A draining
      // gateway (SIGTERM) answers its parked queries at once: with the index itself that tells the client nothing new, which is fine.
      const draining = log.faults.some(
        (f) => f.kind === 'gateway-term' && f.target === `g${r.replica}` && f.start <= r.answeredAt && r.answeredAt <= f.end,
      );
      if (r.label < r.bound || (r.label === r.bound && !draining))
        out.add('blocking-not-behind', `${what} answered revision ${r.label} ${how}`, r.kind);
    } else if (r.label < r.bound) {
      lagging++; // a replica behind the index holds until its view passes it or `wait` ends (API.md)
    }
    stateChecks.push({
      revision: r.label,
      includes: (s) => s === r.service,
      digest: r.digest,
      count: r.count,
      property: 'read-state',
      what: `${what} labelled ${r.label}`,
      subject: r.kind,
    });
  }
  return { checked: n, lagging };
}

/** Replays the history once, comparing each snapshot and read with the state at its revision. */
function checkStates(events: HistoryEvent[], checks: StateCheck[], out: Collector): number {
  checks.sort((a, b) => a.revision - b.revision);
  const state = new Map<string, Map<string, number>>(); // service -> id -> mod revision
  let i = 0;
  for (const c of checks) {
    for (; i < events.length && events[i]!.revision <= c.revision; i++) {
      const e = events[i]!;
      const k = instanceKey(e.key);
      if (!k) continue;
      let svc = state.get(k.service);
      if (!svc) state.set(k.service, (svc = new Map()));
      if (e.type === 'put') svc.set(k.id, e.revision);
      else svc.delete(k.id);
    }
    const lines: string[] = [];
    for (const [service, ids] of state) if (c.includes(service)) for (const [id, rev] of ids) lines.push(`${service}/${id}@${rev}`);
    if (digestOf(lines) !== c.digest)
      out.add(c.property, `${c.what}: ${c.count} instances, etcd had ${lines.length} at that revision (or other revisions)`, c.subject);
  }
  return checks.length;
}

/**
 * etcd-io/etcd#15271 ("watch traveling back in time after network partition"): what
 * a client saw never goes back. Per stream connection, every revision delivered
 * (snapshot, change, progress) is at or above the highest one before it and the
 * Last-Event-ID it resumed from. Per replica and service, a read answered 200 is
 * labelled at or above every read of it there that had finished when it was sent.
 */
function checkNoTimeTravel(log: RunLog, out: Collector): void {
  for (const sub of log.subscribers) {
    for (const conn of sub.connections) {
      if (conn.status !== 200) continue;
      let high = conn.lastEventId === '' ? 0 : Number(conn.lastEventId);
      for (const item of conn.items) {
        if (item.revision < high) {
          out.add('no-time-travel', `${sub.name} (g${conn.replica}): ${item.kind} at revision ${item.revision} after ${high}`, sub.name);
        }
        high = Math.max(high, item.revision);
      }
    }
  }
  const byReplicaService = new Map<string, RunLog['reads']>();
  for (const r of log.reads) {
    if (r.status !== 200) continue;
    const k = `${r.replica}|${r.service}`;
    byReplicaService.set(k, [...(byReplicaService.get(k) ?? []), r]);
  }
  for (const [k, reads] of byReplicaService) {
    const finished = [...reads].sort((a, b) => a.answeredAt - b.answeredAt);
    const started = [...reads].sort((a, b) => a.sentAt - b.sentAt);
    let i = 0;
    let high: (typeof reads)[number] | undefined;
    for (const r of started) {
      while (i < finished.length && finished[i]!.answeredAt < r.sentAt) {
        if (!high || finished[i]!.label > high.label) high = finished[i];
        i++;
      }
      if (high && r.label < high.label) {
        out.add(
          'no-time-travel',
          `g${k.split('|')[0]} ${r.service}: read labelled ${r.label} after a read labelled ${high.label} had finished`,
          k,
        );
      }
    }
  }
}
