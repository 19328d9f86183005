// Changes older than the hub's ring, read back from the store's history: a
// watch from a past revision up to a fence written now, so the read has an end.
import { byRevision, describeRevision, fromPrevValue } from './changes.ts';
import type { KeyLayout } from './keys.ts';
import type { Store } from './store/store.ts';
import type { Change } from './types.ts';

/** A replay from the store that has not reached its fence by then fails. */
const REPLAY_TIMEOUT_MS = 10_000;

export interface Replay {
  /** The changes with a revision above `after`, up to and including `fence`, in order. */
  changes: Change[];
  /** The revision of a key written at the start: every change up to it is in `changes`. */
  fence: number;
}

export class History {
  constructor(
    private readonly store: Store,
    private readonly keys: KeyLayout,
    /** Writes a bookkeeping key and resolves its revision (Registry.writeFence). */
    private readonly writeFence: () => Promise<number>,
  ) {}

  /** Rejects with StoreCompactedError when those changes are gone. */
  async since(after: number): Promise<Replay> {
    const fence = await this.writeFence();
    const changes = await this.read(after, fence);
    return { changes: changes.filter((c) => c.revision <= fence), fence };
  }

  private read(after: number, fence: number): Promise<Change[]> {
    return new Promise<Change[]>((resolve, reject) => {
      const changes: Change[] = [];
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        void watchP.then((w) => w.close()).catch(() => {});
        if (err) reject(err);
        else resolve(changes);
      };
      const timer = setTimeout(() => finish(new Error('replay from the store timed out')), REPLAY_TIMEOUT_MS);
      const watchP = this.store.watch(this.keys.root, after + 1, {
        onBatch: (batch) => {
          for (const [rev, events] of byRevision(batch.events)) {
            if (rev <= fence) changes.push(...describeRevision(this.keys, events, rev, fromPrevValue));
          }
          // Only the fence's own event proves the catch-up reached it: etcd labels
          // partial catch-up batches with its current revision.
          if (batch.events.some((e) => e.modRevision >= fence)) finish();
        },
        onError: (err) => finish(err),
      });
      watchP.catch((err: Error) => finish(err));
    });
  }
}
