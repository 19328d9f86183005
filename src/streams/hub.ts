// Change streams: one fan-out of the cache's changes to every subscriber, with
// the ring (ring.ts) for resuming, replays from the store beyond it
// (replays.ts), shared snapshots (snapshots.ts) and one outbox per subscriber
// (outbox.ts) that writes at the client's pace.
//
// Resume contract: ids are store revisions. A subscriber that sends id L gets
// every change in its scope with revision > L, in order, each once, then the
// live ones; if those changes are gone (compaction), or L is above the store's
// revision (a typo, a store restored from a backup), a snapshot with reset:true.
// Changes of one revision are written in one write.
//
// A stream starts in two steps: prepare (store reads, may fail: the route then
// answers an error) and attach (the response is open; nothing fails after).
import type { GatewayEvents } from '../events.ts';
import { randomInt } from 'node:crypto';
import { TooManyStreamsError } from '../registry/errors.ts';
import type { RegistryRoot } from '../registry/index.ts';
import type { Change } from '../registry/types.ts';
import { History } from './history.ts';
import { Block, StreamMemory, whole } from './memory.ts';
import type { StreamSink } from './outbox.ts';
import { Replays } from './replays.ts';
import { framesAfter, Ring, type Frames, type RingEntry } from './ring.ts';
import { Snapshots } from './snapshots.ts';
import { KEEP_ALIVE, progressFrame, retryFrame } from './sse.ts';
import { Subscriber, type Scope } from './subscriber.ts';

export interface HubOptions {
  /** Changes kept for resuming without a store read. */
  history: number;
  keepAliveMs: number;
  /** Bytes that may wait behind what a subscriber has not read yet: live changes and data of its own. */
  bufferBytes: number;
  /** Streams open at once at most; past it a new stream is 503 too-many-streams. */
  maxStreams: number;
  /** Unread bytes of all streams together past which a new stream is 503 too-many-streams. */
  memoryBudget: number;
  /** A stream whose client has taken nothing for this long while data waits is closed. */
  stallMs: number;
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
  private readonly memory: StreamMemory;
  private readonly ring: Ring;
  private readonly history: History;
  private readonly replays: Replays;
  private readonly snapshots: Snapshots;
  private readonly ticker: NodeJS.Timeout;
  private resetQueue: Subscriber[] = [];
  private readonly keepAlive = Block.of(KEEP_ALIVE, false);

  /** Streams of the registry's changes; `root` must be started (the ring starts at its first load). */
  constructor(
    root: RegistryRoot,
    private readonly opts: HubOptions,
    private readonly events: GatewayEvents,
  ) {
    this.cache = root.cache;
    this.memory = new StreamMemory((bytes) => events.streamsUnread(bytes));
    this.ring = new Ring(opts.history, this.cache.appliedRevision);
    this.history = new History(root.store, root.keys, root.bookkeeping);
    this.replays = new Replays(this.history, this.ring, opts.history);
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
    this.checkRoom();
    let fromTheFuture = false;
    if (lastEventId !== undefined && lastEventId > this.cache.appliedRevision) {
      // Above this replica's view: the store is asked whether it has got there (a replica lags a little).
      fromTheFuture = lastEventId > (await this.history.revision());
    } else if (lastEventId !== undefined && lastEventId < this.ring.base && !this.replays.lost(lastEventId)) {
      await this.replays.reachBack(lastEventId);
    }
    // Again: other streams may have opened while this one asked the store.
    this.checkRoom();
    return { attach: (sink) => this.start(sink, scope, fromTheFuture ? undefined : lastEventId, fromTheFuture) };
  }

  /** Shutdown: end every stream (clients resume elsewhere with their last id). */
  closeAll(): void {
    clearInterval(this.ticker);
    for (const sub of [...this.subscribers]) this.close(sub);
  }

  /**
   * The cache was reloaded (compaction past the watch, or a store restored from
   * a backup so that revisions went back): changes may have been missed, so
   * every stream starts over from a reset snapshot, a few streams per turn of
   * the event loop, and nothing learnt about older revisions is kept.
   */
  resetAll(): void {
    this.ring.restart(this.cache.appliedRevision);
    this.replays.restart();
    const idle = !this.resetQueue.length;
    for (const sub of this.subscribers) {
      if (sub.resetPending) continue;
      sub.resetPending = true;
      this.resetQueue.push(sub);
    }
    if (idle && this.resetQueue.length) setImmediate(() => this.sendResets());
  }

