// The rendered discovery answers (src/routes/views.ts): a body is reused while its
// service's revision is the same, so a read at an unchanged revision answers the kept
// body, and one that was pushed out is rendered again from the read. With a small budget
// (two filtered answers, seven others), queries that would each keep a body of their own (the
// same filter written another way, unknown names, empty answers) would push out the hot one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filterOf } from '../src/discovery-query/query-string.ts';
import type { SerializedInstance, ServiceRead } from '../src/registry/discovery.ts';
import type { Instance } from '../src/registry/types.ts';
import { FILTERED_SHARE, Views } from '../src/routes/views.ts';

const REVISION = 7;

function instance(id: string): SerializedInstance {
  const record: Instance = {
    service: 'flt',
    id,
    address: '10.0.0.1',
    port: 80,
    tags: ['a', 'b'],
    metadata: { zone: 'x', rack: '1' },
    weight: 100,
    status: 'up',
    ttl: 0,
    registeredAt: new Date(0).toISOString(),
    revision: REVISION,
  };
  return { record, json: JSON.stringify(record) };
}

const read = (...ids: string[]): ServiceRead => ({
  source: 'cache',
  stale: false,
  age: 0,
  revision: REVISION,
  instances: ids.map(instance),
});
const shown = (body: string) => (JSON.parse(body) as { instances: { id: string }[] }).instances.map((x) => x.id);
/** Room for two and a half answers of one instance among the filtered ones (their share of the budget), more among the others. */
const views = () => new Views((2.5 * (instance('f-1').json.length + 60)) / FILTERED_SHARE);
const tagged = (...tags: string[]) => filterOf({ tag: tags });

describe('rendered answers', () => {
  it('a filter written in another order or with repeats reuses the one body', () => {
    const v = views();
    const filter = (q: Record<string, unknown>) => filterOf(q);
    assert.deepEqual(shown(v.service('flt', read('f-1'), filter({ tag: ['a', 'b'], 'meta.zone': 'x' }))), ['f-1']);
    for (const q of [{ tag: ['b', 'a'] }, { tag: ['a', 'b', 'a'] }, { tag: ['b', 'b', 'a'] }])
      assert.deepEqual(shown(v.service('flt', read('f-2'), filter({ ...q, 'meta.zone': 'x' }))), ['f-1'], JSON.stringify(q));
  });

  it('unknown names and empty answers do not push out a kept answer', () => {
    const v = views();
    assert.deepEqual(shown(v.service('flt', read('f-1'))), ['f-1']);
    assert.deepEqual(shown(v.service('flt', read('f-1'), tagged('a'))), ['f-1']);
    for (let i = 0; i < 100; i++) {
      assert.deepEqual(shown(v.service(`nobody-${i}`, read())), []);
      assert.deepEqual(shown(v.service('flt', read(), tagged(`missing-${i}`))), []);
    }
    // The same revision with other instances: only a kept body still shows f-1.
    assert.deepEqual(shown(v.service('flt', read('f-2'))), ['f-1'], 'the unfiltered answer was kept');
    assert.deepEqual(shown(v.service('flt', read('f-2'), tagged('a'))), ['f-1'], 'the filtered answer was kept');
  });

  it('a budget too small for a third answer pushes out the least recently used one', () => {
    const v = views();
    for (const tag of ['a', 'b', 'c']) v.service('flt', read('f-1'), tagged(tag));
    assert.deepEqual(shown(v.service('flt', read('f-2'), tagged('a'))), ['f-2'], 'tag=a was pushed out and rendered again');
    assert.deepEqual(shown(v.service('flt', read('f-2'), tagged('c'))), ['f-1'], 'tag=c is still kept');
  });
});
