// One subscriber's way out: what the hub gives it, written to its stream in
// order, at the pace the client reads. Bulk (a snapshot, a replay) is always
// written whole, in slices, yielding to the event loop between them, so that a
// 25 MB snapshot neither blocks other requests nor counts as "too slow". Live
// changes wait behind it. The queue points at shared blocks (memory.ts); what
// counts against the allowance is the live changes queued and whatever is this
// stream's alone.
import type { Block, Piece, StreamMemory } from './memory.ts';
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

interface Item {
  piece: Piece;
  /** Counts against the allowance: a live change, or bytes of this stream's alone. */
  owed: number;
  live: boolean;
  /** A live piece that could not be written at once: since when it waits. */
  queuedAt?: number;
}

/** Bulk still being rendered: its pieces take this place once there. */
interface Pending {
  later: Promise<Piece[]>;
  awaited?: boolean;
}

export class Outbox {
  private readonly queue: (Item | Pending)[] = [];
  /** How much of the first item is already written. */
  private offset = 0;
  /** Bytes queued that count against the allowance. */
  private owed = 0;
  /** Blocks handed to the connection since it last drained: its buffer still holds them. */
  private inConnection: Block[] = [];
  private blockedAt: number | undefined;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly sink: StreamSink,
    private readonly memory: StreamMemory,
    /** Bytes that may wait behind what the client has not read yet (live changes, and what is this stream's alone). */
    private readonly allowance: number,
    /** Called once when the allowance is passed: the subscriber is too slow. */
    private readonly overflow: () => void,
    /** A live piece that had to wait (a full connection, a snapshot ahead of it) was handed over after `seconds`. */
    private readonly waited: (seconds: number) => void,
  ) {
    sink.onDrain(() => {
      this.blockedAt = undefined;
      this.flushed();
      this.pump();
    });
  }

  /** Nothing is waiting: the client has been handed everything. */
  get idle(): boolean {
    return !this.queue.length && this.blockedAt === undefined;
  }

  /** Since when the connection has taken nothing while data waits (undefined: it takes what it is given). */
  get stalledSince(): number | undefined {
    return this.blockedAt;
  }

  /** A snapshot or replay (or one being rendered): written whole however slowly the client reads. */
  bulk(pieces: Piece[] | Promise<Piece[]>): void {
    if (this.closed) return;
    if (Array.isArray(pieces)) for (const piece of pieces) this.push(piece, false);
    else this.queue.push({ later: pieces });
    this.pump();
  }

  /** Live changes (or a keep-alive), each piece one write: false once the subscriber is too far behind. */
  live(pieces: Piece[]): boolean {
    if (this.closed) return false;
    // Not counting the pieces at hand: one revision (a big batch) may be larger than the
    // allowance, and closing every stream for it would close them again on each resume.
    if (!this.idle && this.owed > this.allowance) {
      this.close();
      this.overflow();
      return false;
    }
    const queuedAt = this.idle ? undefined : performance.now();
    for (const piece of pieces) this.push(piece, true, queuedAt);
    this.pump();
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const item of this.queue) if ('piece' in item) this.memory.release(item.piece.block);
    this.queue.length = 0;
    this.flushed();
  }

  /** The scheduler's turn for this stream's next slice. */
  resume(): void {
    this.scheduled = false;
    this.pump();
  }

  private push(piece: Piece, live: boolean, queuedAt?: number): void {
    const owed = live || piece.block.own ? piece.data.length : 0;
    this.memory.hold(piece.block);
    this.owed += owed;
    this.queue.push({ piece, owed, live, queuedAt });
  }

  /** The connection's buffer emptied: what it held is no longer this stream's to account for. */
  private flushed(): void {
    for (const block of this.inConnection) this.memory.release(block);
    this.inConnection = [];
  }

  private pump(): void {
    while (!this.closed && this.blockedAt === undefined && this.queue.length) {
      const head = this.queue[0]!;
      if ('later' in head) {
        this.await(head);
        return;
      }
      const { piece, live } = head;
      const slice = live ? piece.data : piece.data.subarray(this.offset, this.offset + SLICE_BYTES);
      this.offset += slice.length;
      if (this.offset >= piece.data.length) {
        this.queue.shift();
        this.offset = 0;
        this.owed -= head.owed;
        this.inConnection.push(piece.block);
        if (head.queuedAt !== undefined) this.waited((performance.now() - head.queuedAt) / 1000);
      }
      if (this.sink.write(slice)) this.flushed();
      else this.blockedAt = Date.now();
      if (!live && this.blockedAt === undefined && this.queue.length) {
        // Let other requests and streams run before the next slice.
        if (!this.scheduled) {
          this.scheduled = true;
          slices.add(this);
        }
        return;
      }
    }
  }

  private await(pending: Pending): void {
    if (pending.awaited) return;
    pending.awaited = true;
    pending.later.then(
      (pieces) => {
        if (this.queue[0] !== pending) return; // closed meanwhile
        this.queue.shift();
        const items = pieces.map((piece) => {
          this.memory.hold(piece.block);
          const owed = piece.block.own ? piece.data.length : 0;
          this.owed += owed;
          return { piece, owed, live: false };
        });
        this.queue.unshift(...items);
        this.pump();
      },
      () => this.close(),
    );
  }
}
