// A watch on the embedded store: batches queued per watch and delivered on a
// later tick, in order, as a network watch would deliver them.
import type { Watch, WatchBatch, WatchHandlers } from './store.ts';

export class MemoryWatch implements Watch {
  private queue: WatchBatch[] = [];
  private scheduled = false;
  closed = false;

  constructor(
    private readonly prefix: string,
    private readonly fromRevision: number,
    private readonly handlers: WatchHandlers,
    private readonly onClose: (w: MemoryWatch) => void,
  ) {}

  /** Queue the part of a committed batch this watch sees; delivery is always on a later tick. */
  offer(batch: WatchBatch): void {
    if (this.closed || batch.revision < this.fromRevision) return;
    const events = this.prefix === '' ? batch.events : batch.events.filter((e) => e.key.startsWith(this.prefix));
    if (events.length === 0) return;
    this.queue.push({ revision: batch.revision, events });
    if (!this.scheduled) {
      this.scheduled = true;
      // setImmediate (not a microtask): like a network watch, batches arrive after
      // the writer's and the watch() caller's continuations have run.
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const queue = this.queue;
    this.queue = [];
    let i = 0;
    try {
      for (; i < queue.length && !this.closed; i++) {
        const b = queue[i]!;
        // Fresh event objects per delivery: history events are shared by all watches.
        this.handlers.onBatch({ revision: b.revision, events: b.events.map((e) => ({ ...e })) });
      }
    } finally {
      // A throwing handler must not lose or reorder what is left: put it back in front.
      if (i + 1 < queue.length && !this.closed) {
        this.queue = queue.slice(i + 1).concat(this.queue);
      }
      if (this.queue.length > 0 && !this.closed && !this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    }
  };

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.onClose(this);
  }
}
