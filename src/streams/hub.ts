// Change streams: one fan-out of the cache's changes to every subscriber, with
// the ring (ring.ts) for resuming, replays from the store beyond it
// (replays.ts), shared snapshots (snapshots.ts) and one outbox per subscriber
// (outbox.ts) that writes at the client's pace.
//
// Resume contract: ids are store revisions. A subscriber that sends id L gets
// every change in its scope with revision > L, in order, each once, then the
// live ones; if those changes are gone (compaction), a snapshot with reset:true.
// Changes of one revision are written in one write.
//
// A stream starts in two steps: prepare (store reads, may fail: the route then
// answers an error) and attach (the response is open; nothing fails after).
import { randomInt } from 'node:crypto';
import { StoreCompactedError, TooManyStreamsError } from '../registry/errors.ts';
import type { RegistryRoot } from '../registry/index.ts';
import type { Change } from '../registry/types.ts';
import { History } from './history.ts';
import type { StreamSink } from './outbox.ts';
import { Replays } from './replays.ts';
import { Ring, type RingEntry } from './ring.ts';
import { Snapshots } from './snapshots.ts';
import { KEEP_ALIVE, progressFrame, retryFrame } from './sse.ts';
import { Subscriber, type Scope } from './subscriber.ts';

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
  /** Streams open at once at most; past it a new stream is 503 too-many-streams. */
  maxStreams: number;
}

/** A stream whose start is decided: attach its response and it runs. */
export interface PreparedStream {
  attach(sink: StreamSink): void;
}

/** Subscribers given their reset snapshot per turn of the event loop after a reload. */
const RESETS_PER_TURN = 50;

export class Hub {
  private readonly subscribers = new Set<Subscriber>();
  private readonly cache: RegistryRoot['cache'];
  private readonly ring: Ring;
  private readonly replays: Replays;
  private readonly snapshots: Snapshots;
  private readonly ticker: NodeJS.Timeout;
  private resetQueue: Subscriber[] = [];

  /** Streams of the registry's changes; `root` must be started (the ring starts at its first load). */
  constructor(
    root: RegistryRoot,
    private readonly opts: HubOptions,
    private readonly observer: HubObserver,
  ) {
    this.cache = root.cache;
    this.ring = new Ring(opts.history, this.cache.appliedRevision);
    this.replays = new Replays(new History(root.store, root.keys, root.bookkeeping), this.ring, opts.history);
    this.snapshots = new Snapshots(this.cache);
    this.cache.onChanges((changes) => this.publish(changes));
    root.onReset(() => this.resetAll());
    this.ticker = setInterval(() => this.tick(), opts.keepAliveMs);
    this.ticker.unref();
  }

  /**
   * Decide how a stream starts: a snapshot (no id), the changes after `lastEventId`
   * (from the ring, extended from the store's history first when it does not
   * reach back), or a reset snapshot. Rejects (too many streams, store
   * unreachable) before anything is written.
   */
  async prepare(scope: Scope, lastEventId: number | undefined): Promise<PreparedStream> {
    this.checkLimit();
    if (lastEventId !== undefined && lastEventId < this.ring.base) {
      try {
        await this.replays.reachBack(lastEventId);
      } catch (err) {
        if (!(err instanceof StoreCompactedError)) throw err;
      }
      // Other streams may have opened while this one read the store.
      this.checkLimit();
    }
    return { attach: (sink) => this.start(sink, scope, lastEventId) };
  }

  /** Shutdown: end every stream (clients resume elsewhere with their last id). */
  closeAll(): void {
    clearInterval(this.ticker);
    for (const sub of [...this.subscribers]) this.close(sub);
  }

  /**
   * The cache was reloaded (compaction past the watch, or a store restored from
   * a backup): changes may have been missed, so every stream starts over from a
   * reset snapshot, a few streams per turn of the event loop.
   */
  resetAll(): void {
    this.ring.restart(this.cache.appliedRevision);
    const idle = !this.resetQueue.length;
    for (const sub of this.subscribers) {
      if (sub.resetPending) continue;
      sub.resetPending = true;
      this.resetQueue.push(sub);
    }
    if (idle && this.resetQueue.length) setImmediate(() => this.sendResets());
  }

  private checkLimit(): void {
    if (this.subscribers.size >= this.opts.maxStreams) throw new TooManyStreamsError(this.opts.maxStreams);
  }

  private start(sink: StreamSink, scope: Scope, lastEventId: number | undefined): void {
    const sub = new Subscriber(sink, scope, this.opts.bufferBytes, (s) => this.close(s, true));
    this.subscribers.add(sub);
    this.observer.clients(this.subscribers.size);
    sink.onClose(() => this.close(sub));
    // Randomized so that the clients of a restarted gateway do not all come back at once.
    sub.outbox.live(retryFrame(randomInt(1000, 5001)));
    if (lastEventId === undefined) this.sendSnapshot(sub, false);
    else if (lastEventId >= this.cache.appliedRevision) sub.lastId = lastEventId;
    else if (lastEventId >= this.ring.base) this.replayRing(sub, lastEventId);
    else this.sendSnapshot(sub, true); // compacted, or beyond what one replay keeps
  }

  private close(sub: Subscriber, abrupt = false): void {
    if (sub.closed) return;
    sub.closed = true;
    this.subscribers.delete(sub);
    this.observer.clients(this.subscribers.size);
    sub.outbox.close();
    sub.sink.close(abrupt);
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
    const entries = this.ring.push(changes);
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
  private framesFor(sub: Subscriber, entries: Iterable<RingEntry>): { text: string; events: number } | undefined {
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
    const { revision, body } = this.snapshots.for(sub, reset);
    sub.lastId = revision;
    sub.lastEventAt = Date.now();
    sub.outbox.bulk(body);
    this.observer.sent(1);
  }

  private replayRing(sub: Subscriber, after: number): void {
    sub.lastId = after;
    const chunk = this.framesFor(sub, this.ring.after(after));
    if (!chunk) return;
    sub.outbox.bulk(chunk.text);
    this.observer.sent(chunk.events);
  }

  /** Keep-alive comments for every stream; a progress event for a quiet one whose id fell behind. */
  private tick(): void {
    const now = Date.now();
    const applied = this.cache.appliedRevision;
    for (const sub of this.subscribers) {
      // A stream still writing a snapshot or replay is not idle, and its id moves on with it.
      if (sub.resetPending || !sub.outbox.idle) continue;
      let chunk = KEEP_ALIVE;
      let events = 0;
      if (applied > sub.lastId && now - sub.lastEventAt >= this.opts.keepAliveMs * 0.9) {
        chunk += progressFrame(applied);
        sub.lastId = applied;
        sub.lastEventAt = now;
        events = 1;
      }
      if (sub.outbox.live(chunk) && events) this.observer.sent(events);
    }
  }
}
