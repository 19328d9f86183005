// The registry: register, heartbeat, deregister and batch (reads are
// discovery.ts's). Writes go to the store; the
// watch brings them back into the cache, and every write waits for that before
// it answers, so a read on this gateway after a write returns shows the write.
import type { GatewayEvents } from '../events.ts';
import { randomUUID } from 'node:crypto';
import type { BookkeepingLease } from './bookkeeping.ts';
import type { Cache } from './cache.ts';
import { deregisteredMarker } from './changes.ts';
import {
  InstanceNotFoundError,
  InvalidRequestError,
  LeaseNotFoundError,
  RegistryError,
  StoreFullError,
  StoreUnavailableError,
} from './errors.ts';
import { Deadline } from './deadline.ts';
import type { KeyLayout } from './keys.ts';
import { decodeRecord, encodeRecord, newRecord } from './records.ts';
import type { MonitoredStore } from './store/monitored.ts';
import type { Compare, TxnOp } from './store/store.ts';
import type { WatchSync } from './sync.ts';
import type { Instance, InstanceInput, InstanceStatus } from './types.ts';
import { MAX_BATCH_OPS, WRITE_VISIBLE_TIMEOUT_MS } from '../rules.ts';

const CONFLICT_RETRIES = 5;

export interface HeartbeatResult {
  ttl: number;
  status: InstanceStatus;
  /** The revision of the status change, or the gateway's applied revision when it only renewed. */
  revision: number;
}

export interface BatchItem extends InstanceInput {
  service: string;
  id: string;
}

/** Errors after which the store certainly did not apply a transaction (others, like a timeout, leave it open). */
function notApplied(err: unknown): boolean {
  return err instanceof InvalidRequestError || err instanceof LeaseNotFoundError || err instanceof StoreFullError;
}

/** An instance's record as the store holds it, with what a guarded write needs. */
interface StoredRecord {
  revision: number;
  registeredAt: string;
  lease: string;
  record: Instance;
}

export class Registry {
  /** Shutting down: writes in flight finish, but a slow watch is no longer restarted. */
  private draining = false;

  constructor(
    private readonly store: MonitoredStore,
    private readonly keys: KeyLayout,
    private readonly cache: Cache,
    private readonly sync: WatchSync,
    private readonly bookkeeping: BookkeepingLease,
    private readonly defaultTtl: number,
    /** One deadline for each write request, whatever it retries inside (deadline.ts). */
    private readonly writeDeadlineMs: number,
    private readonly events: GatewayEvents,
  ) {}

  /** PUT/POST: create or replace. `created` is false when the id was registered already. */
  async register(service: string, id: string, input: InstanceInput): Promise<{ instance: Instance; created: boolean }> {
    const deadline = new Deadline(this.writeDeadlineMs);
    const result = await deadline.run(this.put(service, id, input, deadline));
    await this.visible(result.instance.revision, deadline);
    return result;
  }

  private async put(
    service: string,
    id: string,
    input: InstanceInput,
    deadline: Deadline,
  ): Promise<{ instance: Instance; created: boolean }> {
    const key = this.keys.instance(service, id);
    let current = this.fromCache(service, id);
    for (let attempt = 0; attempt < CONFLICT_RETRIES; attempt++) {
      deadline.check();
      const record = this.newRecord(service, id, input, current);
      const lease = record.ttl > 0 ? await this.store.grantLease(record.ttl) : undefined;
      if (lease) record.ttl = lease.ttl;
      // Guard against a concurrent change on another replica: write only over the state we based registeredAt on.
      const guard: Compare = current
        ? { key, target: 'modRevision', op: '==', value: current.revision }
        : { key, target: 'createRevision', op: '==', value: 0 };
      const res = await this.store
        .txn([guard], [{ type: 'put', key, value: encodeRecord(record), lease: lease?.id }])
        .catch((err: unknown) => {
          if (lease && notApplied(err)) this.revokeLater(lease.id);
          throw err;
        });
      if (res.succeeded) {
        record.revision = res.revision;
        if (current && current.lease !== '0' && current.lease !== lease?.id) this.revokeLater(current.lease);
        this.events.registered(1);
        return { instance: record, created: !current };
      }
      if (lease) this.revokeLater(lease.id);
      current = await this.fromStore(service, id);
    }
    throw new StoreUnavailableError('the instance kept changing concurrently; retry');
  }

