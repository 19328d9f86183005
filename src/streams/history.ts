// Changes older than the hub's ring, read back from the store's history: a
// watch from a past revision up to a fence written now, so the read has an end.
import { randomUUID } from 'node:crypto';
import type { BookkeepingLease } from '../registry/bookkeeping.ts';
import { byRevision, describeRevision, fromPrevValue } from '../registry/changes.ts';
import { RegistryError, StoreUnavailableError } from '../registry/errors.ts';
import type { KeyLayout } from '../registry/keys.ts';
import type { MonitoredStore } from '../registry/store/monitored.ts';
import type { Change } from '../registry/types.ts';

/** A replay from the store that has not reached its fence by then fails. */
const REPLAY_TIMEOUT_MS = 10_000;
/** How long a check of the store's revision may take. */
const REVISION_CHECK_TIMEOUT_MS = 3000;

/** A replay that did not reach its fence in time: the store answers, but cannot replay this much history quickly enough. */
export class ReplayTimedOutError extends StoreUnavailableError {}

export interface Replay {
  /** Every change with a revision above `from`, up to and including `fence`, in order. */
  changes: Change[];
  /** `after`, or higher when older changes were left out to keep at most `max`. */
  from: number;
  /** The revision of a key written at the start. */
  fence: number;
}

export class History {
  private revisionCheck: Promise<number> | undefined;

  constructor(
    private readonly store: MonitoredStore,
    private readonly keys: KeyLayout,
    private readonly bookkeeping: BookkeepingLease,
  ) {}

  /**
   * The changes after `after`, the newest `max` of them at most (whole revisions).
   * Rejects with StoreCompactedError when those changes are gone, and with
   * StoreUnavailableError at once when the store is known to be unreachable.
   */
  async since(after: number, max: number): Promise<Replay> {
    if (!this.store.reachable)
      throw new StoreUnavailableError('the store is unreachable: changes before this gateway started cannot be read');
    const fence = await this.writeFence();
    return this.read(after, fence, max);
  }

  /**
   * The store's current revision, by a cheap round trip (no data read) that
   * concurrent callers share. StoreUnavailableError when the store does not answer.
   */
  revision(): Promise<number> {
    this.revisionCheck ??= this.store
      .status(REVISION_CHECK_TIMEOUT_MS)
      .then(
        (status) => status.revision,
        (err: Error) => Promise.reject(asStoreError(err)),
      )
      .finally(() => (this.revisionCheck = undefined));
    return this.revisionCheck;
  }

  /** Write a short-lived bookkeeping key and resolve its revision: every change up to it is then in the store's history. */
  private async writeFence(): Promise<number> {
    const key = this.keys.fence(randomUUID());
    const res = await this.bookkeeping.bind((lease) => this.store.txn([], [{ type: 'put', key, value: '{}', lease }]));
    return res.revision;
  }

  private read(after: number, fence: number, max: number): Promise<Replay> {
    return new Promise<Replay>((resolve, reject) => {
      let changes: Change[] = [];
      let from = after;
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        void watchP.then((w) => w.close()).catch(() => {});
        if (err) reject(err);
        else resolve({ changes, from, fence });
      };
      const timer = setTimeout(() => finish(new ReplayTimedOutError('replay from the store timed out')), REPLAY_TIMEOUT_MS);
      const watchP = this.store.watch(this.keys.root, after + 1, {
        onBatch: (batch) => {
          for (const [rev, events] of byRevision(batch.events)) {
            if (rev <= fence) changes.push(...describeRevision(this.keys, events, rev, fromPrevValue));
          }
          if (changes.length > max) [changes, from] = newest(changes, max);
          // Only the fence's own event proves the catch-up reached it: etcd labels
          // partial catch-up batches with its current revision.
          if (batch.events.some((e) => e.modRevision >= fence)) finish();
        },
        onError: (err) => finish(asStoreError(err)),
      });
      watchP.catch((err: Error) => finish(asStoreError(err)));
    });
  }
}

/** The newest `max` changes or fewer (whole revisions), and the revision of the newest one left out. */
function newest(changes: Change[], max: number): [Change[], number] {
  let cut = changes.length - max;
  const dropped = changes[cut - 1]!.revision;
  while (cut < changes.length && changes[cut]!.revision === dropped) cut++;
  return [changes.slice(cut), dropped];
}

/** A failure of the watch the route can answer: compaction as it is, anything else as an unreachable store. */
function asStoreError(err: Error): Error {
  return err instanceof RegistryError ? err : new StoreUnavailableError('the store did not replay its history', { cause: err });
}
