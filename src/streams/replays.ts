// Resumes from before the ring: the ring is extended backwards from the store's
// history. Resumes that arrive together share one replay (one fence, one watch)
// from the lowest id among them; one replay runs at a time and the next gathers
// meanwhile. A gap one replay cannot cover (compacted, more than it keeps, or more
// than it can read before its deadline) is remembered: resumes from below it get
// their reset at once, so a client that loops on an old id costs the store one
// replay, not one per attempt.
import { StoreCompactedError, StoreFullError } from '../registry/errors.ts';
import { ReplayTimedOutError, type Replay } from './history.ts';
import type { Ring } from './ring.ts';

/**
 * The most changes one store replay keeps (the newest): a resume from further
 * back gets a reset snapshot, which costs less than replaying more.
 */
export const REPLAY_MAX_CHANGES = 50_000;

/** Where older changes come from (history.ts: the store's history). */
export interface ChangeHistory {
  /** The changes after `after`, the newest `max` of them at most (whole revisions). */
  since(after: number, max: number): Promise<Replay>;
}

/** Resumes waiting for one store replay. */
interface Batch {
  /** The lowest id resumed from. */
  after: number;
  done: Promise<void>;
  settle(err?: unknown): void;
}

export class Replays {
  private next: Batch | undefined;
  private running = false;
  /** Ids below this one cannot be replayed from the store (known since a replay found out). */
  private gone = 0;
  /** Counts restarts: a replay read before the last one is of no use. */
  private epoch = 0;

  constructor(
    private readonly history: ChangeHistory,
    private readonly ring: Ring,
    /** Changes one replay keeps at least (the ring's size, when larger than REPLAY_MAX_CHANGES). */
    private readonly keep: number,
  ) {}

  /** A resume from `after` can only get a reset: the changes after it are known to be gone. */
  lost(after: number): boolean {
    return after < this.gone;
  }

  /**
   * Make the ring reach back to `after` if the store still has those changes.
   * Rejects when the store cannot be read; resolves either way otherwise (the
   * ring then tells whether it reaches back).
   */
  reachBack(after: number): Promise<void> {
    let batch = this.next;
    if (!batch) {
      let settle!: (err?: unknown) => void;
      const done = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
      batch = this.next = { after, done, settle };
    }
    batch.after = Math.min(batch.after, after);
    if (!this.running) void this.run();
    return batch.done;
  }

  /** The store's revisions started over (a reload): nothing learnt about them holds. */
  restart(): void {
    this.gone = 0;
    this.epoch++;
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.next) {
      const batch = this.next;
      this.next = undefined;
      // A replay that just finished may already have brought the ring back far enough.
      if (batch.after >= this.ring.base || this.lost(batch.after)) {
        batch.settle();
        continue;
      }
      const epoch = this.epoch;
      try {
        const replay = await this.history.since(batch.after, Math.max(REPLAY_MAX_CHANGES, this.keep));
        if (epoch === this.epoch) {
          this.ring.extend(replay);
          // It kept only the newest changes: from further back there are even more.
          if (replay.from > batch.after) this.gone = Math.max(this.gone, replay.from);
        }
        batch.settle();
      } catch (err) {
        if (err instanceof StoreCompactedError) {
          // A watch from after + 1 needs after + 1 >= the compaction revision.
          const gone = err.compactRevision === undefined ? batch.after + 1 : err.compactRevision - 1;
          if (epoch === this.epoch) this.gone = Math.max(this.gone, gone, batch.after + 1);
          batch.settle();
        } else if (err instanceof ReplayTimedOutError) {
          // The store answered but could not replay this much in time: trying again would
          // cost it as much again, so the gap is remembered and the resume gets its reset.
          if (epoch === this.epoch) this.gone = Math.max(this.gone, batch.after + 1);
          batch.settle();
        } else if (err instanceof StoreFullError) {
          // A full store refuses the fence, yet a resume is a read and must go on: it gets
          // a reset snapshot. Nothing is remembered, so once space is freed it replays again.
          batch.settle();
        } else batch.settle(err);
      }
    }
    this.running = false;
  }
}
