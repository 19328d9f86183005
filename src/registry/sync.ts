// The one watch that keeps the cache exact.
//
// Contract: the watch starts at the revision after the full read it follows, so
// no change falls between the two. A broken connection is resumed by the store
// client from the last revision it delivered (nothing lost, nothing twice). A
// watch that cannot resume (its revision was compacted, or the store cancelled
// it) is replaced by a fresh full read plus a new watch, and listeners are told
// with onReset, because changes in between are lost to them.
import type { Cache } from './cache.ts';
import type { KeyLayout } from './keys.ts';
import type { MonitoredStore } from './store/monitored.ts';
import type { Watch } from './store/store.ts';

export interface SyncObserver {
  /** The cache was reloaded after the watch lost its place. */
  reset(): void;
  /** A watch problem worth a log line (once per state change). */
  warn(message: string, err?: unknown): void;
  info(message: string): void;
}

const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 5000;

export class WatchSync {
  private watch: Watch | undefined;
  private connected = false;
  private closed = false;
  private resyncing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: MonitoredStore,
    private readonly keys: KeyLayout,
    private readonly cache: Cache,
    private readonly observer: SyncObserver,
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
    this.cache.reset(kvs, revision);
    const watch = await this.store.watch(this.keys.root, revision + 1, {
      onBatch: (batch) => {
        if (this.watch !== watch && this.watch !== undefined) return;
        this.store.heardFrom();
        this.cache.apply(batch);
      },
      onError: (err) => this.lostPlace(watch, err),
      onDisconnected: (err) => {
        if (this.connected) this.observer.warn('store watch disconnected; it resumes from the last revision when the store is back', err);
        this.connected = false;
        this.store.lost(err);
      },
      onConnected: () => {
        if (!this.connected && this.watch) this.observer.info('store watch connected again');
        this.connected = true;
        this.store.heardFrom();
      },
    });
    if (this.closed) {
      await watch.close();
      return;
    }
    this.watch = watch;
    this.connected = true;
  }

  private lostPlace(watch: Watch, err: Error): void {
    if (this.closed || this.watch !== watch) return;
    this.observer.warn('store watch lost its place (compaction or cancellation); reloading the cache', err);
    this.watch = undefined;
    this.connected = false;
    void watch.close().catch(() => {});
    this.resync(RETRY_MIN_MS);
  }

  private resync(delayMs: number): void {
    if (this.closed || this.resyncing) return;
    this.resyncing = this.loadAndWatch().then(
      () => {
        this.resyncing = undefined;
        this.observer.reset();
      },
      (err: unknown) => {
        this.resyncing = undefined;
        if (this.closed) return;
        this.observer.warn(`cache reload failed; retrying in ${delayMs} ms`, err);
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
