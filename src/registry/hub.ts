// Change streams: one fan-out of the cache's changes to every subscriber, a ring
// of recent changes for resuming, and replay from the store's history beyond
// the ring. How a change looks on the wire is the HTTP side's (routes/sse.ts):
// the hub is handed the frames and builds each one once.
//
// Resume contract: ids are store revisions. A subscriber that sends id L gets
// every change in its scope with revision > L, in order, each once, then the
// live ones; if those changes are gone (compaction), a snapshot with reset:true.
// Changes of one revision are written in one write. A subscriber that falls too
// far behind is closed; it resumes with its last id.
import { randomInt } from 'node:crypto';
import type { Cache } from './cache.ts';
import { StoreCompactedError } from './errors.ts';
import type { History } from './history.ts';
import type { Change, Instance } from './types.ts';

/** Where a subscriber's bytes go (an HTTP response). */
export interface StreamSink {
  /** Queue bytes; false when the client is too far behind and must be dropped. */
  write(chunk: string): boolean;
  /** End the stream (the hub calls it once). */
  close(): void;
}

export interface Scope {
  /** Named services (a per-service stream or ?service=): only these. Undefined: every service allowed. */
  services?: string[];
  /** Further narrowing (access rights): may this subscriber see this service? */
  allowed?: (service: string) => boolean;
}

/** The wire format of a stream (routes/sse.ts). */
export interface Frames {
  /** One change: built once and shared by every subscriber that sees it. */
  change(c: Change): string;
  snapshot(revision: number, services: Record<string, Instance[]>, reset: boolean): string;
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
  frames: Frames;
}

interface Entry {
  revision: number;
  service: string;
  frame: string;
}

class Subscriber {
  /** Highest revision this subscriber has been given (or skipped as out of scope). */
  lastId = 0;
  lastEventAt = Date.now();
  /** While replaying from the store: live entries held back until the replay is written. */
  held: Entry[] | undefined;
  closed = false;
  private readonly named: Set<string> | undefined;

  constructor(
    readonly sink: StreamSink,
    readonly scope: Scope,
  ) {
    this.named = scope.services && new Set(scope.services);
  }

  sees(service: string): boolean {
    return (!this.named || this.named.has(service)) && (!this.scope.allowed || this.scope.allowed(service));
  }
}

export class Hub {
  private readonly subscribers = new Set<Subscriber>();
  private ring: Entry[] = [];
  private ringHead = 0;
  /** Every change with a revision above this one is in the ring. */
  private ringBase: number;
  private readonly ticker: NodeJS.Timeout;

  private readonly frames: Frames;

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
   * after `lastEventId`, then live changes.
   */
  async open(sink: StreamSink, scope: Scope, lastEventId?: number): Promise<Subscriber> {
    const sub = new Subscriber(sink, scope);
    this.subscribers.add(sub);
    this.observer.clients(this.subscribers.size);
    // Randomized so that the clients of a restarted gateway do not all come back at once.
    this.write(sub, this.frames.retry(randomInt(1000, 5001)), 0);
    const applied = this.cache.appliedRevision;
    if (lastEventId === undefined) this.sendSnapshot(sub, false);
    else if (lastEventId >= applied) sub.lastId = lastEventId;
    else if (lastEventId >= this.ringBase) this.replayRing(sub, lastEventId);
    else await this.replayStore(sub, lastEventId);
    return sub;
  }

  close(sub: Subscriber): void {
    if (sub.closed) return;
    sub.closed = true;
    this.subscribers.delete(sub);
    this.observer.clients(this.subscribers.size);
    sub.sink.close();
  }

  /** Shutdown: end every stream (clients resume elsewhere with their last id). */
  closeAll(): void {
    clearInterval(this.ticker);
    for (const sub of [...this.subscribers]) this.close(sub);
  }

  /** The cache was reloaded: changes may have been missed, so every stream starts over from a snapshot. */
  reset(): void {
    this.ring = [];
    this.ringHead = 0;
    this.ringBase = this.cache.appliedRevision;
    for (const sub of this.subscribers) if (!sub.held) this.sendSnapshot(sub, true);
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
        if (!sub.scope.services !== broad) continue;
        if (sub.held) sub.held.push(...entries);
        else this.deliver(sub, entries);
      }
    }
  }

  private deliver(sub: Subscriber, entries: Iterable<Entry>): void {
    let chunk = '';
    let n = 0;
    let last = sub.lastId;
    for (const e of entries) {
      if (e.revision <= sub.lastId || !sub.sees(e.service)) continue;
      chunk += e.frame;
      n++;
      last = e.revision;
    }
    if (!n) return;
    sub.lastId = last;
    sub.lastEventAt = Date.now();
    this.write(sub, chunk, n);
  }

  private write(sub: Subscriber, chunk: string, events: number): void {
    if (sub.closed) return;
    if (!sub.sink.write(chunk)) return this.close(sub);
    if (events) this.observer.sent(events);
  }

  private sendSnapshot(sub: Subscriber, reset: boolean): void {
    const revision = this.cache.appliedRevision;
    const services = this.cache.snapshot(
      (s) => sub.sees(s),
      sub.scope.services?.filter((s) => sub.sees(s)),
    );
    sub.lastId = revision;
    sub.lastEventAt = Date.now();
    this.write(sub, this.frames.snapshot(revision, services, reset), 1);
  }

  private replayRing(sub: Subscriber, after: number): void {
    sub.lastId = after;
    this.deliver(sub, this.ringFrom(after));
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
   * Beyond the ring: watch the store from `after`+1 up to a fence written now.
   * Live changes arriving meanwhile are held, then given after the replay
   * (those at or below the fence were in the replay), so no gap opens.
   */
  private async replayStore(sub: Subscriber, after: number): Promise<void> {
    sub.held = [];
    sub.lastId = after;
    try {
      const { changes, fence } = await this.history.since(after);
      this.deliver(
        sub,
        changes.map((c) => this.entry(c)),
      );
      sub.lastId = Math.max(sub.lastId, fence);
    } catch (err) {
      if (!(err instanceof StoreCompactedError)) {
        this.close(sub);
        throw err;
      }
      this.sendSnapshot(sub, true);
    }
    const held = sub.held;
    sub.held = undefined;
    this.deliver(sub, held);
  }

  private entry(c: Change): Entry {
    return { revision: c.revision, service: c.service, frame: this.frames.change(c) };
  }

  /** Keep-alive comments for every stream; a progress event for a quiet one whose id fell behind. */
  private tick(): void {
    const now = Date.now();
    const applied = this.cache.appliedRevision;
    for (const sub of this.subscribers) {
      if (sub.held) continue;
      let chunk = this.frames.keepAlive;
      let events = 0;
      if (applied > sub.lastId && now - sub.lastEventAt >= this.opts.keepAliveMs * 0.9) {
        chunk += this.frames.progress(applied);
        sub.lastId = applied;
        sub.lastEventAt = now;
        events = 1;
      }
      this.write(sub, chunk, events);
    }
  }
}
