// Change streams: one fan-out of the cache's changes to every subscriber, a ring
// of recent changes for resuming, and replay from the store's history beyond
// the ring. How a change looks on the wire is the HTTP side's (routes/sse.ts):
// the hub is handed the frames and builds each one once.
//
// Resume contract: ids are store revisions. A subscriber that sends id L gets
// every change in its scope with revision > L, in order, each once, then the
// live ones; if those changes are gone (compaction), a snapshot with reset:true.
// Changes of one revision are written in one write.
//
// Fleet size: a snapshot is rendered once per (scope, revision) and shared by
// every subscriber that needs it; snapshots and replays are written whole at
// the client's pace (outbox.ts) and only live changes queued behind them count
// against the allowance. Resumes from before the ring share one store replay,
// which fills the ring backwards; resets after a reload are spread over turns
// of the event loop.
import { randomInt } from 'node:crypto';
import type { Cache, CachedInstance } from './cache.ts';
import { StoreCompactedError } from './errors.ts';
import type { History, Replay } from './history.ts';
import { Outbox } from './outbox.ts';
import type { Change } from './types.ts';

/** Where a subscriber's bytes go (an HTTP response). */
export interface StreamSink {
  /** Hand bytes to the connection; false when it wants no more until drained. */
  write(chunk: string | Buffer): boolean;
  /** Called each time the connection has room again after write returned false. */
  onDrain(listener: () => void): void;
  /** End the stream; `abrupt` cuts it (a client too far behind) instead of ending it cleanly. */
  close(abrupt: boolean): void;
}

export interface Scope {
  /** Named services (a per-service stream or ?service=): only these. Undefined: every service allowed. */
  services?: string[];
  /** Further narrowing (access rights): may this subscriber see this service? */
  allowed?: (service: string) => boolean;
  /** Whose rights `allowed` checks (a token name): streams with the same key and services share snapshots. */
  accessKey?: string;
}

/** The wire format of a stream (routes/sse.ts). */
export interface Frames {
  /** One change: built once and shared by every subscriber that sees it. */
  change(c: Change): string;
  /** In pieces, to be joined in order; instances are given serialized (CachedInstance.json), in the order they are shown. */
  snapshot(revision: number, services: ReadonlyMap<string, readonly CachedInstance[]>, reset: boolean): Iterable<string>;
  /** A quiet stream's id moves on to `revision`. */
  progress(revision: number): string;
  /** How long a client waits before reconnecting. */
  retry(ms: number): string;
  keepAlive: string;
}

export interface HubObserver {
  clients(n: number): void;
  sent(events: number): void;
}

export interface HubOptions {
  /** Changes kept for resuming without a store read. */
  history: number;
  keepAliveMs: number;
  /** Bytes of live changes that may wait behind what a subscriber has not read yet. */
  bufferBytes: number;
  frames: Frames;
}

/**
 * The most changes one store replay keeps (the newest): a resume from further
 * back gets a reset snapshot, which costs less than replaying more.
 */
const REPLAY_MAX_CHANGES = 50_000;
/** Subscribers given their reset snapshot per turn of the event loop after a reload. */
const RESETS_PER_TURN = 50;
/** Snapshots kept for sharing at one revision (rendered or being rendered). */
const SHARED_SNAPSHOTS = 10_000;
/** A snapshot is rendered in slices of about this size... */
const RENDER_SLICE_CHARS = 256 * 1024;
/** ...and gives the event loop a turn after this much work. */
const RENDER_TURN_MS = 5;

interface Entry {
  revision: number;
  service: string;
  frame: string;
}

class Subscriber {
  /** Highest revision this subscriber has been given (or skipped as out of scope). */
  lastId = 0;
  lastEventAt = Date.now();
  /** A reset snapshot is on its way (after a reload): live changes until then are in it. */
  resetPending = false;
  closed = false;
  readonly outbox: Outbox;
  /** Subscribers with the same key see the same services (undefined: shares with none). */
  readonly scopeKey: string | undefined;
  private readonly named: Set<string> | undefined;

  constructor(
    readonly sink: StreamSink,
    readonly scope: Scope,
    bufferBytes: number,
    tooSlow: (sub: Subscriber) => void,
  ) {
    this.named = scope.services && new Set(scope.services);
    this.outbox = new Outbox(sink, bufferBytes, () => tooSlow(this));
    const names = scope.services ? [...this.named!].sort().join('/') : '*';
    this.scopeKey = scope.allowed && scope.accessKey === undefined ? undefined : `${scope.accessKey ?? ''}|${names}`;
  }

  sees(service: string): boolean {
    return (!this.named || this.named.has(service)) && (!this.scope.allowed || this.scope.allowed(service));
  }
}

