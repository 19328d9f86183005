// The discovery filters and the weighted pick, without a gateway: one meaning for
// the gateway's routes and the client's watched view (src/discovery-query).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pickWeighted as clientPick, matches as clientMatches } from '../src/client/filters.ts';
import type { Instance } from '../src/client/types.ts';
import { filterKey, matches, pickWeighted, type ServiceFilter } from '../src/discovery-query/filter.ts';
import { filterOf } from '../src/discovery-query/query-string.ts';

function instance(id: string, fields: Partial<Instance> = {}): Instance {
  return {
    service: 'svc',
    id,
    address: '10.0.0.1',
    port: 80,
    tags: [],
    metadata: {},
    weight: 100,
    status: 'up',
    ttl: 30,
    registeredAt: new Date(0).toISOString(),
    revision: 1,
    ...fields,
  };
}

/** A deterministic random: the i-th of n evenly spread draws. */
function draws(n: number): () => number {
  let i = 0;
  return () => (i++ % n) / n + 1 / (2 * n);
}

describe('discovery query', () => {
  it('parses tag, status and meta.KEY from a query string; nothing given is no filter', () => {
    assert.equal(filterOf({}), undefined);
    assert.deepEqual(filterOf({ tag: ['a', 'b'], status: 'draining', 'meta.zone': ['eu', 'us'], 'meta.rack': '1' }), {
      tags: ['a', 'b'],
      status: 'draining',
      meta: [
        ['zone', 'eu'],
        ['zone', 'us'],
        ['rack', '1'],
      ],
    });
  });

  it('one cache key per distinct filter, the same one for the same filter written differently', () => {
    const key = (q: Record<string, unknown>) => filterKey(filterOf(q) ?? {});
    assert.equal(key({ tag: ['a', 'b'] }), key({ tag: ['b', 'a', 'b'] }));
    assert.equal(key({ tag: ['a"'] }), key({ tag: ['a"', 'a"'] }));
    assert.equal(key({ 'meta.x': '1', 'meta.y': '2' }), key({ 'meta.y': '2', 'meta.x': '1' }));
    const distinct = [
      { tag: ['a'] },
      { tag: ['a', 'b'] },
      { status: 'up' },
      { status: 'down' },
      { 'meta.a': 'b' },
      { 'meta.a': 'c' },
      { 'meta.a=b': '' },
      { tag: ['a'], status: 'up' },
    ].map(key);
    assert.equal(new Set(distinct).size, distinct.length, 'filters that select differently never share a cached body');
  });

  it('metadata keys that are words of the language match only as data', () => {
    const withWords = instance('w', { metadata: Object.assign(Object.create(null), { ['__proto__']: 'p', constructor: 'c' }) });
    const plain = instance('p');
    for (const [key, value] of [
      ['__proto__', 'p'],
      ['constructor', 'c'],
    ] as const) {
      const f: ServiceFilter = { meta: [[key, value]] };
      assert.ok(matches(withWords, f), key);
      assert.ok(!matches(plain, f), `${key}: an instance without it does not match`);
    }
    assert.ok(!matches(plain, { meta: [['toString', String(Object.prototype.toString)]] }));
  });

  it('the pick takes only instances that are up with weight, in proportion to weight', () => {
    const list = [
      instance('a', { weight: 100 }),
      instance('b', { weight: 300 }),
      instance('zero', { weight: 0 }),
      instance('down', { status: 'down', weight: 10_000 }),
    ];
    const counts = new Map<string, number>();
    const random = draws(400);
    for (let i = 0; i < 400; i++) {
      const x = pickWeighted(list, (y) => y, undefined, random)!;
      counts.set(x.id, (counts.get(x.id) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(counts), { a: 100, b: 300 });
    assert.equal(
      pickWeighted([instance('d', { status: 'draining' })], (y) => y),
      undefined,
    );
  });

  it('the client matches and picks as the gateway does', () => {
    const list = [
      instance('a', { tags: ['http'], metadata: { zone: 'eu' } }),
      instance('b', { tags: ['http', 'v2'], metadata: { zone: 'us' }, weight: 50 }),
      instance('c', { tags: ['grpc'], status: 'draining' }),
    ];
    const filters = [
      {},
      { tags: ['http'] },
      { status: 'draining' as const },
      { metadata: { zone: 'us' } },
      { tags: ['v2'], metadata: { zone: 'eu' } },
    ];
    for (const f of filters) {
      const gateway = filterOf({
        tag: f.tags,
        status: f.status,
        ...Object.fromEntries(Object.entries(f.metadata ?? {}).map(([k, v]) => [`meta.${k}`, v])),
      });
      for (const x of list) assert.equal(clientMatches(x, f), !gateway || matches(x, gateway), `${x.id} ${JSON.stringify(f)}`);
      for (const r of [0, 0.3, 0.7, 0.99]) {
        assert.equal(
          clientPick(list, f, () => r)?.id,
          pickWeighted(
            list,
            (y) => y,
            gateway,
            () => r,
          )?.id,
          `pick ${JSON.stringify(f)} at ${r}`,
        );
      }
    }
  });
});