  async heartbeat(service: string, id: string, status?: InstanceStatus): Promise<HeartbeatResult> {
    const deadline = new Deadline(this.writeDeadlineMs);
    try {
      const result = await deadline.run(this.renew(service, id, status, deadline));
      await this.visible(result.revision, deadline);
      this.events.heartbeat('ok');
      return result;
    } catch (err) {
      this.events.heartbeat(err instanceof RegistryError && err.code === 'instance-not-found' ? 'not_found' : 'error');
      throw err;
    }
  }

  private async renew(service: string, id: string, status: InstanceStatus | undefined, deadline: Deadline): Promise<HeartbeatResult> {
    const known = this.fromCache(service, id) ?? (await this.fromStore(service, id));
    if (!known) throw new InstanceNotFoundError(service, id);
    let current: StoredRecord | undefined = await this.renewLease(service, id, known, deadline);
    const key = this.keys.instance(service, id);
    for (let attempt = 0; attempt < CONFLICT_RETRIES; attempt++) {
      deadline.check();
      if (!current) throw new InstanceNotFoundError(service, id);
      if (!status || status === current.record.status) {
        return { ttl: current.record.ttl, status: current.record.status, revision: this.renewalLabel(service, id, current) };
      }
      const record: Instance = { ...current.record, status };
      const put: TxnOp = { type: 'put', key, value: encodeRecord(record), lease: current.lease === '0' ? undefined : current.lease };
      const res = await this.store.txn([{ key, target: 'modRevision', op: '==', value: current.revision }], [put]);
      if (res.succeeded) return { ttl: record.ttl, status, revision: res.revision };
      current = await this.fromStore(service, id);
    }
    throw new StoreUnavailableError('the instance kept changing concurrently; retry');
  }

  /**
   * The label of a heartbeat that only renewed: a revision at which the instance existed.
   * A deregistration on another replica may have deleted it while the renewal was under
   * way (its lease is revoked only after the delete): once this gateway's cache has
   * applied that delete, the instance is gone (404), and the applied revision, at or after
   * the delete, must not label a 200.
   */
  private renewalLabel(service: string, id: string, renewed: StoredRecord): number {
    const applied = this.cache.appliedRevision;
    if (this.cache.instance(service, id)) return applied; // held at `applied`: it existed then
    if (renewed.revision > applied) return renewed.revision; // read from the store ahead of this cache
    throw new InstanceNotFoundError(service, id);
  }

  /** DELETE: resolves the revision of the delete. */
  async deregister(service: string, id: string): Promise<number> {
    const { revision } = await this.batch([], [{ service, id }]);
    return revision;
  }

  /** All or nothing, in one store transaction (plus one bookkeeping operation when it deregisters). */
  async batch(register: BatchItem[], deregister: { service: string; id: string }[]): Promise<{ revision: number; instances: Instance[] }> {
    const ops = register.length + deregister.length + (deregister.length ? 1 : 0);
    if (ops > MAX_BATCH_OPS) {
      throw new InvalidRequestError(
        `a batch holds at most ${MAX_BATCH_OPS} operations (${MAX_BATCH_OPS - 1} when it deregisters); this one has ${register.length} registrations and ${deregister.length} deregistrations${deregister.length ? ' plus one bookkeeping operation' : ''}`,
      );
    }
    if (ops === 0) return { revision: this.cache.appliedRevision, instances: [] };
    const deadline = new Deadline(this.writeDeadlineMs);
    const result = await deadline.run(this.commit(register, deregister, deadline));
    await this.visible(result.revision, deadline);
    return result;
  }

