// Cause: etcd3 sends each call and opens each watch stream on a member picked at
// random, and a frozen member neither answers nor fails, so start-up's read or
// watch waited out its deadline there, try after try, until start-up gave up.
// Now each member is probed alone and a frozen one held out of the client (calls
// wait for the first round), and a watch not confirmed in time is opened again
// elsewhere. Found by the soak (issue 17).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.ts';
import { eventually, startGateway, type TestGateway } from '../helpers/gateway.ts';

describe('a gateway starting while one of three etcd members is frozen', () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await startEtcd({ size: 3 });
  });
  after(async () => {
    for (let i = 0; i < 3; i++) etcd.cont(i);
    await etcd.close();
  });

  async function startsAndServes(frozen: number, label: string): Promise<void> {
    etcd.stop(frozen);
    let gw: TestGateway | undefined;
    try {
      const t0 = Date.now();
      gw = await startGateway({ etcd, env: { LOG_LEVEL: process.env.TEST_LOG ?? 'silent' } });
      const g = gw;
      await eventually(async () => (await g.request('GET', '/health/ready')).status === 200, 30_000, 'ready');
      const put = await gw.request('PUT', `/services/${label}/instances/i-1`, { address: '10.0.0.1', port: 80, ttl: 0 });
      assert.equal(put.status, 201, put.text);
      const read = await gw.request('GET', `/services/${label}/instances/i-1`);
      assert.equal(read.status, 200, read.text);
      assert.equal(read.json.address, '10.0.0.1');
      console.log(`${label}: ready after ${Date.now() - t0} ms`);
    } finally {
      await gw?.close();
      etcd.cont(frozen);
    }
  }

  it('starts on the two healthy members when a follower is frozen, and serves writes and reads', async () => {
    const leader = await etcd.leaderIndex();
    // etcd3 picks a member at random per call and per stream: several starts make landing on the frozen one likely.
    for (let n = 0; n < 3; n++) await startsAndServes((leader + 1) % 3, `follower${n}`);
  });

  it('starts on the two others when the leader is frozen, once they elected a new one', async () => {
    const leader = await etcd.leaderIndex();
    etcd.stop(leader);
    try {
      await eventually(async () => (await etcd.leaderIndex().catch(() => leader)) !== leader, 20_000, 'a new leader');
    } finally {
      etcd.cont(leader);
    }
    await startsAndServes(leader, 'oldleader');
  });
});
