// The composition root of the domain: the store (monitored), the key layout,
// the cache and its watch, the registry, the bookkeeping lease and the health
// view, built and wired here only. Wiring is one way: the watch feeds the cache;
// the cache tells onChanges listeners (change streams among them); a watch
// reload tells onReset listeners; the registry restarts a watch that lags
// behind its writes.
import { readSettingFile, type Config } from '../config.ts';
import type { GatewayEvents } from '../events.ts';
import { BookkeepingLease } from './bookkeeping.ts';
import { Cache } from './cache.ts';
import { StoreAccessError } from './errors.ts';
import { Health } from './health.ts';
import { KeyLayout } from './keys.ts';
import { Discovery } from './discovery.ts';
import { Registry } from './registry.ts';
import { RestoreCheck } from './restore-check.ts';
import type { EtcdTls } from './store/etcd-connection.ts';
import { EtcdStore } from './store/etcd.ts';
import { MemoryStore } from './store/memory.ts';
import { MonitoredStore } from './store/monitored.ts';
import type { Store } from './store/store.ts';
import { WatchSync } from './sync.ts';
import type { Change } from './types.ts';

/** How long start-up keeps trying to read the store before giving up. */
const STARTUP_TIMEOUT_MS = 20_000;

export interface RegistryOptions {
  /** Key prefix, without a trailing slash. */
  prefix: string;
  defaultTtlSeconds: number;
  /** One deadline for each registration, heartbeat or deregistration, whatever it retries inside. */
  writeDeadlineMs: number;
  /** Interval of the background store probe. */
  probeIntervalMs: number;
}

/** The store the config names; a certificate file that cannot be read stops the start naming its setting. */
export function createStore(config: Config): Store {
  if (config.store.kind === 'memory') return new MemoryStore();
  const { kind: _etcd, caFile, certFile, keyFile, ...options } = config.store;
  const tls =
    caFile || certFile || keyFile
      ? {
          ca: caFile ? readSettingFile('ETCD_CA_FILE', caFile) : undefined,
          cert: certFile ? readSettingFile('ETCD_CERT_FILE', certFile) : undefined,
          key: keyFile ? readSettingFile('ETCD_KEY_FILE', keyFile) : undefined,
        }
      : undefined;
  return new EtcdStore({ ...options, tls });
}

export class RegistryRoot {
  readonly store: MonitoredStore;
  readonly keys: KeyLayout;
  readonly cache: Cache;
  readonly sync: WatchSync;
  readonly registry: Registry;
  /** The lease of bookkeeping keys: deregistration markers and replay fences. */
  readonly bookkeeping: BookkeepingLease;
  readonly discovery: Discovery;
  readonly health: Health;
  private readonly resetListeners: (() => void)[] = [];

  constructor(
    /** The store as given, unwrapped: only it can move to a new client (reconnectStore). */
    private readonly backing: Store,
    private readonly opts: RegistryOptions,
    private readonly events: GatewayEvents,
  ) {
    this.store = new MonitoredStore(backing, events);
    const keys = (this.keys = new KeyLayout(opts.prefix));
    this.cache = new Cache(keys);
    this.sync = new WatchSync(this.store, keys, this.cache, events, () => this.reloaded());
    this.bookkeeping = new BookkeepingLease(this.store);
    this.registry = new Registry(
      this.store,
      keys,
      this.cache,
      this.sync,
      this.bookkeeping,
      opts.defaultTtlSeconds,
      opts.writeDeadlineMs,
      events,
    );
    this.discovery = new Discovery(this.store, keys, this.cache, this.sync, events);
    this.cache.onChanges((changes) => events.changesApplied(changes));
    const restore = new RestoreCheck(this.store, keys, this.cache, this.sync);
    this.health = new Health(this.store, this.sync, this.cache, (status) => restore.check(status));
  }

  /** Every batch of changes the watch applied, after the cache holds them. */
  onChanges(listener: (changes: Change[]) => void): void {
    this.cache.onChanges(listener);
  }

  /** The cache was reloaded after the watch lost its place: changes in between are lost to listeners. */
  onReset(listener: () => void): void {
    this.resetListeners.push(listener);
  }

  /**
   * Load the store into the cache and start the watch, retrying while the store is not
   * there yet. A store that refuses the gateway (credentials, certificates) fails at once.
   */
  async start(): Promise<void> {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    for (let delay = 250; ; delay = Math.min(delay * 2, 2000)) {
      try {
        await this.sync.start();
        break;
      } catch (err) {
        if (err instanceof StoreAccessError || Date.now() + delay > deadline) throw err;
        this.events.warning(`store not readable yet; retrying in ${delay} ms`, err);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    this.health.start(this.opts.probeIntervalMs);
  }

  /**
   * Move the store onto a new client that presents `tls` (a renewed etcd client
   * certificate). Rejects, keeping the current client, when the new one does not
   * answer or the store has no client to move (the memory store).
   */
  async reconnectStore(tls: EtcdTls): Promise<void> {
    if (!(this.backing instanceof EtcdStore)) throw new Error(`a ${this.backing.kind} store has no client certificate`);
    await this.backing.reconnect(tls);
  }

  /**
   * Shutdown, first step: answer every blocking query now (change streams are ended by their own hub).
   * Writes and minRevision reads waiting for the watch are left to finish (their
   * waits are bounded and the drain covers them, config.ts): released early, a
   * write would answer before this gateway shows it and look like a lagging watch.
   */
  release(): void {
    this.registry.drain();
    this.cache.serviceWaiters.releaseAll();
  }

  async close(): Promise<void> {
    this.health.close();
    this.registry.close();
    await this.sync.close();
    await this.store.close();
  }

  private reloaded(): void {
    this.events.watchReloaded();
    for (const listener of this.resetListeners) listener();
  }
}