  private checkRoom(): void {
    const { maxStreams, memoryBudget } = this.opts;
    if (this.subscribers.size >= maxStreams)
      throw new TooManyStreamsError(`this gateway already serves its limit of ${maxStreams} change streams`);
    if (this.memory.unread >= memoryBudget)
      throw new TooManyStreamsError(`this gateway's change streams hold ${memoryBudget} bytes their clients have not read`);
  }

  private start(sink: StreamSink, scope: Scope, lastEventId: number | undefined, reset: boolean): void {
    const sub = new Subscriber(
      sink,
      scope,
      this.memory,
      this.opts.bufferBytes,
      (s) => this.close(s, true),
      (seconds) => this.events.streamDelivered(seconds),
    );
    this.subscribers.add(sub);
    this.events.streamsOpen(this.subscribers.size);
    sink.onClose(() => this.close(sub));
    // Randomized so that the clients of a restarted gateway do not all come back at once.
    sub.outbox.live([whole(Block.of(retryFrame(randomInt(1000, 5001)), true))]);
    if (lastEventId === undefined) this.sendSnapshot(sub, reset);
    // An id from before the store was restored may name a change the restored store never had, under a
    // number it reuses for another: no place to resume from, even once the restored store has passed it.
    else if (lastEventId <= this.cache.rewoundFrom) this.sendSnapshot(sub, true);
    else if (lastEventId >= this.cache.appliedRevision) sub.lastId = lastEventId;
    else if (lastEventId >= this.ring.base) this.replayRing(sub, lastEventId);
    else this.sendSnapshot(sub, true); // compacted, or beyond what one replay keeps
  }

  private close(sub: Subscriber, abrupt = false): void {
    if (sub.closed) return;
    sub.closed = true;
    this.subscribers.delete(sub);
    this.events.streamsOpen(this.subscribers.size);
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

  /** Hands the changes to every stream that sees them; how long the whole fan-out took is a delivery delay. */
  private publish(changes: Change[]): void {
    if (!changes.length) return;
    const appliedAt = performance.now();
    const entries = this.ring.push(changes);
    // Streams of every service first: a client that also follows one service on
    // another stream then sees a change on the broad stream no later than there.
    for (const broad of [true, false]) {
      for (const sub of this.subscribers) {
        if (!sub.scope.services !== broad || sub.resetPending) continue;
        const frames = this.framesFor(sub, entries);
        if (frames && sub.outbox.live(frames.pieces)) this.events.eventsSent(frames.events);
      }
    }
    this.events.streamDelivered((performance.now() - appliedAt) / 1000);
  }

  /** The frames of `entries` this subscriber has not had and may see, one piece per revision; advances its id. */
  private framesFor(sub: Subscriber, entries: Iterable<RingEntry>): Frames | undefined {
    const frames = framesAfter(entries, sub.lastId, (service) => sub.sees(service));
    if (!frames) return undefined;
    sub.lastId = frames.last;
    sub.lastEventAt = Date.now();
    return frames;
  }

  private sendSnapshot(sub: Subscriber, reset: boolean): void {
    const { revision, pieces } = this.snapshots.for(sub, reset);
    sub.lastId = revision;
    sub.lastEventAt = Date.now();
    sub.outbox.bulk(pieces);
    this.events.eventsSent(1);
  }

  private replayRing(sub: Subscriber, after: number): void {
    sub.lastId = after;
    const frames = this.framesFor(sub, this.ring.after(after));
    if (!frames) return;
    sub.outbox.bulk(frames.pieces);
    this.events.eventsSent(frames.events);
  }

  /**
   * Keep-alive comments for every stream; a progress event for a quiet one whose
   * id fell behind; a stream whose client has taken nothing for too long while
   * data waits is closed (its client resumes with its last id when it reads again).
   */
  private tick(): void {
    const now = Date.now();
    const applied = this.cache.appliedRevision;
    for (const sub of this.subscribers) {
      const stalledSince = sub.outbox.stalledSince;
      if (stalledSince !== undefined && now - stalledSince >= this.opts.stallMs) {
        this.close(sub, true);
        continue;
      }
      // A stream still writing a snapshot or replay is not idle, and its id moves on with it.
      if (sub.resetPending || !sub.outbox.idle) continue;
      const pieces = [whole(this.keepAlive)];
      if (applied > sub.lastId && now - sub.lastEventAt >= this.opts.keepAliveMs * 0.9) {
        pieces.push(whole(Block.of(progressFrame(applied), true)));
        sub.lastId = applied;
        sub.lastEventAt = now;
      }
      if (sub.outbox.live(pieces) && pieces.length > 1) this.events.eventsSent(1);
    }
  }
}
