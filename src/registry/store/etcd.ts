// The etcd store: the only code that talks to etcd3 (with its private helpers
// etcd-connection.ts, etcd-errors.ts, etcd-watch.ts, etcd-keepalive.ts and etcd-members.ts). Every etcd3 error leaves
// this module as a domain error (see etcd-errors.ts). Keys are full keys: no etcd3 namespace.

import { AlarmAction, CompareResult, CompareTarget, type Etcd3, type ICompare, type IKeyValue, type IRequestOp } from 'etcd3';
import { ExponentialBackoff, handleWhen, retry } from 'cockatiel';
import { InvalidRequestError, LeaseNotFoundError, RegistryError, StoreUnavailableError } from '../errors.ts';
import { EtcdConnection, requireLeader, type ConnectionOptions, type EtcdTls } from './etcd-connection.ts';
import { isAuthTokenError, isLeaseNotFound, isRetryable, toStoreError } from './etcd-errors.ts';
import { goneEndpoints } from './etcd-endpoints.ts';
import { KeepAlivePool } from './etcd-keepalive.ts';
import { knownLeaseBug } from './etcd-versions.ts';
import { EtcdWatch } from './etcd-watch.ts';
import type { Compare, KeyValue, Lease, RangeResult, Store, StoreStatus, TxnOp, TxnResult, Watch, WatchHandlers } from './store.ts';

export interface EtcdStoreOptions {
  endpoints: string[];
  username?: string;
  password?: string;
  tls?: EtcdTls;
  /** Deadline of every unary call (default 5000). */
  callTimeoutMs?: number;
  /** Deadline of one lease renewal (default RENEW_TIMEOUT_MS). */
  renewTimeoutMs?: number;
}

/**
 * Deadline of one lease renewal: above etcd's own limit for a follower forwarding
 * it to the leader (5 s + 2 election timeouts = 7 s by default), so a renewal
 * caught in a leader election is answered by etcd rather than abandoned by us.
 */
const RENEW_TIMEOUT_MS = 10_000;

/** Keepalive streams: etcd serves one stream's renewals one at a time (see etcd-keepalive.ts). */
export const KEEPALIVE_STREAMS = 8;

/** Keys per range page: keeps each response far below gRPC/etcd message limits. */
const PAGE = 5000;

const RESULTS: Record<Compare['op'], CompareResult> = {
  '==': CompareResult.Equal,
  '!=': CompareResult.NotEqual,
  '>': CompareResult.Greater,
  '<': CompareResult.Less,
};

const num = (s: string | number | undefined): number => Number(s ?? 0);

function toKeyValue(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString('utf8'),
    value: kv.value.toString('utf8'),
    modRevision: num(kv.mod_revision),
    createRevision: num(kv.create_revision),
    lease: String(kv.lease ?? '0'), // lease ids exceed 2^53: keep etcd's decimal string
  };
}

/** The end of the key range sharing `prefix` (etcd's "prefix + 1"); "\0" = to the end of the keyspace. */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.of(0);
}

function toOp(op: TxnOp): IRequestOp {
  if (op.type === 'put') {
    // lease 0 detaches any lease the key had: the caller states the lease on every put.
    return { request_put: { key: Buffer.from(op.key), value: Buffer.from(op.value), lease: op.lease ?? '0' } };
  }
  return { request_delete_range: { key: Buffer.from(op.key) } };
}

function toCompare(c: Compare): ICompare {
  const mod = c.target === 'modRevision';
  return {
    key: Buffer.from(c.key),
    target: mod ? CompareTarget.Mod : CompareTarget.Create,
    result: RESULTS[c.op],
    ...(mod ? { mod_revision: String(c.value) } : { create_revision: String(c.value) }),
  };
}

const isCompacted = (err: unknown) => err instanceof Error && err.message.includes('required revision has been compacted');

