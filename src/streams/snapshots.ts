// Snapshots: the state of a subscriber's services at the cache's revision, as
// one frame. Each service's part is rendered once per version of its instance
// list (the cache replaces a list on change, never alters it) and shared by
// every snapshot that shows it, whatever the scope or revision: streams that
// never read pin one copy, not one each. Rendering goes a slice at a time, with
// turns of the event loop in between, so that a large one blocks nothing.
import type { Cache, CachedInstance } from '../registry/cache.ts';
import { Block, whole, type Piece } from './memory.ts';
import { SLICE_BYTES } from './slices.ts';
import { servicePart, SNAPSHOT_SEPARATOR, SNAPSHOT_TAIL, snapshotHead } from './sse.ts';
import type { Subscriber } from './subscriber.ts';

/** A part gives the event loop a turn after this much rendering. */
const RENDER_TURN_MS = 5;

export class Snapshots {
  /** Rendered (or being rendered) parts, by the instance list they show: gone with the list. */
  private readonly parts = new WeakMap<readonly CachedInstance[], Promise<Block[]>>();
  // Shared by this gateway's snapshots only: each gateway counts its own unread bytes.
  private readonly separator = Block.of(SNAPSHOT_SEPARATOR, false);
  private readonly tail = Block.of(SNAPSHOT_TAIL, false);

  constructor(private readonly cache: Cache) {}

  /**
   * The snapshot `sub` gets now, at the cache's revision (returned with it). The
   * lists are taken now, so it is the state at `revision` however long rendering takes.
   */
  for(sub: Subscriber, reset: boolean): { revision: number; pieces: Promise<Piece[]> } {
    const revision = this.cache.appliedRevision;
    const services = this.cache.snapshot((s) => sub.sees(s), sub.namedServices());
    return { revision, pieces: this.assemble(revision, reset, services) };
  }

  private async assemble(revision: number, reset: boolean, services: Map<string, readonly CachedInstance[]>): Promise<Piece[]> {
    const out: Piece[] = [whole(Block.of(snapshotHead(revision, reset), true))];
    const turn = { start: performance.now() };
    let first = true;
    for (const [name, list] of services) {
      if (!first) out.push(whole(this.separator));
      first = false;
      let part = this.parts.get(list);
      if (!part) this.parts.set(list, (part = render(name, list, turn)));
      for (const block of await part) out.push(whole(block));
    }
    out.push(whole(this.tail));
    return out;
  }
}

/** One service's part in blocks of about one write slice each; `turn` is shared by the parts of one snapshot. */
async function render(name: string, list: readonly CachedInstance[], turn: { start: number }): Promise<Block[]> {
  const blocks: Block[] = [];
  let slice = '';
  for (const piece of servicePart(name, list)) {
    slice += piece;
    if (slice.length < SLICE_BYTES) continue;
    blocks.push(Block.of(slice, false));
    slice = '';
    await giveWay(turn);
  }
  blocks.push(Block.of(slice, false));
  await giveWay(turn);
  return blocks;
}

/** A turn of the event loop for other work once this one has rendered for RENDER_TURN_MS. */
async function giveWay(turn: { start: number }): Promise<void> {
  if (performance.now() - turn.start < RENDER_TURN_MS) return;
  await new Promise((resolve) => setImmediate(resolve));
  turn.start = performance.now();
}
