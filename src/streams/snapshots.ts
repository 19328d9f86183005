// Snapshots: the state of a subscriber's services at the cache's revision, as
// one frame. Rendered once per scope and revision and shared by every
// subscriber that needs it; rendered a slice at a time, with turns of the event
// loop in between, so that a large one never blocks other requests.
import type { Cache } from '../registry/cache.ts';
import { snapshotFrame } from './sse.ts';
import type { Subscriber } from './subscriber.ts';

/** Snapshots kept for sharing at one revision (rendered or being rendered). */
const SHARED_SNAPSHOTS = 10_000;
/** A snapshot is rendered in slices of about this size... */
const RENDER_SLICE_CHARS = 256 * 1024;
/** ...and gives the event loop a turn after this much work. */
const RENDER_TURN_MS = 5;

export class Snapshots {
  /** Snapshots rendered (or being rendered) at `renderedAt`, by scope key and reset flag. */
  private rendered = new Map<string, Promise<Buffer[]>>();
  private renderedAt = -1;

  constructor(private readonly cache: Cache) {}

  /** The snapshot `sub` gets now, at the cache's revision (returned with it). */
  for(sub: Subscriber, reset: boolean): { revision: number; body: Promise<Buffer[]> } {
    const revision = this.cache.appliedRevision;
    if (revision !== this.renderedAt) {
      this.rendered = new Map();
      this.renderedAt = revision;
    }
    const key = sub.scopeKey === undefined ? undefined : `${reset}|${sub.scopeKey}`;
    let body = key === undefined ? undefined : this.rendered.get(key);
    if (!body) {
      body = this.render(sub, revision, reset);
      if (key !== undefined && this.rendered.size < SHARED_SNAPSHOTS) this.rendered.set(key, body);
    }
    return { revision, body };
  }

  /**
   * The instance lists are taken now (the cache replaces them on change, never
   * alters them), so the snapshot is the state at `revision` however long the
   * rendering takes.
   */
  private async render(sub: Subscriber, revision: number, reset: boolean): Promise<Buffer[]> {
    const services = this.cache.snapshot((s) => sub.sees(s), sub.namedServices());
    const parts: Buffer[] = [];
    let slice = '';
    let turnStart = performance.now();
    for (const piece of snapshotFrame(revision, services, reset)) {
      slice += piece;
      if (slice.length < RENDER_SLICE_CHARS) continue;
      parts.push(Buffer.from(slice));
      slice = '';
      if (performance.now() - turnStart >= RENDER_TURN_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        turnStart = performance.now();
      }
    }
    parts.push(Buffer.from(slice));
    return parts;
  }
}
