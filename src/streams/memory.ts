// What unread stream data costs. Frames and snapshots are built once and shared
// by every stream that sends them (a Block); a stream's queue only points at
// them. A block counts once towards the gateway's unread bytes however many
// streams hold it, from the first stream that queues it until the last one has
// handed it to its connection.

/** Bytes built once and held by any number of streams. */
export class Block {
  holders = 0;

  constructor(
    readonly data: Buffer,
    /** Held by one stream only (counts against that stream's allowance). */
    readonly own = false,
  ) {}

  static of(text: string, own: boolean): Block {
    return new Block(Buffer.from(text), own);
  }
}

/** A part of a block to write: all of it, or a run of frames inside it. */
export interface Piece {
  block: Block;
  data: Buffer;
}

export const whole = (block: Block): Piece => ({ block, data: block.data });

/** The gateway's unread stream bytes: every block some stream still holds, counted once. */
export class StreamMemory {
  private held = 0;
  private reported = false;

  constructor(private readonly report: (bytes: number) => void) {}

  get unread(): number {
    return this.held;
  }

  hold(block: Block): void {
    if (block.holders++ === 0) this.change(block.data.length);
  }

  release(block: Block): void {
    if (--block.holders === 0) this.change(-block.data.length);
  }

  private change(bytes: number): void {
    this.held += bytes;
    // Once per turn of the event loop, not once per write.
    if (this.reported) return;
    this.reported = true;
    setImmediate(() => {
      this.reported = false;
      this.report(this.held);
    });
  }
}
