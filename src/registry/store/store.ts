// The Store interface: what the registry needs from etcd, and nothing more.
// Two implementations share these semantics: store/etcd.ts (it and the etcd-*.ts
// files beside it are the only ones that import etcd3) and store/memory.ts (the
// embedded store). Revisions are plain numbers (etcd's int64 revisions stay far below 2^53); lease ids are strings
// (etcd's exceed 2^53). A lease id of '0' means "no lease".

export interface KeyValue {
  key: string;
  value: string;
  /** Revision of the last change to this key (etcd mod_revision). */
  modRevision: number;
  /** Revision at which this key was created (etcd create_revision). */
  createRevision: number;
  /** Lease the key is bound to, '0' when none. */
  lease: string;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** Store revision the read was served at (etcd header.revision). */
  revision: number;
}

export interface Lease {
  id: string;
  /** TTL in seconds the store actually granted (may be above the asked one). */
  ttl: number;
}

/** A condition of a transaction on one key. `createRevision == 0` means "key absent". */
export interface Compare {
  key: string;
  target: 'modRevision' | 'createRevision';
  op: '==' | '!=' | '>' | '<';
  value: number;
}

export type TxnOp = { type: 'put'; key: string; value: string; lease?: string } | { type: 'delete'; key: string };

export interface TxnResult {
  succeeded: boolean;
  /** Store revision after the transaction (the revision of its writes when it wrote). */
  revision: number;
}

/** One key change seen by a watch. */
export interface WatchEvent {
  type: 'put' | 'delete';
  key: string;
  /** For a put: the new value. For a delete: ''. */
  value: string;
  /** Revision of the change (for a delete, the revision of the delete). */
  modRevision: number;
  createRevision: number;
  lease: string;
  /** The key's value before this change, when the store knows it (etcd prev_kv). */
  prevValue?: string;
  /** The mod revision of that previous value. */
  prevModRevision?: number;
}

/**
 * One delivery of a watch: the changes in order, and the store revision the
 * watch has caught up to. Every change of the watched range at or below
 * `revision` has been delivered by the time this batch arrives; changes made at
 * one revision (one transaction) always arrive in one batch.
 */
export interface WatchBatch {
  events: WatchEvent[];
  revision: number;
}

export interface WatchHandlers {
  onBatch(batch: WatchBatch): void;
  /**
   * The watch cannot go on from where it was (its start revision was compacted,
   * or the store cancelled it). It is dead: the owner resyncs and starts a new one.
   */
  onError(err: Error): void;
  /** Connection to the store lost (the watch resumes by itself from the last revision). */
  onDisconnected?(err: Error): void;
  /** (Re)connected and watching. */
  onConnected?(): void;
}

export interface Watch {
  /** Stop the watch. Safe to call more than once, and after onError. */
  close(): Promise<void>;
}

export interface StoreStatus {
  revision: number;
  /** Free-form details for /health (leader, version, members…). */
  details?: Record<string, unknown>;
  /** The store cluster's id (etcd's cluster_id), when it has one: another id is another store. */
  cluster?: string;
  /** Alarms raised in the store, lower case ('nospace': space quota exhausted, 'corrupt'); none when absent. */
  alarms?: string[];
  /** Known defects of the answering member's version: logged once each, shown in /health. */
  warnings?: string[];
}

export interface Store {
  readonly kind: 'etcd' | 'memory';

  grantLease(ttlSeconds: number): Promise<Lease>;
  /** Renew a lease once by id; resolves the remaining TTL, 0 when the lease is gone (expired or revoked). */
  keepAlive(leaseId: string): Promise<number>;
  /** Revoke a lease (deleting its keys). Revoking an unknown lease is not an error. */
  revokeLease(leaseId: string): Promise<void>;

  get(key: string): Promise<{ kv: KeyValue | undefined; revision: number }>;
  /** All keys under `prefix`, sorted by key (byte order), read linearizably. */
  range(prefix: string): Promise<RangeResult>;
  /** Atomically: if every compare holds, run `success`; else write nothing (`succeeded` false). */
  txn(compares: Compare[], success: TxnOp[]): Promise<TxnResult>;

  /**
   * Watch every key under `prefix` from `fromRevision` (inclusive) on, with
   * previous values. Resolves once the watch is established. If
   * `fromRevision` was compacted, onError is called (with a
   * StoreCompactedError from registry/errors.ts).
   */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Promise<Watch>;

  /** A cheap round trip (no data read): the current revision. Fails when the store is unreachable. */
  status(timeoutMs: number): Promise<StoreStatus>;

  close(): Promise<void>;
}
