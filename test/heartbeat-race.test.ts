// A heartbeat on one replica racing a deregistration on another (API.md "Hostile
// clients", "Races"): it answers 404, or 200 labelled with a revision from before
// the delete; never 200 labelled at or after the revision that removed the instance.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type EtcdCluster, startEtcd } from './helpers/etcd.ts';
import { instanceBody, startGateway, uniquePrefix, type TestGateway } from './helpers/gateway.ts';

const ROUNDS = 40;

describe('heartbeat racing a deregistration on another replica', () => {
  let etcd: EtcdCluster;
  let a: TestGateway;
  let b: TestGateway;
  before(async () => {
    etcd = await startEtcd();
    const prefix = uniquePrefix('race');
    [a, b] = await Promise.all([startGateway({ etcd, prefix }), startGateway({ etcd, prefix })]);
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await etcd?.close();
  });

  it('is never labelled at or after the delete', async () => {
    const late: string[] = [];
    let renewed = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const path = `/services/race/instances/r${i}`;
      const put = await a.request('PUT', path, instanceBody('10.0.0.1', 1000 + i, { ttl: 30 }));
      assert.equal(put.status, 201, put.text);
      // B knows the instance before the race starts.
      assert.equal((await b.request('GET', `${path}?minRevision=${put.json.revision}`)).status, 200);
      const heartbeats = [0, 1, 3, 6].map((delay) =>
        new Promise((r) => setTimeout(r, delay)).then(() => b.request('PUT', `${path}/heartbeat`)),
      );
      const del = await a.request('DELETE', path);
      assert.equal(del.status, 204, del.text);
      const deletedAt = Number(del.headers.get('x-registry-revision'));
      for (const hb of await Promise.all(heartbeats)) {
        assert.ok(hb.status === 200 || hb.status === 404, `heartbeat ${hb.status} ${hb.text}`);
        if (hb.status !== 200) continue;
        renewed++;
        const label = Number(hb.headers.get('x-registry-revision'));
        if (label >= deletedAt) late.push(`round ${i}: 200 labelled ${label}, deleted at ${deletedAt}`);
      }
    }
    assert.deepEqual(late, [], `${late.length} heartbeats labelled at or after the delete (${renewed} renewed)`);
  });
});