/** Resumes waiting for one store replay. */
interface ReplayBatch {
  /** The lowest id resumed from. */
  after: number;
  done: Promise<void>;
  settle(err?: unknown): void;
}

export class Hub {
  private readonly subscribers = new Set<Subscriber>();
  private ring: Entry[] = [];
  private ringHead = 0;
  /** Every change with a revision above this one is in the ring. */
  private ringBase: number;
  private readonly ticker: NodeJS.Timeout;
  private readonly frames: Frames;
  /** Snapshots rendered (or being rendered) at `renderedAt`, by scope key and reset flag. */
  private rendered = new Map<string, Promise<Buffer[]>>();
  private renderedAt = -1;
  /** The resumes gathering for the next store replay; one replay runs at a time. */
  private nextReplay: ReplayBatch | undefined;
  private replaying = false;
  private resetQueue: Subscriber[] = [];

  constructor(
    private readonly cache: Cache,
    private readonly history: History,
    private readonly opts: HubOptions,
    private readonly observer: HubObserver,
  ) {
    this.frames = opts.frames;
    this.ringBase = cache.appliedRevision;
    cache.onChanges((changes) => this.publish(changes));
    this.ticker = setInterval(() => this.tick(), opts.keepAliveMs);
    this.ticker.unref();
  }

  get size(): number {
    return this.subscribers.size;
  }

  /**
   * Start a stream: `retry:`, then a snapshot (new subscriber) or the changes
   * after `lastEventId`, then live changes. A resume from before the ring reads
   * the store first: when that fails (store unreachable) this rejects before
   * `connect` is called, so the client gets an error answer, not a cut stream.
   */
  async open(scope: Scope, lastEventId: number | undefined, connect: () => StreamSink): Promise<Subscriber> {
    if (lastEventId !== undefined && lastEventId < this.ringBase) {
      try {
        await this.replayFrom(lastEventId);
      } catch (err) {
        if (!(err instanceof StoreCompactedError)) throw err;
      }
    }
    const sub = new Subscriber(connect(), scope, this.opts.bufferBytes, (s) => this.close(s, true));
    this.subscribers.add(sub);
    this.observer.clients(this.subscribers.size);
    // Randomized so that the clients of a restarted gateway do not all come back at once.
    sub.outbox.live(this.frames.retry(randomInt(1000, 5001)));
    if (lastEventId === undefined) this.sendSnapshot(sub, false);
    else if (lastEventId >= this.cache.appliedRevision) sub.lastId = lastEventId;
    else if (lastEventId >= this.ringBase) this.replayRing(sub, lastEventId);
    else this.sendSnapshot(sub, true); // compacted, or beyond what one replay keeps
    return sub;
  }

  close(sub: Subscriber, abrupt = false): void {
    if (sub.closed) return;
    sub.closed = true;
    this.subscribers.delete(sub);
    this.observer.clients(this.subscribers.size);
    sub.outbox.close();
    sub.sink.close(abrupt);
  }

  /** Shutdown: end every stream (clients resume elsewhere with their last id). */
  closeAll(): void {
    clearInterval(this.ticker);
    for (const sub of [...this.subscribers]) this.close(sub);
  }

  /**
   * The cache was reloaded: changes may have been missed, so every stream starts
   * over from a reset snapshot, a few streams per turn of the event loop.
   */
  reset(): void {
    this.ring = [];
    this.ringHead = 0;
    this.ringBase = this.cache.appliedRevision;
    const idle = !this.resetQueue.length;
    for (const sub of this.subscribers) {
      if (sub.resetPending) continue;
      sub.resetPending = true;
      this.resetQueue.push(sub);
    }
    if (idle && this.resetQueue.length) setImmediate(() => this.sendResets());
  }

  private sendResets(): void {
    for (const sub of this.resetQueue.splice(0, RESETS_PER_TURN)) {
      sub.resetPending = false;
      if (!sub.closed) this.sendSnapshot(sub, true);
    }
    if (this.resetQueue.length) setImmediate(() => this.sendResets());
  }

  private publish(changes: Change[]): void {
    if (!changes.length) return;
    const entries = changes.map((c) => this.entry(c));
    for (const e of entries) this.ring.push(e);
    this.trimRing();
    // Streams of every service first: a client that also follows one service on
    // another stream then sees a change on the broad stream no later than there.
    for (const broad of [true, false]) {
      for (const sub of this.subscribers) {
        if (!sub.scope.services !== broad || sub.resetPending) continue;
        const chunk = this.framesFor(sub, entries);
        if (chunk && sub.outbox.live(chunk.text)) this.observer.sent(chunk.events);
      }
    }
  }

