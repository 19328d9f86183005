// The gateway's view of the store: every instance under the prefix, kept exact
// by the one watch (sync.ts), so that no discovery read costs a store round trip.
//
// Revision contract (API.md "Discovery"): a service's label is the revision of
// its last change this gateway applied, or, when it has not changed since the
// last full load, the revision of that load. Either way the view labelled R is
// the store's state at R. `appliedRevision` is the store revision up to which
// every change under the prefix has been applied (the watch's header revision).
//
// A service whose last instance left is forgotten (per-job or per-branch names
// must not grow memory forever). Its label must not go back, so a name the
// cache does not hold is labelled with the highest revision at which any
// service was forgotten, or the last full load, whichever is higher: one
// number, whatever the count of names.
import type { KeyLayout } from './keys.ts';
import { decodeRecord } from './records.ts';
import type { KeyValue, WatchBatch } from './store/store.ts';
import { byRevision, describeRevision, type LastKnown } from './changes.ts';
import { matches, type ServiceFilter } from '../discovery-query/filter.ts';
import type { Change, Instance } from './types.ts';
import { RevisionWaiters, ServiceWaiters } from './waiters.ts';

export interface CachedInstance {
  record: Instance;
  /** The record serialized once, reused by every answer that shows it. */
  json: string;
  lease: string;
}

class ServiceView {
  readonly byId = new Map<string, CachedInstance>();
  private sortedList: CachedInstance[] | undefined;

  constructor(public revision: number) {}

  set(x: CachedInstance): void {
    this.byId.set(x.record.id, x);
    this.sortedList = undefined;
  }

  delete(id: string): void {
    this.byId.delete(id);
    this.sortedList = undefined;
  }

  /** Instances sorted by id in code-unit order, as etcd sorts keys. */
  sorted(): CachedInstance[] {
    this.sortedList ??= [...this.byId.values()].sort((a, b) => (a.record.id < b.record.id ? -1 : a.record.id > b.record.id ? 1 : 0));
    return this.sortedList;
  }
}

type ChangeListener = (changes: Change[], revision: number) => void;

export class Cache {
  private services = new Map<string, ServiceView>();
  /** Revision of the last full load: the label of a service with no change seen since. */
  private baseRevision = 0;
  /** The highest revision at which a service emptied and was forgotten. */
  private forgottenAt = 0;
  private applied = 0;
  private lastBeforeRewind = 0;
  private count = 0;
  private readonly listeners: ChangeListener[] = [];
  readonly revisionWaiters = new RevisionWaiters();
  readonly serviceWaiters = new ServiceWaiters();

  constructor(private readonly keys: KeyLayout) {}

  /**
   * The highest revision applied before the store's revisions went back (0: never). An
   * id up to it may name a change of the old history: the restored one reuses those numbers.
   */
  get rewoundFrom(): number {
    return this.lastBeforeRewind;
  }

  get appliedRevision(): number {
    return this.applied;
  }

  get instanceCount(): number {
    return this.count;
  }

  get serviceCount(): number {
    return this.services.size;
  }

  onChanges(listener: ChangeListener): void {
    this.listeners.push(listener);
  }

  /** Whether the gateway holds instances of this service. */
  knows(service: string): boolean {
    return this.services.has(service);
  }

  /** Its label; for a service without instances, a revision at or above the one at which it emptied. */
  serviceRevision(service: string): number {
    return this.services.get(service)?.revision ?? Math.max(this.baseRevision, this.forgottenAt);
  }

  instance(service: string, id: string): CachedInstance | undefined {
    return this.services.get(service)?.byId.get(id);
  }

  instances(service: string, filter?: ServiceFilter): CachedInstance[] {
    const all = this.services.get(service)?.sorted() ?? [];
    return filter ? all.filter((x) => matches(x.record, filter)) : all;
  }

  /** Services that have instances, names sorted, with their counts; `include` narrows. */
  serviceCounts(include?: (service: string) => boolean): { name: string; instances: number }[] {
    const names = include ? this.serviceNames().filter(include) : this.serviceNames();
    return names.map((name) => ({ name, instances: this.services.get(name)!.byId.size }));
  }

  /** Names of the services that have instances, sorted. */
  serviceNames(): string[] {
    return [...this.services.keys()].sort();
  }

