// Snapshots (src/streams/snapshots.ts) on a cache filled by hand: no store, no
// sockets. A service's part is rendered once per version of its instance list
// and shared by every snapshot that shows it, whatever the scope or revision.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Cache } from '../src/registry/cache.ts';
import { KeyLayout } from '../src/registry/keys.ts';
import { encodeRecord, newRecord } from '../src/registry/records.ts';
import type { KeyValue } from '../src/registry/store/store.ts';
import { StreamMemory, type Piece } from '../src/streams/memory.ts';
import { Snapshots } from '../src/streams/snapshots.ts';
import { Subscriber, type Scope } from '../src/streams/subscriber.ts';

const keys = new KeyLayout('/snap');
const kv = (service: string, id: string, revision: number, meta = ''): KeyValue => ({
  key: keys.instance(service, id),
  value: encodeRecord(newRecord(service, id, { address: '10.0.0.1', port: 80, metadata: meta ? { m: meta } : undefined }, 30)),
  modRevision: revision,
  createRevision: revision,
  lease: '0',
});
const subscriber = (scope: Scope) =>
  new Subscriber(
    { write: () => true, onDrain() {}, onClose() {}, close() {} },
    scope,
    new StreamMemory(() => {}),
    1 << 20,
    () => {},
    () => {},
  );
const text = (pieces: Piece[]) => Buffer.concat(pieces.map((p) => p.data)).toString();

describe('snapshots', () => {
  it('share the parts of the services they have in common, across scopes', async () => {
    const cache = new Cache(keys);
    const big = 'x'.repeat(70_000);
    cache.reset([kv('big', 'b1', 5, big), kv('z1', 'a', 6), kv('z2', 'a', 7)], 7);
    const snapshots = new Snapshots(cache);
    const one = await snapshots.for(subscriber({ services: ['big', 'z1'] }), false).pieces;
    const two = await snapshots.for(subscriber({ services: ['big', 'z2'] }), true).pieces;
    const blocksOf = (pieces: Piece[]) => new Set(pieces.map((p) => p.block));
    const shared = [...blocksOf(one)].filter((b) => blocksOf(two).has(b));
    const sharedBytes = shared.reduce((n, b) => n + b.data.length, 0);
    assert.ok(sharedBytes > 70_000, `the big service is one copy for both (${sharedBytes} bytes shared)`);
    assert.ok(
      shared.every((b) => !b.own),
      'shared parts are not counted as private',
    );
    const first = JSON.parse(text(one).split('data: ')[1]!);
    const second = JSON.parse(text(two).split('data: ')[1]!);
    assert.deepEqual(Object.keys(first.services), ['big', 'z1']);
    assert.deepEqual(Object.keys(second.services), ['big', 'z2']);
    assert.equal(second.reset, true);
    assert.equal(first.revision, 7);
  });

  it('render a service again only once its list changed', async () => {
    const cache = new Cache(keys);
    cache.reset([kv('a', '1', 3), kv('b', '1', 3)], 3);
    const snapshots = new Snapshots(cache);
    const blocks = async (scope: Scope) => (await snapshots.for(subscriber(scope), false).pieces).map((p) => p.block);
    const before = await blocks({ services: ['a'] });
    cache.apply({
      revision: 4,
      events: [{ type: 'put', key: keys.instance('b', '2'), value: kv('b', '2', 4).value, modRevision: 4, createRevision: 4, lease: '0' }],
    });
    const after = await blocks({ services: ['a'] });
    assert.equal(after[1], before[1], "a's part outlives a change elsewhere");
    const all = await snapshots.for(subscriber({}), false).pieces;
    const services = JSON.parse(text(all).split('data: ')[1]!).services as Record<string, { id: string }[]>;
    assert.deepEqual(
      services.b!.map((x) => x.id),
      ['1', '2'],
      "b's new list is rendered",
    );
  });
});
