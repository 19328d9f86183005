// The round robin that writes snapshots and replays a slice at a time, so that
// many large writes at once neither block the event loop nor starve each other.

/** Something with a slice to write when its turn comes (an Outbox). */
interface Resumable {
  resume(): void;
}

/** Bulk is written in slices of this size... */
export const SLICE_BYTES = 64 * 1024;
/** ...by every stream in turn, for at most this long per turn of the event loop. */
const TURN_MS = 4;

/**
 * Streams with a bulk slice to write, served round robin across turns of the
 * event loop: however many streams write snapshots at once, a turn spends at
 * most TURN_MS (plus one slice) on them before other requests run.
 */
class SliceScheduler {
  private queue: Resumable[] = [];
  private next: Resumable[] = [];
  private scheduled = false;

  add(outbox: Resumable): void {
    this.next.push(outbox);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.run());
    }
  }

  private run(): void {
    this.scheduled = false;
    [this.queue, this.next] = [this.next, this.queue];
    const start = performance.now();
    let i = 0;
    while (i < this.queue.length && performance.now() - start < TURN_MS) this.queue[i++]!.resume();
    // Those not reached go first next turn.
    if (i < this.queue.length) this.next.unshift(...this.queue.slice(i));
    this.queue.length = 0;
    if (this.next.length && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.run());
    }
  }
}

export const slices = new SliceScheduler();
