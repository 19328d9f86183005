// Notices a store that is no longer the one the cache follows: a cluster
// restored from a snapshot (its revision went back) or another cluster (its id
// changed). Neither breaks the watch: it reconnects and waits, in silence, for
// revisions the store will reach again with other changes, so writes made after
// a restore would never show. Every status answer is checked; the watch is
// replaced by a full reload (WatchSync.storeReplaced) and streams get a reset.
import type { Cache } from './cache.ts';
import type { KeyLayout } from './keys.ts';
import type { MonitoredStore } from './store/monitored.ts';
import type { StoreStatus } from './store/store.ts';
import type { WatchSync } from './sync.ts';

export class RestoreCheck {
  private cluster: string | undefined;
  private checking = false;

  constructor(
    private readonly store: MonitoredStore,
    private readonly keys: KeyLayout,
    private readonly cache: Cache,
    private readonly sync: WatchSync,
  ) {}

  /** Given one status answer; at most one check at a time (later answers are checked next time). */
  check(status: StoreStatus): void {
    if (this.checking) return;
    this.checking = true;
    this.inspect(status)
      .catch(() => {}) // the store did not answer the confirming read: next status asks again
      .finally(() => {
        this.checking = false;
      });
  }

  private async inspect(status: StoreStatus): Promise<void> {
    const before = this.cluster;
    if (status.cluster) this.cluster = status.cluster;
    if (before && status.cluster && status.cluster !== before) {
      return this.sync.storeReplaced(`the store's cluster id changed from ${before} to ${status.cluster}`);
    }
    const applied = this.cache.appliedRevision;
    if (status.revision >= applied) return;
    // A status answer may come from a member a little behind the others. A linearizable
    // read is not: it answers at or above every revision the store ever committed, so
    // below what the cache applied it can only mean the store went back.
    const { revision } = await this.store.get(this.keys.root);
    if (revision < applied && applied === this.cache.appliedRevision) {
      this.sync.storeReplaced(
        `the store is at revision ${revision}, below revision ${applied} this gateway applied (restored from a snapshot?)`,
      );
    }
  }
}
