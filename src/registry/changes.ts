// Store events -> Changes (register / update / deregister with a reason). Used by
// the cache for the live watch and by the hub for replays from the store, so
// that every replica describes a revision the same way, live or replayed.
import type { KeyLayout } from './keys.ts';
import { decodeRecord } from './records.ts';
import type { WatchEvent } from './store/store.ts';
import type { Change, Instance } from './types.ts';

/** The last record known of an instance before `ev` removed it. */
export type LastKnown = (service: string, id: string, ev: WatchEvent) => Instance | undefined;

/** The record a delete's previous value held (what a replay from the store knows). */
export const fromPrevValue: LastKnown = (service, id, ev) =>
  ev.prevValue === undefined ? undefined : decodeRecord(service, id, ev.prevValue, ev.prevModRevision ?? ev.modRevision);

/**
 * The changes of one store revision (one transaction): `events` all carry
 * `revision`. A delete is "deregistered" when the gateway wrote its
 * bookkeeping key in the same transaction, otherwise "expired" (the lease ran out).
 */
export function describeRevision(keys: KeyLayout, events: WatchEvent[], revision: number, lastKnown: LastKnown): Change[] {
  const deregistered = deregisteredBy(keys, events);
  const out: Change[] = [];
  for (const ev of events) {
    const k = keys.parse(ev.key);
    if (k.kind !== 'instance') continue;
    const { service, id } = k;
    const record = ev.type === 'put' ? decodeRecord(service, id, ev.value, revision) : undefined;
    if (record) {
      out.push({
        type: ev.createRevision === ev.modRevision ? 'register' : 'update',
        service,
        id,
        revision,
        instance: record,
        lease: ev.lease,
      });
      continue;
    }
    // A delete, or a put of a value the gateway cannot read: the instance is gone either way.
    const last = lastKnown(service, id, ev);
    if (!last) continue;
    const reason = ev.type === 'put' || deregistered.has(`${service}/${id}`) ? 'deregistered' : 'expired';
    out.push({ type: 'deregister', service, id, revision, instance: last, reason });
  }
  return out;
}

/** The value of the bookkeeping key written with deletes made through the API. */
export function deregisteredMarker(instances: { service: string; id: string }[]): string {
  return JSON.stringify({ instances: instances.map((x) => `${x.service}/${x.id}`), at: new Date().toISOString() });
}

/** "service/id" of every instance the gateway deleted through the API in these events. */
function deregisteredBy(keys: KeyLayout, events: WatchEvent[]): Set<string> {
  const out = new Set<string>();
  for (const ev of events) {
    if (ev.type !== 'put') continue;
    const k = keys.parse(ev.key);
    if (k.kind !== 'bookkeeping' || !keys.isDeregisteredMarker(k.rest)) continue;
    try {
      const v = JSON.parse(ev.value) as { instances?: unknown };
      if (Array.isArray(v.instances)) for (const x of v.instances) if (typeof x === 'string') out.add(x);
    } catch {}
  }
  return out;
}

/** Split a batch of events into runs of one revision each, in order. */
export function byRevision(events: WatchEvent[]): [number, WatchEvent[]][] {
  const out: [number, WatchEvent[]][] = [];
  for (const ev of events) {
    const last = out[out.length - 1];
    if (last && last[0] === ev.modRevision) last[1].push(ev);
    else out.push([ev.modRevision, [ev]]);
  }
  return out;
}