  /**
   * Replace everything with a full read at `revision` (start-up, or a resync
   * after the watch lost its place). Services whose instances differ are
   * labelled `revision`; the others keep their label, which still holds.
   * A read below what was applied means the store went back (restored from a
   * snapshot), and `replaced` says the store is another one: every label then
   * starts again from `revision`, none is kept from the lost future.
   */
  reset(kvs: KeyValue[], revision: number, replaced = false): void {
    const rewound = replaced || revision < this.applied;
    if (rewound) this.lastBeforeRewind = Math.max(this.lastBeforeRewind, this.applied);
    const fresh = new Map<string, ServiceView>();
    let count = 0;
    for (const kv of kvs) {
      const k = this.keys.parse(kv.key);
      if (k.kind !== 'instance') continue;
      const record = decodeRecord(k.service, k.id, kv.value, kv.modRevision);
      if (!record) continue;
      let view = fresh.get(k.service);
      if (!view) fresh.set(k.service, (view = new ServiceView(revision)));
      view.set({ record, json: JSON.stringify(record), lease: kv.lease });
      count++;
    }
    const changed = new Set<string>();
    for (const [name, view] of fresh) {
      const old = this.services.get(name);
      if (old && !rewound && sameInstances(old, view)) view.revision = old.revision;
      else changed.add(name);
    }
    // Services gone from the store are forgotten: their label is now at least `revision`.
    for (const name of this.services.keys()) if (!fresh.has(name)) changed.add(name);
    this.services = fresh;
    this.count = count;
    this.baseRevision = revision;
    if (rewound) this.forgottenAt = 0;
    this.applied = rewound ? revision : Math.max(this.applied, revision);
    this.revisionWaiters.release(this.applied);
    for (const name of changed) this.serviceWaiters.notify(name);
  }

  /** Apply one watch batch; returns the changes it made, in order, and tells the listeners. */
  apply(batch: WatchBatch): Change[] {
    const changes: Change[] = [];
    // Changes of one revision (one transaction) are described together, so that a
    // delete can be told apart from an expiry by the bookkeeping key written with it.
    for (const [rev, events] of byRevision(batch.events)) {
      for (const c of describeRevision(this.keys, events, rev, this.lastKnown)) {
        this.applyChange(c);
        changes.push(c);
      }
    }
    if (batch.revision > this.applied) this.applied = batch.revision;
    else if (changes.length) this.applied = Math.max(this.applied, changes[changes.length - 1]!.revision);
    this.revisionWaiters.release(this.applied);
    const touched = new Set(changes.map((c) => c.service));
    for (const name of touched) this.serviceWaiters.notify(name);
    for (const l of this.listeners) {
      // A listener's failure must not stop the others, nor reach the store client's event emitter.
      try {
        l(changes, this.applied);
      } catch (err) {
        process.emitWarning(`change listener failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return changes;
  }

  private readonly lastKnown: LastKnown = (service, id) => this.services.get(service)?.byId.get(id)?.record;

  private applyChange(c: Change): void {
    let view = this.services.get(c.service);
    if (!view) this.services.set(c.service, (view = new ServiceView(c.revision)));
    view.revision = c.revision;
    const had = view.byId.has(c.id);
    if (c.type === 'deregister') {
      view.delete(c.id);
      if (had) this.count--;
      if (view.byId.size === 0) {
        this.services.delete(c.service);
        this.forgottenAt = Math.max(this.forgottenAt, c.revision);
      }
    } else {
      const record = c.instance!;
      view.set({ record, json: JSON.stringify(record), lease: c.lease ?? '0' });
      if (!had) this.count++;
    }
  }

  /** The instances of the services `include` accepts, by name (named ones shown even when empty), names sorted. */
  snapshot(include: (service: string) => boolean, named?: string[]): Map<string, readonly CachedInstance[]> {
    const out = new Map<string, readonly CachedInstance[]>();
    const names = named ? [...named].sort() : this.serviceNames();
    for (const name of names) if (include(name)) out.set(name, this.instances(name));
    return out;
  }
}

function sameInstances(a: ServiceView, b: ServiceView): boolean {
  if (a.byId.size !== b.byId.size) return false;
  for (const [id, x] of a.byId) if (b.byId.get(id)?.record.revision !== x.record.revision) return false;
  return true;
}
