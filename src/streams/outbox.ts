// One subscriber's way out: what the hub gives it, written to its stream in
// order, at the pace the client reads. Bulk (a snapshot, a replay) is always
// written whole, in slices, yielding to the event loop between them, so that a
// 25 MB snapshot neither blocks other requests nor counts as "too slow". Live
// changes wait behind it; only their bytes count against the allowance.
import { slices, SLICE_BYTES } from './slices.ts';

/** Where a subscriber's bytes go (an HTTP response: response.ts). */
export interface StreamSink {
  /** Hand bytes to the connection; false when it wants no more until drained. */
  write(chunk: string | Buffer): boolean;
  /** Called each time the connection has room again after write returned false. */
  onDrain(listener: () => void): void;
  /** Called once when the connection is gone (the client left, or close below). */
  onClose(listener: () => void): void;
  /** End the stream; `abrupt` cuts it (a client too far behind) instead of ending it cleanly. */
  close(abrupt: boolean): void;
}

const EMPTY = Buffer.alloc(0);

interface Item {
  data: Buffer;
  /** Live bytes count against the allowance; bulk does not. */
  live: boolean;
  /** Bulk still being rendered: its parts take this item's place once there. */
  later?: Promise<Buffer[]>;
  awaited?: boolean;
}

export class Outbox {
  private readonly queue: Item[] = [];
  /** How much of queue[0] is already written. */
  private offset = 0;
  /** Bytes of live changes queued and not yet written. */
  private liveBytes = 0;
  private blocked = false;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly sink: StreamSink,
    /** Live bytes that may wait behind what the client has not read yet. */
    private readonly allowance: number,
    /** Called once when the allowance is passed: the subscriber is too slow. */
    private readonly overflow: () => void,
  ) {
    sink.onDrain(() => {
      this.blocked = false;
      this.pump();
    });
  }

  /** Nothing is waiting: the client has been handed everything. */
  get idle(): boolean {
    return !this.queue.length && !this.blocked;
  }

  /** A snapshot or replay (or one being rendered): written whole however slowly the client reads. */
  bulk(data: string | Promise<Buffer[]>): void {
    if (typeof data === 'string') this.push({ data: Buffer.from(data), live: false });
    else this.push({ data: EMPTY, live: false, later: data });
  }

  /** A live change (or a keep-alive): false once the subscriber is too far behind. */
  live(chunk: string): boolean {
    if (this.closed) return false;
    if (this.idle) {
      this.blocked = !this.sink.write(chunk);
      return true;
    }
    // Not counting the chunk at hand: one revision (a big batch) may be larger than the
    // allowance, and closing every stream for it would close them again on each resume.
    if (this.liveBytes > this.allowance) {
      this.close();
      this.overflow();
      return false;
    }
    const data = Buffer.from(chunk);
    this.liveBytes += data.length;
    this.push({ data, live: true });
    return true;
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
  }

  /** The scheduler's turn for this stream's next slice. */
  resume(): void {
    this.scheduled = false;
    this.pump();
  }

  private push(item: Item): void {
    if (this.closed) return;
    this.queue.push(item);
    if (this.queue.length === 1) this.pump();
  }

  private pump(): void {
    while (!this.closed && !this.blocked && this.queue.length) {
      const head = this.queue[0]!;
      if (head.later) {
        if (head.awaited) return;
        head.awaited = true;
        head.later.then(
          (parts) => {
            if (this.queue[0] !== head) return; // closed meanwhile
            this.queue.splice(0, 1, ...parts.map((data) => ({ data, live: false })));
            this.pump();
          },
          () => this.close(),
        );
        return;
      }
      const slice = head.live ? head.data : head.data.subarray(this.offset, this.offset + SLICE_BYTES);
      this.offset += slice.length;
      if (this.offset >= head.data.length) {
        this.queue.shift();
        this.offset = 0;
        if (head.live) this.liveBytes -= head.data.length;
      }
      this.blocked = !this.sink.write(slice);
      if (!head.live && !this.blocked && this.queue.length) {
        // Let other requests and streams run before the next slice.
        if (!this.scheduled) {
          this.scheduled = true;
          slices.add(this);
        }
        return;
      }
    }
  }
}
