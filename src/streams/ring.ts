// The recent changes, each with its frame built once, kept for resuming streams
// without a store read. Holds whole revisions only, so that "every change above
// `base` is here" stays true; a replay from the store can extend it backwards.
import type { Change } from '../registry/types.ts';
import type { Replay } from './history.ts';
import { changeFrame } from './sse.ts';

export interface RingEntry {
  revision: number;
  service: string;
  frame: string;
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
    const added = changes.map(toEntry);
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
    const older = replay.changes.filter((c) => c.revision <= this.floor).map(toEntry);
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

function toEntry(c: Change): RingEntry {
  return { revision: c.revision, service: c.service, frame: changeFrame(c) };
}
