// Cause: a blocking query ended its wait on any change of the service, so on a
// replica behind the client's index (the index came from a replica further
// ahead) a change older than the index answered it at once, with a revision
// below the index: the client went back in time. Found by the soak (issue 17).
// Now the wait ends early only once the service's revision is above the index.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';

describe('a blocking query with an index ahead of the replica', () => {
  let etcd: EtcdCluster;
  let gw: TestGateway;
  before(async () => {
    etcd = await startEtcd();
    gw = await startGateway({ etcd });
  });
  after(async () => {
    await gw.close();
    await etcd.close();
  });

  it('is not answered by changes at or below its index', async () => {
    const put = async (id: string) => {
      const r = await gw.request('PUT', `/services/lag/instances/${id}`, { address: '10.0.0.1', port: 80, ttl: 0 });
      assert.ok(r.status === 201, r.text);
      return Number(r.headers.get('x-registry-revision'));
    };
    const first = await put('i0');
    // As if another replica had already shown revision first + 3 to this client.
    const index = first + 3;
    const answer = gw.request('GET', `/services/lag?index=${index}&wait=20s`);
    const revisions = [];
    for (const id of ['i1', 'i2', 'i3', 'i4']) revisions.push(await put(id));
    assert.deepEqual(revisions, [first + 1, first + 2, first + 3, first + 4]);
    const r = await answer;
    assert.equal(r.status, 200);
    assert.equal(r.json.revision, first + 4, 'answered with the first revision above the index');
    assert.equal(r.json.instances.length, 5);
  });
});