export class EtcdStore implements Store {
  readonly kind = 'etcd' as const;
  /** The connection every call goes through; replaced by reconnect(). */
  private connection: EtcdConnection;
  /** Connections replaced by reconnect() whose last calls may still be running. */
  private readonly retired = new Set<EtcdConnection>();
  private readonly connectionOptions: ConnectionOptions;
  private readonly timeoutMs: number;
  private readonly renewTimeoutMs: number;
  private readonly hasAuth: boolean;
  private readonly watches = new Set<EtcdWatch>();
  private readonly keepAlives: KeepAlivePool;
  private readonly endpoints: string[];
  private closed = false;
  /**
   * Our retry, applied per call rather than as etcd3's global policy: only reads and
   * idempotent writes are retried, and only fast connection failures (a deadline
   * already spent the caller's budget). A retried lease grant can leak one lease
   * (it expires by itself).
   */
  private readonly retry = retry(handleWhen(isRetryable), {
    maxAttempts: 2,
    backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 300 }),
  });

  constructor(opts: EtcdStoreOptions) {
    this.timeoutMs = opts.callTimeoutMs ?? 5000;
    this.renewTimeoutMs = opts.renewTimeoutMs ?? RENEW_TIMEOUT_MS;
    this.endpoints = opts.endpoints;
    this.hasAuth = opts.username !== undefined;
    const { endpoints, username, password, tls } = opts;
    this.connectionOptions = { endpoints, username, password, tls, timeoutMs: this.timeoutMs };
    this.connection = new EtcdConnection(this.connectionOptions);
    // Through this.client at each opening: after reconnect() new streams open on the new client.
    this.keepAlives = new KeepAlivePool(() => this.client.leaseClient.leaseKeepAlive(), KEEPALIVE_STREAMS, this.renewTimeoutMs);
  }

  private get client(): Etcd3 {
    return this.connection.client;
  }

  /**
   * Move the store onto a new etcd client that presents `tls` (a renewed client
   * certificate: etcd3 reads credentials only when a client is built). The new
   * client must answer one call first; if it does not, it is dropped, this
   * rejects, and the current client stays. Then, in one step, so that no call,
   * event or renewal falls between two clients:
   * - each watch reopens on the new client from one past the last revision it
   *   delivered; etcd replays what came after, and what the old stream still
   *   brings is dropped (etcd-watch.ts): no event lost or delivered twice, no resync;
   * - lease renewals open their streams on the new client: a lease lives in etcd,
   *   not in a client, so the same lease ids go on being renewed;
   * - calls, retries and the member probes use the new client.
   * The old client is closed once what is still running on it is answered or timed out.
   */
  async reconnect(tls: EtcdTls): Promise<void> {
    if (this.closed) throw new StoreUnavailableError('the store client is closed');
    const next = new EtcdConnection({ ...this.connectionOptions, tls });
    try {
      await next.firstRound;
      await this.retry.execute(() => next.client.maintenance.status({ deadline: Date.now() + this.timeoutMs }));
      if (this.closed) throw new StoreUnavailableError('the store client is closed');
    } catch (err) {
      next.close();
      throw toStoreError(err);
    }
    const old = this.connection;
    this.connection = next;
    void this.keepAlives.reopen();
    for (const w of this.watches) w.reopen();
    this.retired.add(old);
    old.retire(Math.max(this.timeoutMs, this.renewTimeoutMs), () => this.retired.delete(old));
  }

  /** Run one store operation: optional retry, one re-authentication for streams, error mapping. */
  private async run<T>(fn: () => Promise<T>, retryable: boolean): Promise<T> {
    if (this.closed) throw new StoreUnavailableError('the store client is closed');
    await this.connection.firstRound; // know which members answer before sending calls to any
    let reauthed = false;
    for (;;) {
      try {
        return retryable ? await this.retry.execute(() => fn()) : await fn();
      } catch (err) {
        // etcd3 refreshes a stale token only for unary calls; a stream (keepalive) keeps
        // failing until one runs (LIBRARIES.md pitfall 13).
        if (this.hasAuth && !reauthed && isAuthTokenError(err)) {
          reauthed = true;
          await this.refreshAuth();
          continue;
        }
        throw toStoreError(err);
      }
    }
  }

  /** Any unary call makes etcd3 drop a stale token and log in again; its outcome does not matter. */
  private async refreshAuth(key = '\0'): Promise<void> {
    await this.client.kv.range({ key: Buffer.from(key), limit: 1, keys_only: true, serializable: true }).catch(() => {});
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    if (!Number.isFinite(ttlSeconds)) throw new InvalidRequestError('lease TTL must be a finite number');
    const res = await this.run(() => this.client.leaseClient.leaseGrant({ TTL: Math.max(1, Math.ceil(ttlSeconds)) }), true);
    if (res.error) throw new StoreUnavailableError('the store refused to grant a lease');
    return { id: String(res.ID), ttl: num(res.TTL) }; // etcd may grant more than asked
  }

  async keepAlive(leaseId: string): Promise<number> {
    return this.run(() => this.keepAlives.renew(leaseId), true);
  }

  async revokeLease(leaseId: string): Promise<void> {
    await this.run(async () => {
      try {
        await this.client.leaseClient.leaseRevoke({ ID: leaseId });
      } catch (err) {
        if (!isLeaseNotFound(err)) throw err; // already gone: revoking is idempotent
      }
    }, true);
  }

  async get(key: string): Promise<{ kv: KeyValue | undefined; revision: number }> {
    const res = await this.run(() => this.client.kv.range({ key: Buffer.from(key) }), true);
    const kv = res.kvs[0];
    return { kv: kv && toKeyValue(kv), revision: num(res.header.revision) };
  }

  async range(prefix: string): Promise<RangeResult> {
    // Pages are pinned to the first page's revision so they form one snapshot. If a
    // compaction lands between pages, the pinned revision is gone: start over.
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.run(() => this.rangePaged(prefix), true);
      } catch (err) {
        if (attempt < 2 && err instanceof RegistryError && isCompacted(err.cause)) continue;
        throw err;
      }
    }
  }

  private async rangePaged(prefix: string): Promise<RangeResult> {
    const end = prefixEnd(Buffer.from(prefix));
    let res = await this.client.kv.range({ key: Buffer.from(prefix), range_end: end, limit: PAGE });
    const revision = res.header.revision;
    const raw = [...res.kvs];
    while (res.more && res.kvs.length > 0) {
      const after = Buffer.concat([res.kvs[res.kvs.length - 1]!.key, Buffer.of(0)]); // next key after the last one
      res = await this.client.kv.range({ key: after, range_end: end, limit: PAGE, revision });
      raw.push(...res.kvs);
    }
    // etcd returns keys in byte order (sort_order NONE means by key).
    return { kvs: raw.map(toKeyValue), revision: num(revision) };
  }

  async txn(compares: Compare[], success: TxnOp[]): Promise<TxnResult> {
    const req = { compare: compares.map(toCompare), success: success.map(toOp), failure: [] };
    try {
      // Without compares a txn is a batch of puts/deletes: idempotent, safe to retry. With
      // compares, a retry after a lost answer would report the compare as failed.
      const res = await this.run(() => this.client.kv.txn(req), compares.length === 0);
      return { succeeded: res.succeeded, revision: num(res.header.revision) };
    } catch (err) {
      // Same outcome as the memory store: a put on an expired or revoked lease.
      if (err instanceof RegistryError && isLeaseNotFound(err.cause)) throw new LeaseNotFoundError();
      throw err;
    }
  }

  async watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Promise<Watch> {
    if (this.closed) throw new StoreUnavailableError('the store client is closed');
    await this.connection.firstRound;
    const w = new EtcdWatch(
      {
        client: () => this.client,
        timeoutMs: this.timeoutMs,
        hasAuth: this.hasAuth,
        refreshAuth: () => this.refreshAuth(prefix),
        onClosed: (x) => this.watches.delete(x),
      },
      prefix,
      fromRevision,
      handlers,
    );
    this.watches.add(w);
    await w.start();
    return w;
  }

  async status(timeoutMs: number): Promise<StoreStatus> {
    // A member without a leader refuses this (require-leader, above): the probe sees a partitioned
    // member as unreachable, and etcd3 counts the failure against that host, so calls move off it.
    // Retried: with several endpoints, another member may answer.
    const deadline = () => ({ deadline: Date.now() + timeoutMs });
    const [res, alarms, members] = await this.run(
      () =>
        Promise.all([
          this.client.maintenance.status({ ...deadline(), interceptors: [requireLeader] }),
          // Alarms are cluster-wide (raised through raft): any member answers for all.
          this.client.maintenance.alarm({ action: AlarmAction.Get }, deadline()),
          // With one endpoint there is no other member to name instead.
          this.endpoints.length > 1 ? this.client.cluster.memberList({}, deadline()) : undefined,
        ]),
      true,
    );
    const gone = members ? goneEndpoints(this.endpoints, members.members, this.connection.answeredBy) : [];
    return {
      revision: num(res.header.revision),
      cluster: String(res.header.cluster_id),
      alarms: [...new Set(alarms.alarms.map((a) => String(a.alarm).toLowerCase()))],
      details: {
        version: res.version,
        leader: res.leader, // member ids are uint64: strings
        member: res.header.member_id,
        raftTerm: num(res.raftTerm),
        dbSize: num(res.dbSize),
        ...(gone.length ? { goneEndpoints: gone } : {}),
      },
      warnings: [
        knownLeaseBug(res.version),
        ...gone.map(
          (e) =>
            `ETCD_ENDPOINTS lists ${e}, which no member of the store's cluster advertises (removed, replaced, or never a member): update it`,
        ),
      ].filter((w) => w !== undefined),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.watches].map((w) => w.close())); // before the client: cancel needs the stream
    this.closed = true;
    await this.keepAlives.close();
    this.connection.close();
    for (const old of this.retired) old.close();
    this.retired.clear();
  }
}