  /** The frames of `entries` this subscriber has not had and may see, as one chunk; advances its id. */
  private framesFor(sub: Subscriber, entries: Iterable<Entry>): { text: string; events: number } | undefined {
    let text = '';
    let events = 0;
    let last = sub.lastId;
    for (const e of entries) {
      if (e.revision <= sub.lastId || !sub.sees(e.service)) continue;
      text += e.frame;
      events++;
      last = e.revision;
    }
    if (!events) return undefined;
    sub.lastId = last;
    sub.lastEventAt = Date.now();
    return { text, events };
  }

  private sendSnapshot(sub: Subscriber, reset: boolean): void {
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
    sub.lastId = revision;
    sub.lastEventAt = Date.now();
    sub.outbox.bulk(body);
    this.observer.sent(1);
  }

  /**
   * The instance lists are taken now (the cache replaces them on change, never
   * alters them), so the snapshot is the state at `revision` however long the
   * rendering takes; it is joined a slice at a time, with turns of the event
   * loop in between.
   */
  private async render(sub: Subscriber, revision: number, reset: boolean): Promise<Buffer[]> {
    const services = this.cache.snapshot(
      (s) => sub.sees(s),
      sub.scope.services?.filter((s) => sub.sees(s)),
    );
    const parts: Buffer[] = [];
    let slice = '';
    let turnStart = performance.now();
    for (const piece of this.frames.snapshot(revision, services, reset)) {
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

  private replayRing(sub: Subscriber, after: number): void {
    sub.lastId = after;
    const chunk = this.framesFor(sub, this.ringFrom(after));
    if (!chunk) return;
    sub.outbox.bulk(chunk.text);
    this.observer.sent(chunk.events);
  }

  /** Ring entries with a revision above `after`, oldest first. */
  private *ringFrom(after: number): Iterable<Entry> {
    for (let i = this.ringHead; i < this.ring.length; i++) if (this.ring[i]!.revision > after) yield this.ring[i]!;
  }

  private trimRing(): void {
    const excess = this.ring.length - this.ringHead - this.opts.history;
    if (excess <= 0) return;
    let head = this.ringHead + excess;
    // Drop whole revisions only, so that "everything above ringBase is here" holds.
    const base = this.ring[head - 1]!.revision;
    while (head < this.ring.length && this.ring[head]!.revision === base) head++;
    this.ringBase = base;
    this.ringHead = head;
    if (this.ringHead > this.opts.history) {
      this.ring = this.ring.slice(this.ringHead);
      this.ringHead = 0;
    }
  }

  /**
   * Make the ring reach back to `after` from the store's history. Resumes that
   * arrive together share one replay (one fence, one watch) from the lowest id
   * among them; one replay runs at a time and the next gathers meanwhile.
   */
  private replayFrom(after: number): Promise<void> {
    let batch = this.nextReplay;
    if (!batch) {
      let settle!: (err?: unknown) => void;
      const done = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
      batch = this.nextReplay = { after, done, settle };
    }
    batch.after = Math.min(batch.after, after);
    if (!this.replaying) void this.runReplays();
    return batch.done;
  }

  private async runReplays(): Promise<void> {
    this.replaying = true;
    while (this.nextReplay) {
      const batch = this.nextReplay;
      this.nextReplay = undefined;
      // A replay that just finished may already have brought the ring back far enough.
      if (batch.after >= this.ringBase) {
        batch.settle();
        continue;
      }
      try {
        this.extendRing(await this.history.since(batch.after, Math.max(REPLAY_MAX_CHANGES, this.opts.history)));
        batch.settle();
      } catch (err) {
        batch.settle(err);
      }
    }
    this.replaying = false;
  }

  /** Put a replay's changes in front of the ring, if the two meet (the ring still reaches back to the fence). */
  private extendRing(replay: Replay): void {
    if (replay.fence < this.ringBase || replay.from >= this.ringBase) return;
    const older = replay.changes.filter((c) => c.revision <= this.ringBase).map((c) => this.entry(c));
    this.ring = [...older, ...this.ring.slice(this.ringHead)];
    this.ringHead = 0;
    this.ringBase = replay.from;
  }

  private entry(c: Change): Entry {
    return { revision: c.revision, service: c.service, frame: this.frames.change(c) };
  }

  /** Keep-alive comments for every stream; a progress event for a quiet one whose id fell behind. */
  private tick(): void {
    const now = Date.now();
    const applied = this.cache.appliedRevision;
    for (const sub of this.subscribers) {
      // A stream still writing a snapshot or replay is not idle, and its id moves on with it.
      if (sub.resetPending || !sub.outbox.idle) continue;
      let chunk = this.frames.keepAlive;
      let events = 0;
      if (applied > sub.lastId && now - sub.lastEventAt >= this.opts.keepAliveMs * 0.9) {
        chunk += this.frames.progress(applied);
        sub.lastId = applied;
        sub.lastEventAt = now;
        events = 1;
      }
      if (sub.outbox.live(chunk) && events) this.observer.sent(events);
    }
  }
}
