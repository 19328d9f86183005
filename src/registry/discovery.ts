// Every discovery read, answered from the cache when it may be: catch-up for
// minRevision, blocking waits, consistent reads and the store fallback, and
// freshness (stale, age) while the store is unreachable. Routes only turn a
// read into status, headers and a body. Writes are the Registry's (registry.ts).
import type { GatewayEvents } from '../events.ts';
import { MAX_WAIT_MS, MIN_REVISION_WAIT_MS } from '../rules.ts';
import type { Cache, CachedInstance } from './cache.ts';
import { InstanceNotFoundError, RevisionNotReachedError, StoreUnavailableError } from './errors.ts';
import type { KeyLayout } from './keys.ts';
import { decodeRecord } from './records.ts';
import type { MonitoredStore } from './store/monitored.ts';
import { StoreRevision } from './store-revision.ts';
import type { WatchSync } from './sync.ts';
import { matches as matchesFilter, type ServiceFilter } from '../discovery-query/filter.ts';
import type { Instance } from './types.ts';

/** A record with its JSON, serialized once. */
export type SerializedInstance = Pick<CachedInstance, 'record' | 'json'>;

export interface Freshness {
  /** The store is unreachable or the watch is not in sync: the answer may be behind. */
  stale: boolean;
  /** Whole seconds since the store last answered (0 when fresh). */
  age: number;
}

export interface DiscoveryRead extends Freshness {
  /** The revision the answer is labelled with (its ETag). */
  revision: number;
  /** 'cache': from this gateway's copy; 'store': read from the store (consistent, or the watch lags). */
  source: 'cache' | 'store';
}

export interface ServiceRead extends DiscoveryRead {
  /** The instances matching the filter, sorted by id (computed when first asked for). */
  readonly instances: readonly SerializedInstance[];
}

export interface ServicesRead extends DiscoveryRead {
  /** Names sorted, with instance counts (computed when first asked for). */
  readonly services: { name: string; instances: number }[];
}

export interface InstanceRead extends DiscoveryRead {
  instance: SerializedInstance;
}

export interface AllRead extends DiscoveryRead {
  /** Every instance of the services read, by service name in order. */
  readonly instances: readonly SerializedInstance[];
}

export interface CatchUp {
  /** Answer with a view that includes every change up to this store revision. */
  minRevision?: number;
  /** Freed when the client leaves. */
  signal?: AbortSignal;
}

export interface DiscoverOptions extends CatchUp {
  filter?: ServiceFilter;
  /** Read from the store (linearizable), not from the cache. */
  consistent?: boolean;
  /** Blocking query: hold the answer until the service revision is above this... */
  index?: number;
  /** ...for at most this long (default and bound: MAX_WAIT_MS). */
  waitMs?: number;
  /** Called when the read is about to be held by a blocking query. */
  onHold?: () => void;
}

const FRESH: Freshness = { stale: false, age: 0 };

/**
 * A service read from the cache; its instances are listed only if a body is rendered.
 * A class, not an object literal with a spread and a getter: V8 builds those slowly,
 * and this is made on every discovery read.
 */
class CachedServiceRead implements ServiceRead {
  readonly source = 'cache';
  readonly stale: boolean;
  readonly age: number;

  constructor(
    freshness: Freshness,
    readonly revision: number,
    private readonly cache: Cache,
    private readonly service: string,
    private readonly filter: ServiceFilter | undefined,
  ) {
    this.stale = freshness.stale;
    this.age = freshness.age;
  }

  get instances(): readonly SerializedInstance[] {
    return this.cache.instances(this.service, this.filter);
  }
}

/** The discovery reads: routes call these for every GET of services and instances. */
export class Discovery {
  private readonly storeRevision: StoreRevision;

  constructor(
    private readonly store: MonitoredStore,
    private readonly keys: KeyLayout,
    private readonly cache: Cache,
    private readonly sync: WatchSync,
    private readonly events: GatewayEvents,
  ) {
    this.storeRevision = new StoreRevision(async () => (await store.get(keys.revisionProbe)).revision, MIN_REVISION_WAIT_MS);
  }