  private async commit(
    register: BatchItem[],
    deregister: { service: string; id: string }[],
    deadline: Deadline,
  ): Promise<{ revision: number; instances: Instance[] }> {
    const seen = new Set<string>();
    for (const x of [...register, ...deregister]) {
      const k = `${x.service}/${x.id}`;
      if (seen.has(k)) throw new InvalidRequestError(`instance ${k} appears more than once in the batch`);
      seen.add(k);
    }

    const currents = register.map((x) => this.fromCache(x.service, x.id));
    for (let attempt = 0; attempt < CONFLICT_RETRIES; attempt++) {
      deadline.check();
      const result = await this.tryBatch(register, deregister, currents);
      if (result) return result;
      // A registered key changed behind this gateway's back (or a deregistered one is gone): ask the store.
      const missing = await this.firstMissing(deregister);
      if (missing) throw new InstanceNotFoundError(missing.service, missing.id);
      for (let i = 0; i < register.length; i++) currents[i] = await this.fromStore(register[i]!.service, register[i]!.id);
    }
    throw new StoreUnavailableError('the instances kept changing concurrently; retry');
  }

  /** One attempt at a batch, guarded by what this gateway believes each key holds; undefined when a guard failed. */
  private async tryBatch(
    register: BatchItem[],
    deregister: { service: string; id: string }[],
    currents: (StoredRecord | undefined)[],
  ): Promise<{ revision: number; instances: Instance[] } | undefined> {
    const records = register.map((x, i) => this.newRecord(x.service, x.id, x, currents[i]));
    const granted = await Promise.allSettled(records.map((r) => (r.ttl > 0 ? this.store.grantLease(r.ttl) : undefined)));
    const leases = granted.map((g) => (g.status === 'fulfilled' ? g.value : undefined));
    const revokeAll = () => leases.forEach((l) => l && this.revokeLater(l.id));
    const failed = granted.find((g): g is PromiseRejectedResult => g.status === 'rejected');
    if (failed) {
      revokeAll();
      throw failed.reason;
    }
    records.forEach((r, i) => (r.ttl = leases[i]?.ttl ?? 0));

    // Compares do not count against etcd's --max-txn-ops limit on operations.
    const compares: Compare[] = register.map((x, i) => {
      const key = this.keys.instance(x.service, x.id);
      const c = currents[i];
      return c ? { key, target: 'modRevision', op: '==', value: c.revision } : { key, target: 'createRevision', op: '==', value: 0 };
    });
    for (const x of deregister) compares.push({ key: this.keys.instance(x.service, x.id), target: 'createRevision', op: '>', value: 0 });
    const success: TxnOp[] = records.map((r, i) => ({
      type: 'put',
      key: this.keys.instance(r.service, r.id),
      value: encodeRecord(r),
      lease: leases[i]?.id,
    }));
    for (const x of deregister) success.push({ type: 'delete', key: this.keys.instance(x.service, x.id) });
    const marker = deregister.length ? { key: this.keys.deregistered(randomUUID()), value: deregisteredMarker(deregister) } : undefined;
    const replaced = [...currents.map((c) => c?.lease), ...deregister.map((x) => this.fromCache(x.service, x.id)?.lease)].filter(
      (l): l is string => !!l && l !== '0',
    );

    let res;
    try {
      res = marker
        ? await this.bookkeeping
            .bind((lease) => this.store.txn(compares, [...success, { type: 'put', ...marker, lease }]))
            .catch((err: unknown) => {
              // A full store refuses every put, the bookkeeping key's too, but still deletes:
              // a pure deregistration goes ahead without it (its events then say "expired").
              if (err instanceof StoreFullError && register.length === 0) return this.store.txn(compares, success);
              throw err;
            })
        : await this.store.txn(compares, success);
    } catch (err) {
      // A timeout may hide a transaction that did apply: its leases must then stay.
      if (notApplied(err)) revokeAll();
      throw err;
    }
    if (!res.succeeded) {
      revokeAll();
      return undefined;
    }
    for (const lease of replaced) this.revokeLater(lease);
    for (const r of records) r.revision = res.revision;
    if (records.length) this.events.registered(records.length);
    if (deregister.length) this.events.deregistered(deregister.length);
    return { revision: res.revision, instances: records };
  }

