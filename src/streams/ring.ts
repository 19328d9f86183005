// The recent changes, kept for resuming streams without a store read. The frames
// of one revision are built once, as one block that every stream sends (or a run
// of it, for a stream that sees only some of its services). Holds whole
// revisions only, so that "every change above `base` is here" stays true; a
// replay from the store can extend it backwards.
import type { Change } from '../registry/types.ts';
import type { Replay } from './history.ts';
import { Block, whole, type Piece } from './memory.ts';
import { changeFrame } from './sse.ts';

/** One change: its frame is block.data[start, end). */
export interface RingEntry {
  revision: number;
  service: string;
  block: Block;
  start: number;
  end: number;
}

export class Ring {
  private entries: RingEntry[] = [];
  /** entries[head..] are live (a head index avoids O(n) shifts). */
  private head = 0;
  private floor: number;

  constructor(
    /** Changes kept (whole revisions, so sometimes a few more). */
    private readonly capacity: number,
    base: number,
  ) {
    this.floor = base;
  }

  /** Every change with a revision above this one is in the ring. */
  get base(): number {
    return this.floor;
  }

  /** Start over empty at `base` (the cache was reloaded). */
  restart(base: number): void {
    this.entries = [];
    this.head = 0;
    this.floor = base;
  }

  /** Add the changes of the newest revisions; returns their entries. */
  push(changes: Change[]): RingEntry[] {
    const added = toEntries(changes);
    for (const e of added) this.entries.push(e);
    this.trim();
    return added;
  }

  /** Entries with a revision above `after`, oldest first. */
  *after(after: number): Iterable<RingEntry> {
    for (let i = this.head; i < this.entries.length; i++) if (this.entries[i]!.revision > after) yield this.entries[i]!;
  }

  /** Put a replay's changes in front, if the two meet (the ring still reaches back to the replay's fence). */
  extend(replay: Replay): void {
    if (replay.fence < this.floor || replay.from >= this.floor) return;
    const older = toEntries(replay.changes.filter((c) => c.revision <= this.floor));
    this.entries = [...older, ...this.entries.slice(this.head)];
    this.head = 0;
    this.floor = replay.from;
  }

  private trim(): void {
    const excess = this.entries.length - this.head - this.capacity;
    if (excess <= 0) return;
    let head = this.head + excess;
    // Drop whole revisions only, so that "everything above base is here" holds.
    const base = this.entries[head - 1]!.revision;
    while (head < this.entries.length && this.entries[head]!.revision === base) head++;
    this.floor = base;
    this.head = head;
    if (this.head > this.capacity) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }
}

/** What a subscriber is sent of some entries: one piece per revision. */
export interface Frames {
  pieces: Piece[];
  events: number;
  /** The revision of the last frame. */
  last: number;
}

/** The frames of `entries` above `after` whose service `sees` accepts, or undefined when there are none. */
export function framesAfter(entries: Iterable<RingEntry>, after: number, sees: (service: string) => boolean): Frames | undefined {
  const pieces: Piece[] = [];
  let events = 0;
  let last = after;
  let run: RingEntry[] = [];
  const flush = () => {
    if (!run.length) return;
    pieces.push(pieceOf(run));
    events += run.length;
    last = run[0]!.revision;
    run = [];
  };
  for (const e of entries) {
    if (run.length && run[0]!.revision !== e.revision) flush();
    if (e.revision > after && sees(e.service)) run.push(e);
  }
  flush();
  return pieces.length ? { pieces, events, last } : undefined;
}

/** One revision's frames: the shared block, a run of it, or (frames apart) a copy of their own. */
function pieceOf(run: RingEntry[]): Piece {
  const block = run[0]!.block;
  const contiguous = run.every((e, i) => i === 0 || e.start === run[i - 1]!.end);
  if (!contiguous) return whole(new Block(Buffer.concat(run.map((e) => block.data.subarray(e.start, e.end))), true));
  const start = run[0]!.start;
  const end = run.at(-1)!.end;
  return { block, data: start === 0 && end === block.data.length ? block.data : block.data.subarray(start, end) };
}

/** Entries for changes in revision order: one block per revision. */
function toEntries(changes: Change[]): RingEntry[] {
  const out: RingEntry[] = [];
  for (let i = 0; i < changes.length;) {
    const revision = changes[i]!.revision;
    let j = i;
    while (j < changes.length && changes[j]!.revision === revision) j++;
    const frames = changes.slice(i, j).map((c) => Buffer.from(changeFrame(c)));
    const block = new Block(frames.length === 1 ? frames[0]! : Buffer.concat(frames));
    let start = 0;
    for (let k = i; k < j; k++) {
      const end = start + frames[k - i]!.length;
      out.push({ revision, service: changes[k]!.service, block, start, end });
      start = end;
    }
    i = j;
  }
  return out;
}
