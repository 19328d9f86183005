// The revision labels of the cache (API.md "Discovery", "Bounded memory"), on the
// cache alone: store reads and watch batches are given to it as values, so these
// rules are checked in milliseconds, without etcd or sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Cache } from '../src/registry/cache.ts';
import { KeyLayout } from '../src/registry/keys.ts';
import { encodeRecord, newRecord } from '../src/registry/records.ts';
import type { KeyValue, WatchEvent } from '../src/registry/store/store.ts';

const keys = new KeyLayout('/services');

function value(service: string, id: string, port = 80): string {
  return encodeRecord(newRecord(service, id, { address: '10.0.0.1', port }, 30));
}

/** A key as a full read returns it, last written at `revision`. */
function stored(service: string, id: string, revision: number): KeyValue {
  return { key: keys.instance(service, id), value: value(service, id), modRevision: revision, createRevision: revision, lease: '0' };
}

function put(service: string, id: string, revision: number, createRevision = revision, port = 80): WatchEvent {
  return {
    type: 'put',
    key: keys.instance(service, id),
    value: value(service, id, port),
    modRevision: revision,
    createRevision,
    lease: '0',
  };
}

function del(service: string, id: string, revision: number): WatchEvent {
  return { type: 'delete', key: keys.instance(service, id), value: '', modRevision: revision, createRevision: 0, lease: '0' };
}

/** A cache loaded cold at revision 10: `a` (a-1, a-2) and `b` (b-1), written before. */
function loaded(): Cache {
  const cache = new Cache(keys);
  cache.reset([stored('a', 'a-1', 3), stored('a', 'a-2', 4), stored('b', 'b-1', 5)], 10);
  return cache;
}

describe('cache revision labels', () => {
  it('a service loaded cold is labelled with the revision of the load, not of its last write', () => {
    const cache = loaded();
    assert.equal(cache.serviceRevision('a'), 10);
    assert.equal(cache.serviceRevision('b'), 10);
    assert.equal(cache.serviceRevision('never-seen'), 10);
    assert.equal(cache.appliedRevision, 10);
  });

  it('a change labels its service with the change revision; other services keep theirs', () => {
    const cache = loaded();
    cache.apply({ events: [put('a', 'a-3', 12)], revision: 12 });
    assert.equal(cache.serviceRevision('a'), 12);
    assert.equal(cache.serviceRevision('b'), 10);
    cache.apply({ events: [put('a', 'a-1', 13, 3, 81)], revision: 13 });
    assert.equal(cache.serviceRevision('a'), 13);
    // A watch header ahead of the last change moves what is applied, not the labels.
    cache.apply({ events: [], revision: 20 });
    assert.equal(cache.appliedRevision, 20);
    assert.equal(cache.serviceRevision('a'), 13);
  });

  it('a reload keeps the label of a service whose instances did not change, and relabels one that did', () => {
    const cache = loaded();
    cache.apply({ events: [put('a', 'a-3', 12)], revision: 12 });
    cache.reset([stored('a', 'a-1', 3), stored('a', 'a-2', 4), stored('a', 'a-3', 12), stored('b', 'b-1', 15)], 16);
    assert.equal(cache.serviceRevision('a'), 12);
    assert.equal(cache.serviceRevision('b'), 16);
  });

  it('a service emptied is forgotten, and its label never goes back', () => {
    const cache = loaded();
    cache.apply({ events: [del('a', 'a-1', 11)], revision: 11 });
    assert.equal(cache.knows('a'), true);
    cache.apply({ events: [del('a', 'a-2', 14)], revision: 14 });
    assert.equal(cache.knows('a'), false, 'nothing is held for it');
    assert.deepEqual(cache.serviceNames(), ['b']);
    assert.equal(cache.serviceRevision('a'), 14);
    // Later changes elsewhere do not lower it; a later load raises it.
    cache.apply({ events: [put('b', 'b-2', 15)], revision: 15 });
    assert.equal(cache.serviceRevision('a'), 14);
    cache.reset([stored('b', 'b-1', 5), stored('b', 'b-2', 15)], 17);
    assert.equal(cache.serviceRevision('a'), 17);
    // Registered again: labelled with that change.
    cache.apply({ events: [put('a', 'a-9', 18)], revision: 18 });
    assert.equal(cache.serviceRevision('a'), 18);
  });

  it('a service gone at a reload is forgotten with the reload revision as its label', () => {
    const cache = loaded();
    cache.reset([stored('b', 'b-1', 5)], 12);
    assert.equal(cache.knows('a'), false);
    assert.equal(cache.serviceRevision('a'), 12);
  });

  it('after a store restored to lower revisions, every label restarts from the restored load', () => {
    const cache = loaded();
    cache.apply({ events: [put('a', 'a-3', 30)], revision: 30 });
    cache.apply({ events: [del('b', 'b-1', 40)], revision: 40 });
    assert.equal(cache.serviceRevision('b'), 40);
    // The restored store holds what it held at revision 8 (the same instances as the first load).
    cache.reset([stored('a', 'a-1', 3), stored('a', 'a-2', 4), stored('b', 'b-1', 5)], 8);
    assert.equal(cache.appliedRevision, 8);
    assert.equal(cache.serviceRevision('a'), 8, 'no label is kept from the lost future');
    assert.equal(cache.serviceRevision('b'), 8);
    assert.equal(cache.serviceRevision('never-seen'), 8, 'nor the revision at which a service was forgotten');
  });

  it('a store replaced by another one at a higher revision relabels even unchanged services', () => {
    const cache = loaded();
    cache.apply({ events: [put('a', 'a-3', 12)], revision: 12 });
    cache.reset([stored('a', 'a-1', 3), stored('a', 'a-2', 4), stored('a', 'a-3', 12), stored('b', 'b-1', 5)], 50, true);
    assert.equal(cache.serviceRevision('a'), 50);
    assert.equal(cache.serviceRevision('b'), 50);
  });
});
