// The one watch that keeps the cache exact.
//
// Contract: the watch starts at the revision after the full read it follows, so
// no change falls between the two. A broken connection is resumed by the store
// client from the last revision it delivered (nothing lost, nothing twice). A
// watch that cannot resume (its revision was compacted, or the store cancelled
// it) is replaced by a fresh full read plus a new watch, and listeners are told
// with onReset, because changes in between are lost to them.
import type { GatewayEvents } from '../events.ts';
import type { Cache } from './cache.ts';
import { StoreUnavailableError } from './errors.ts';
import type { KeyLayout } from './keys.ts';
import type { MonitoredStore } from './store/monitored.ts';
import type { Watch } from './store/store.ts';

const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 5000;

export class WatchSync {
  private watch: Watch | undefined;
  /** Bumped for every watch started: deliveries of any other (older) watch are ignored. */
  private generation = 0;
  private connected = false;
  private closed = false;
  private resyncing: Promise<void> | undefined;
  private restarting = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** The store was replaced (restored, another cluster): the next load keeps no label. */
  private replaced = false;

  constructor(
    private readonly store: MonitoredStore,
    private readonly keys: KeyLayout,
    private readonly cache: Cache,
    private readonly events: GatewayEvents,
    /** The cache was reloaded after the watch lost its place. */
    private readonly onReload: () => void,
  ) {}

  /** True when the watch is connected and the cache holds everything up to its revision. */
  get inSync(): boolean {
    return this.connected && !this.resyncing && !this.closed;
  }

  /** Load everything and start watching. Rejects if the store cannot be read. */
  async start(): Promise<void> {
    await this.loadAndWatch();
  }

  private async loadAndWatch(): Promise<void> {
    const { kvs, revision } = await this.store.range(this.keys.root);
    this.cache.reset(kvs, revision, this.replaced);
    this.replaced = false;
    await this.startWatch(revision + 1);
  }

  private async startWatch(fromRevision: number): Promise<void> {
    const generation = ++this.generation;
    const current = () => generation === this.generation;
    const watch = await this.store.watch(this.keys.root, fromRevision, {
      onBatch: (batch) => {
        if (!current()) return;
        this.store.heardFrom();
        this.cache.apply(batch);
      },
      onError: (err) => current() && this.lostPlace(err),
      onDisconnected: (err) => {
        if (!current()) return;
        if (this.connected) this.events.warning('store watch disconnected; it resumes from the last revision when the store is back', err);
        this.connected = false;
        this.store.lost(err);
      },
      onConnected: () => {
        if (!current()) return;
        if (!this.connected && this.watch) this.events.notice('store watch connected again');
        this.connected = true;
        this.store.heardFrom();
      },
    });
    if (this.closed || !current()) {
      await watch.close();
      // Replaced while starting (it died at once and a resync took over): not ours to report.
      if (!this.closed) throw new StoreUnavailableError('the store watch was replaced while it started');
      return;
    }
    this.watch = watch;
    this.connected = true;
  }

  /**
   * The watch looks stuck: a write this gateway made did not come back through it
   * in time. A member that stops answering without closing the connection (frozen,
   * half-open TCP) is only noticed by gRPC keepalive after ~15 s, and meanwhile this
   * gateway would serve an old view as fresh. So: answer as stale, start a new watch
   * from the revision after the last one applied (the client picks a member again),
   * then drop the old one. Nothing is lost or applied twice: the old watch's late
   * deliveries are ignored, and the new one starts right after what the cache holds.
   */
  restart(reason: string): void {
    if (this.closed || this.resyncing || this.restarting || !this.watch) return;
    const old = this.watch;
    const from = this.cache.appliedRevision + 1;
    this.events.warning(`${reason}; restarting the store watch from revision ${from}`);
    this.restarting = true;
    this.connected = false;
    this.startWatch(from).then(
      () => {
        this.restarting = false;
        void old.close().catch(() => {});
      },
      (err: unknown) => {
        // Landed on an unresponsive member again, or the store is down: try again shortly
        // (one attempt at a time, each bounded by the store's call timeout). Reads stay stale.
        this.restarting = false;
        if (this.closed) return;
        this.events.warning('store watch restart failed; retrying', err);
        this.retryTimer = setTimeout(() => this.restart(reason), RETRY_MIN_MS);
      },
    );
  }

  /**
   * The store is no longer the one the cache follows: restored from a snapshot
   * (its revision went back) or another cluster. The watch would wait in silence
   * for revisions the store will reach again with other changes: reload.
   */
  storeReplaced(reason: string): void {
    if (this.closed) return;
    this.replaced = true;
    this.lostPlace(new Error(reason), `${reason}; reloading the cache`);
  }

  private lostPlace(err: Error, message = 'store watch lost its place (compaction or cancellation); reloading the cache'): void {
    if (this.closed) return;
    this.events.warning(message, err);
    this.generation++; // the dead watch (and one still starting) is replaced by the resync
    const dead = this.watch;
    this.watch = undefined;
    this.connected = false;
    void dead?.close().catch(() => {});
    this.resync(RETRY_MIN_MS);
  }

  private resync(delayMs: number): void {
    if (this.closed || this.resyncing) return;
    this.resyncing = this.loadAndWatch().then(
      () => {
        this.resyncing = undefined;
        this.onReload();
      },
      (err: unknown) => {
        this.resyncing = undefined;
        if (this.closed) return;
        this.events.warning(`cache reload failed; retrying in ${delayMs} ms`, err);
        this.retryTimer = setTimeout(() => this.resync(Math.min(delayMs * 2, RETRY_MAX_MS)), delayMs);
      },
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await this.resyncing?.catch(() => {});
    await this.watch?.close().catch(() => {});
    this.watch = undefined;
  }
}