  private async firstMissing(list: { service: string; id: string }[]): Promise<{ service: string; id: string } | undefined> {
    for (const x of list) if (!(await this.store.get(this.keys.instance(x.service, x.id))).kv) return x;
    return undefined;
  }

  /**
   * Shutdown, first step: writes in flight still wait for the watch to bring them
   * back (it keeps running until close), but a wait that runs out no longer counts
   * as a lagging watch: restarting it while shutting down would only add a log line,
   * a metric and a new store stream to close.
   */
  drain(): void {
    this.draining = true;
  }

  /** Drop bookkeeping state (the shared lease is left to expire by itself). */
  close(): void {
    this.bookkeeping.forget();
  }

  private newRecord(service: string, id: string, input: InstanceInput, current: StoredRecord | undefined): Instance {
    return newRecord(service, id, input, this.defaultTtl, current?.registeredAt);
  }

  private fromCache(service: string, id: string): StoredRecord | undefined {
    const x = this.cache.instance(service, id);
    return x && { revision: x.record.revision, registeredAt: x.record.registeredAt, lease: x.lease, record: x.record };
  }

  /**
   * Renew the instance's lease; resolves the record it renewed. A lease the store
   * calls gone is checked against the store's own record: this gateway's copy may
   * be behind a re-registration on another replica (a new lease), and the answer
   * may come from a member behind the others.
   */
  private async renewLease(service: string, id: string, known: StoredRecord, deadline: Deadline): Promise<StoredRecord> {
    if (known.lease === '0' || (await this.store.keepAlive(known.lease)) > 0) return known;
    deadline.check();
    const fresh = await this.fromStore(service, id);
    deadline.check();
    if (!fresh) throw new InstanceNotFoundError(service, id);
    if (fresh.lease === '0' || (await this.store.keepAlive(fresh.lease)) > 0) return fresh;
    // etcd deletes a lease's keys in the revision that revokes it, and the read above
    // still found the instance under this lease: the "gone" came from a member behind
    // the others (an etcd leader waking from a stall knows no lease granted while it
    // slept: soak/stale-renewal.ts), or the lease ran out just now. A retry tells which.
    throw new StoreUnavailableError('the store called the lease gone while it still holds the instance under it; try again');
  }

  private async fromStore(service: string, id: string): Promise<StoredRecord | undefined> {
    const { kv } = await this.store.get(this.keys.instance(service, id));
    const record = kv && decodeRecord(service, id, kv.value, kv.modRevision);
    return kv && record ? { revision: kv.modRevision, registeredAt: record.registeredAt, lease: kv.lease, record } : undefined;
  }

  /**
   * Wait until the watch has brought `revision` into the cache (read-your-writes), within
   * the request's deadline: the write is done, so it is answered anyway when that passes.
   */
  private async visible(revision: number, deadline: Deadline): Promise<void> {
    if (this.cache.appliedRevision >= revision) return; // the watch was first (or nothing was written: a renewal)
    const acknowledgedAt = performance.now();
    const watched = () => this.events.writeWatched((performance.now() - acknowledgedAt) / 1000);
    const wait = async () => {
      const reached = await this.cache.revisionWaiters.wait(revision, Math.min(WRITE_VISIBLE_TIMEOUT_MS, deadline.leftMs));
      if (reached) watched();
      return reached;
    };
    if ((await wait()) || this.draining || deadline.leftMs === 0) return;
    // The watch may be stuck on a member that stopped answering: have it restarted and
    // give it one more while (reads meanwhile are marked stale), then answer anyway.
    this.sync.restart(`revision ${revision} written by this gateway did not come back through the store watch in time`);
    await wait();
  }

  /** Free a lease nothing needs any more. Not awaited: if it fails, the lease expires by itself. */
  private revokeLater(lease: string): void {
    this.store.revokeLease(lease).catch(() => {});
  }
}
