// The embedded store: the default product mode when no etcd is configured (one
// process, nothing kept across restarts). It reproduces the etcd semantics the
// registry relies on: one global revision per effective write transaction,
// create/mod revisions, leases that delete their keys in one revision, txn
// limits, and watches that replay a bounded history with no gap.

import { InvalidRequestError, LeaseNotFoundError, StoreCompactedError, StoreUnavailableError } from '../errors.ts';
import { MemoryWatch } from './memory-watch.ts';
import { keyLess, search, SortedKeys } from './sorted-keys.ts';
import type {
  Compare,
  KeyValue,
  Lease,
  RangeResult,
  Store,
  StoreStatus,
  TxnOp,
  TxnResult,
  Watch,
  WatchBatch,
  WatchEvent,
  WatchHandlers,
} from './store.ts';

/** etcd's default --max-txn-ops. */
const MAX_TXN_OPS = 128;
/** setTimeout cannot wait longer than 2^31-1 ms: longer leases re-arm their timer. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Entry = Omit<KeyValue, 'key'>;

interface LeaseEntry {
  ttl: number;
  keys: Set<string>;
  expiresAt: number; // performance.now() deadline
  timer: NodeJS.Timeout;
}

export interface MemoryStoreOptions {
  /** How many past events watches can replay (default 100000). Older revisions count as compacted. */
  historyLimit?: number;
}

