// Read-your-writes across replicas with minRevision (API.md "Discovery"), on a real etcd.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type EtcdCluster, startEtcd } from './helpers/etcd.ts';
import { instanceBody as instance, startGateway, type TestGateway, uniquePrefix } from './helpers/gateway.ts';

let etcd: EtcdCluster;
before(async () => void (etcd = await startEtcd()));
after(() => etcd?.close());

describe('read-your-writes across replicas (minRevision)', () => {
  const prefix = uniquePrefix('ryw');
  let a: TestGateway;
  let b: TestGateway;
  before(async () => {
    [a, b] = await Promise.all([startGateway({ etcd, prefix }), startGateway({ etcd, prefix })]);
  });
  after(async () => Promise.all([a?.close(), b?.close()]));

  test('a write on A is always read on B right after, with minRevision', async () => {
    for (let i = 0; i < 40; i++) {
      const w = await a.request('PUT', `/services/ryw/instances/i${i}`, instance('10.2.0.1', 1000 + i, { ttl: 0 }));
      assert.equal(w.status, 201);
      const rev = Number(w.headers.get('x-registry-revision'));
      assert.equal(rev, w.json.revision);
      const [svc, one, all] = await Promise.all([
        b.request('GET', `/services/ryw?minRevision=${rev}`),
        b.request('GET', `/services/ryw/instances/i${i}?minRevision=${rev}`),
        b.request('GET', `/services?minRevision=${rev}`),
      ]);
      assert.equal(svc.status, 200);
      assert.ok(svc.json.revision >= rev);
      assert.equal(svc.json.instances.length, i + 1, `round ${i}: B misses the write`);
      assert.equal(one.status, 200, `round ${i}: ${one.text}`);
      assert.equal(one.json.revision, rev);
      assert.ok(all.json.revision >= rev);
      assert.deepEqual(all.json.services, [{ name: 'ryw', instances: i + 1 }]);
    }
  });

  test('a malformed minRevision is 400', async () => {
    for (const bad of ['abc', '-1', '1.5', '']) {
      for (const path of ['/services', '/services/ryw', '/services/ryw/instances/i0']) {
        if (bad === '') continue; // an empty value is no value
        const r = await b.request('GET', `${path}?minRevision=${bad}`);
        assert.equal(r.status, 400, `${path}?minRevision=${bad}: ${r.text}`);
        assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);
        assert.equal(r.json.code, 'invalid-request');
      }
    }
  });
});