  /** GET /services/{name}: a service's instances (optionally filtered). */
  async discover(service: string, opts: DiscoverOptions = {}): Promise<ServiceRead> {
    const { filter } = opts;
    const caught = this.caughtUp(opts);
    const inCache = caught === true || (await caught);
    if (opts.consistent || !inCache) {
      this.events.discoveryRead('miss');
      const { revision, instances } = await this.readService(service, opts.minRevision);
      const list = filter ? instances.filter((x) => matchesFilter(x, filter)) : instances;
      return {
        ...FRESH,
        revision: this.storeLabel(service, instances, revision),
        source: 'store',
        instances: list.map((record) => ({ record, json: JSON.stringify(record) })),
      };
    }
    if (opts.index !== undefined && this.cache.serviceRevision(service) <= opts.index) {
      this.freshness(this.cache.knows(service)); // an unknown service with the store down: 503 now, not after the wait
      opts.onHold?.();
      await this.holdPast(service, opts.index, opts.waitMs ?? MAX_WAIT_MS, opts.signal);
    }
    return this.cached(service, filter);
  }

  /**
   * A service as this gateway's cache holds it, at once: what the DNS interface answers
   * from (no store call and no tick). Throws StoreUnavailableError for a service the
   * gateway has no copy of while the store is unreachable.
   */
  cached(service: string, filter?: ServiceFilter): ServiceRead {
    const freshness = this.freshness(this.cache.knows(service));
    this.events.discoveryRead('hit');
    return new CachedServiceRead(freshness, this.cache.serviceRevision(service), this.cache, service, filter);
  }

  /** The latest store revision this gateway's cache has applied. */
  get appliedRevision(): number {
    return this.cache.appliedRevision;
  }

  /**
   * A blocking query: hold until the service's label passes `index`, or the wait ends
   * (or the client leaves, or the gateway shuts down). A change is not enough: on a
   * replica whose watch lags behind the replica the client got `index` from, the change
   * applied here may still be at or below `index`, and answering it would take the
   * client back.
   */
  private async holdPast(service: string, index: number, waitMs: number, signal?: AbortSignal): Promise<void> {
    // Jitter spreads the answers of many clients that started waiting together. A monotonic
    // clock: a wall-clock step (NTP, a VM's clock sync) must not end the wait early.
    const deadline = performance.now() + waitMs + Math.random() * (waitMs / 16);
    while (this.cache.serviceRevision(service) <= index) {
      const left = deadline - performance.now();
      if (left <= 0 || !(await this.cache.serviceWaiters.wait(service, left, signal))) return;
    }
  }

  /** GET /services: every service with its instance count; `include` narrows (a token's read right). */
  async services(opts: CatchUp & { include?: (service: string) => boolean } = {}): Promise<ServicesRead> {
    const { include } = opts;
    const caught = this.caughtUp(opts);
    if (caught !== true && !(await caught)) {
      this.events.discoveryRead('miss');
      const { revision, services } = await this.readServices(opts.minRevision);
      return { ...FRESH, revision, source: 'store', services: include ? services.filter((s) => include(s.name)) : services };
    }
    const freshness = this.freshness(true);
    this.events.discoveryRead('hit');
    const cache = this.cache;
    return {
      ...freshness,
      revision: cache.appliedRevision,
      source: 'cache',
      get services() {
        return cache.serviceCounts(include);
      },
    };
  }

  /** GET /services/{name}/instances/{id}: one instance, labelled with its own revision. */
  async instance(service: string, id: string, opts: CatchUp = {}): Promise<InstanceRead> {
    const caught = this.caughtUp(opts);
    if (caught !== true && !(await caught)) {
      this.events.discoveryRead('miss');
      const record = (await this.readService(service, opts.minRevision)).instances.find((x) => x.id === id);
      if (!record) throw new InstanceNotFoundError(service, id);
      return { ...FRESH, revision: record.revision, source: 'store', instance: { record, json: JSON.stringify(record) } };
    }
    const freshness = this.freshness(this.cache.knows(service));
    const x = this.cache.instance(service, id);
    this.events.discoveryRead('hit');
    if (!x) throw new InstanceNotFoundError(service, id);
    return { ...freshness, revision: x.record.revision, source: 'cache', instance: x };
  }

  /**
   * The instances of several services at once (all of them by default), from the
   * cache, labelled with the applied revision (GET /sd/prometheus).
   */
  all(opts: { services?: string[]; filter?: ServiceFilter; include?: (service: string) => boolean } = {}): AllRead {
    const freshness = this.freshness(true);
    this.events.discoveryRead('hit');
    const instances: SerializedInstance[] = [];
    for (const service of opts.services ?? this.cache.serviceNames()) {
      if (opts.include && !opts.include(service)) continue;
      instances.push(...this.cache.instances(service, opts.filter));
    }
    return { ...freshness, revision: this.cache.appliedRevision, source: 'cache', instances };
  }