const toKeyValue = (key: string, e: Entry): KeyValue => ({ key, ...e });

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;

  private revision = 1;
  private readonly kvs = new Map<string, Entry>();
  private readonly sortedKeys = new SortedKeys();
  private readonly leases = new Map<string, LeaseEntry>();
  private nextLeaseId = 1;
  private readonly watches = new Set<MemoryWatch>();

  /** Committed batches; history[historyHead..] are live (a head index avoids O(n) shifts). */
  private history: WatchBatch[] = [];
  private historyHead = 0;
  private historyEvents = 0;
  private readonly historyLimit: number;
  /** Lowest revision a watch may start from: every event at or above it is still in history. */
  private compactedBelow = 1;
  private closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.historyLimit = options.historyLimit ?? 100_000;
  }

  private check(): void {
    if (this.closed) throw new StoreUnavailableError('the store is closed');
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    this.check();
    if (!Number.isFinite(ttlSeconds)) throw new InvalidRequestError('lease TTL must be a finite number');
    const ttl = Math.max(1, Math.ceil(ttlSeconds));
    const id = String(this.nextLeaseId++);
    const lease: LeaseEntry = {
      ttl,
      keys: new Set(),
      expiresAt: performance.now() + ttl * 1000,
      timer: setTimeout(() => this.onLeaseTimer(id), Math.min(ttl * 1000, MAX_TIMER_MS)),
    };
    lease.timer.unref(); // a lease must never keep the process alive
    this.leases.set(id, lease);
    return { id, ttl };
  }

  private onLeaseTimer(id: string): void {
    const lease = this.leases.get(id);
    if (!lease || this.closed) return;
    const left = lease.expiresAt - performance.now();
    if (left > 0) {
      // Early wake-up (capped delay or timer jitter): sleep for the rest.
      lease.timer = setTimeout(() => this.onLeaseTimer(id), Math.min(Math.ceil(left), MAX_TIMER_MS));
      lease.timer.unref();
      return;
    }
    this.dropLease(id, lease);
  }

  /** Forget a lease and delete its keys in one revision, in key order, as etcd's lessor does. */
  private dropLease(id: string, lease: LeaseEntry): void {
    clearTimeout(lease.timer);
    this.leases.delete(id);
    const keys = [...lease.keys].sort((a, b) => (keyLess(a, b) ? -1 : keyLess(b, a) ? 1 : 0));
    this.commit(keys.map((key) => ({ type: 'delete', key })));
  }

  async keepAlive(leaseId: string): Promise<number> {
    this.check();
    const lease = this.leases.get(leaseId);
    if (!lease) return 0;
    lease.expiresAt = performance.now() + lease.ttl * 1000;
    lease.timer.refresh();
    return lease.ttl;
  }

  async revokeLease(leaseId: string): Promise<void> {
    this.check();
    const lease = this.leases.get(leaseId);
    if (lease) this.dropLease(leaseId, lease);
  }

  async get(key: string): Promise<{ kv: KeyValue | undefined; revision: number }> {
    this.check();
    const e = this.kvs.get(key);
    return { kv: e && toKeyValue(key, e), revision: this.revision };
  }

  async range(prefix: string): Promise<RangeResult> {
    this.check();
    const kvs: KeyValue[] = [];
    this.sortedKeys.forPrefix(prefix, (key) => kvs.push(toKeyValue(key, this.kvs.get(key)!)));
    return { kvs, revision: this.revision };
  }

  async txn(compares: Compare[], success: TxnOp[]): Promise<TxnResult> {
    this.check();
    // etcd validates the operations before evaluating anything.
    if (success.length > MAX_TXN_OPS) throw new InvalidRequestError('too many operations in txn request');
    const seen = new Set<string>();
    for (const op of success) {
      if (seen.has(op.key)) throw new InvalidRequestError('duplicate key given in txn request');
      seen.add(op.key);
    }
    if (compares.length > MAX_TXN_OPS) throw new InvalidRequestError('too many operations in txn request');
    const succeeded = compares.every((c) => this.holds(c));
    const ops = succeeded ? success : [];
    // Like etcd, leases are checked only when the operations run, all before any write.
    for (const op of ops) {
      if (op.type === 'put' && op.lease && op.lease !== '0' && !this.leases.has(op.lease)) {
        throw new LeaseNotFoundError();
      }
    }
    this.commit(ops);
    return { succeeded, revision: this.revision };
  }

  private holds(c: Compare): boolean {
    const e = this.kvs.get(c.key);
    const actual = e ? e[c.target] : 0; // an absent key has both revisions 0
    const v = c.value;
    return c.op === '==' ? actual === v : c.op === '!=' ? actual !== v : c.op === '>' ? actual > v : actual < v;
  }

  /** Apply validated ops at the next revision; the revision only rises if something changed. */
  private commit(ops: TxnOp[]): void {
    const rev = this.revision + 1;
    const events: WatchEvent[] = [];
    for (const op of ops) {
      const prev = this.kvs.get(op.key);
      if (op.type === 'put') {
        const lease = op.lease && op.lease !== '0' ? op.lease : '0';
        if (prev && prev.lease !== lease) this.leases.get(prev.lease)?.keys.delete(op.key);
        if (lease !== '0') this.leases.get(lease)!.keys.add(op.key);
        const createRevision = prev ? prev.createRevision : rev;
        this.kvs.set(op.key, { value: op.value, modRevision: rev, createRevision, lease });
        if (!prev) this.sortedKeys.insert(op.key);
        const ev: WatchEvent = { type: 'put', key: op.key, value: op.value, modRevision: rev, createRevision, lease };
        if (prev) {
          ev.prevValue = prev.value;
          ev.prevModRevision = prev.modRevision;
        }
        events.push(ev);
      } else if (prev) {
        this.leases.get(prev.lease)?.keys.delete(op.key);
        this.kvs.delete(op.key);
        this.sortedKeys.delete(op.key);
        // etcd delete events carry only key and mod revision (create revision 0, no lease).
        events.push({
          type: 'delete',
          key: op.key,
          value: '',
          modRevision: rev,
          createRevision: 0,
          lease: '0',
          prevValue: prev.value,
          prevModRevision: prev.modRevision,
        });
      }
    }
    if (events.length === 0) return;
    this.revision = rev;
    this.publish({ revision: rev, events });
  }

  private publish(batch: WatchBatch): void {
    this.history.push(batch);
    this.historyEvents += batch.events.length;
    // Drop whole revisions only, so a replay never delivers half a transaction.
    while (this.historyEvents > this.historyLimit && this.historyHead < this.history.length) {
      const old = this.history[this.historyHead++]!;
      this.historyEvents -= old.events.length;
      this.compactedBelow = Math.max(this.compactedBelow, old.revision + 1);
    }
    this.squeezeHistory();
    for (const w of this.watches) w.offer(batch);
  }

  private squeezeHistory(): void {
    if (this.historyHead > 1024 && this.historyHead * 2 > this.history.length) {
      this.history = this.history.slice(this.historyHead);
      this.historyHead = 0;
    }
  }

  /** Index of the first live history batch at or above `revision`. */
  private historyIndex(revision: number): number {
    return search(this.history, (b) => b.revision < revision, this.historyHead);
  }

  /** Drop history below `revision` (etcd compaction: watches from `revision` on still work). */
  compact(revision: number): void {
    this.check();
    if (revision > this.revision) throw new InvalidRequestError('required revision is a future revision');
    if (revision <= this.compactedBelow) return;
    const end = this.historyIndex(revision);
    for (let i = this.historyHead; i < end; i++) this.historyEvents -= this.history[i]!.events.length;
    this.historyHead = end;
    this.compactedBelow = revision;
    this.squeezeHistory();
  }

  async watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Promise<Watch> {
    this.check();
    // Like etcd, a start revision of 0 (or below) means "from the next change".
    const from = fromRevision > 0 ? fromRevision : this.revision + 1;
    const w = new MemoryWatch(prefix, from, handlers, (x) => this.watches.delete(x));
    if (from < this.compactedBelow) {
      const err = new StoreCompactedError(this.compactedBelow);
      setImmediate(() => {
        if (!w.closed) handlers.onError(err);
      });
      return w; // never registered: a dead watch whose close() is a no-op
    }
    // Replay and registration happen in the same synchronous step, so no write
    // can fall between them: no gap, no duplicate.
    for (let i = this.historyIndex(from); i < this.history.length; i++) w.offer(this.history[i]!);
    this.watches.add(w);
    return w;
  }

  async status(_timeoutMs: number): Promise<StoreStatus> {
    this.check();
    return { revision: this.revision, details: { keys: this.kvs.size, leases: this.leases.size } };
  }

  async close(): Promise<void> {
    if (this.closed) return; // idempotent, so shutdown paths can call it freely
    this.closed = true;
    for (const lease of this.leases.values()) clearTimeout(lease.timer);
    this.leases.clear();
    for (const w of [...this.watches]) await w.close();
    this.watches.clear();
  }
}
