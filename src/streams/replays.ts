// Resumes from before the ring: the ring is extended backwards from the store's
// history. Resumes that arrive together share one replay (one fence, one watch)
// from the lowest id among them; one replay runs at a time and the next gathers
// meanwhile.
import type { Replay } from './history.ts';
import type { Ring } from './ring.ts';

/** Where older changes come from (history.ts: the store's history). */
export interface ChangeHistory {
  /** The changes after `after`, the newest `max` of them at most (whole revisions). */
  since(after: number, max: number): Promise<Replay>;
}

/**
 * The most changes one store replay keeps (the newest): a resume from further
 * back gets a reset snapshot, which costs less than replaying more.
 */
export const REPLAY_MAX_CHANGES = 50_000;

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

  constructor(
    private readonly history: ChangeHistory,
    private readonly ring: Ring,
    /** Changes one replay keeps at least (the ring's size, when larger than REPLAY_MAX_CHANGES). */
    private readonly keep: number,
  ) {}

  /**
   * Make the ring reach back to `after` if the store still has those changes.
   * Rejects when the store cannot tell (unreachable, or the changes compacted).
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

  private async run(): Promise<void> {
    this.running = true;
    while (this.next) {
      const batch = this.next;
      this.next = undefined;
      // A replay that just finished may already have brought the ring back far enough.
      if (batch.after >= this.ring.base) {
        batch.settle();
        continue;
      }
      try {
        this.ring.extend(await this.history.since(batch.after, Math.max(REPLAY_MAX_CHANGES, this.keep)));
        batch.settle();
      } catch (err) {
        batch.settle(err);
      }
    }
    this.running = false;
  }
}