  /** Services and instances this gateway holds (the discovery_services and discovery_instances gauges). */
  counts(): { services: number; instances: number } {
    return { services: this.cache.serviceCount, instances: this.cache.instanceCount };
  }

  /**
   * A cached answer while the store is unreachable is still given, marked stale
   * with its age; a service the gateway has never seen cannot be answered.
   */
  private freshness(known: boolean): Freshness {
    if (this.store.reachable && this.sync.inSync) return FRESH;
    if (!known) throw new StoreUnavailableError('the store is unreachable and this gateway has no copy of that service');
    return { stale: true, age: this.store.secondsSinceContact() };
  }

  /**
   * minRevision: true once the cache has applied it (waiting up to MIN_REVISION_WAIT_MS for the
   * watch); false when it has not but the store has, and the store must be read; 504 when the
   * store has not reached it either, found out without reading the service or the prefix.
   */
  private caughtUp({ minRevision, signal }: CatchUp): boolean | Promise<boolean> {
    // Synchronous when there is nothing to wait for: the common read takes no extra tick.
    if (minRevision === undefined || this.cache.appliedRevision >= minRevision) return true;
    return this.waitFor(minRevision, signal);
  }

  private async waitFor(minRevision: number, signal: AbortSignal | undefined): Promise<boolean> {
    if (await this.cache.revisionWaiters.wait(minRevision, MIN_REVISION_WAIT_MS, signal)) return true;
    if (!(await this.storeRevision.reached(minRevision))) throw new RevisionNotReachedError(minRevision, this.storeRevision.revision);
    return false;
  }

  /**
   * After the wait, the store itself must have reached minRevision: an answer from an
   * older store state would be a view older than the client asked for (API.md "Scale and faults").
   */
  private reached(revision: number, minRevision: number | undefined): void {
    if (minRevision !== undefined && revision < minRevision) throw new RevisionNotReachedError(minRevision, revision);
  }

  /**
   * The label of a service read from the store at revision `read`, by the cache's rule
   * (cache.ts, API.md "Discovery") so that it does not move with unrelated writes and
   * agrees with the cache and other replicas. If this gateway's copy of the service holds
   * exactly the instances read (same ids, same modification revisions), the service did
   * not change between the cache's label and `read` (any put would give a key a new
   * modification revision, any delete would drop one): the cache's label names this
   * very state, also for an empty or unknown service (the revision at which it emptied,
   * or the load that found it empty). Otherwise the cache is behind a change to the
   * service, and the read is labelled as a cold load is: with its own revision. (The
   * newest modification revision among the keys would be wrong after a delete: the
   * state at that revision still held the deleted instance.)
   */
  private storeLabel(service: string, instances: readonly Instance[], read: number): number {
    const label = this.cache.serviceRevision(service);
    const cached = this.cache.instances(service);
    if (label > read || cached.length !== instances.length) return read;
    const revisions = new Map(cached.map((x) => [x.record.id, x.record.revision]));
    for (const x of instances) if (revisions.get(x.id) !== x.revision) return read;
    return label;
  }

  private async readService(service: string, minRevision?: number): Promise<{ revision: number; instances: Instance[] }> {
    const { kvs, revision } = await this.store.range(this.keys.service(service));
    this.reached(revision, minRevision);
    const instances: Instance[] = [];
    for (const kv of kvs) {
      const k = this.keys.parse(kv.key);
      if (k.kind !== 'instance' || k.service !== service) continue;
      const record = decodeRecord(service, k.id, kv.value, kv.modRevision);
      if (record) instances.push(record);
    }
    return { revision, instances };
  }

  private async readServices(minRevision?: number): Promise<{ revision: number; services: { name: string; instances: number }[] }> {
    const { kvs, revision } = await this.store.range(this.keys.root);
    this.reached(revision, minRevision);
    const counts = new Map<string, number>();
    for (const kv of kvs) {
      const k = this.keys.parse(kv.key);
      if (k.kind === 'instance' && decodeRecord(k.service, k.id, kv.value, kv.modRevision))
        counts.set(k.service, (counts.get(k.service) ?? 0) + 1);
    }
    const services = [...counts.keys()].sort().map((name) => ({ name, instances: counts.get(name)! }));
    return { revision, services };
  }
}
