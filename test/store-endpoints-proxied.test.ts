// Endpoints that are not the members' advertised URLs (a TCP proxy, a load
// balancer, a DNS name in front of each member): /health must not call them
// gone while their members are in the cluster, and must still name the one
// whose member was replaced. Found by the soak, whose gateways reach etcd
// through pipes: every endpoint was listed as gone, with a warning, all run long.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { NetPipe } from '../soak/net-pipe.ts';
import { type EtcdCluster, startEtcd } from './helpers/etcd.ts';
import { eventually, startGateway, type TestGateway } from './helpers/gateway.ts';

let etcd: EtcdCluster;
let pipes: NetPipe[];
let gw: TestGateway;
before(async () => {
  etcd = await startEtcd({ size: 3 });
  pipes = await Promise.all(etcd.endpoints.map((e) => NetPipe.start(e)));
  gw = await startGateway({ env: { ETCD_ENDPOINTS: pipes.map((p) => p.url).join(',') } });
});
after(async () => {
  await gw?.close();
  await Promise.all((pipes ?? []).map((p) => p.close()));
  await etcd?.close();
});

test('endpoints behind proxies are not gone while their members serve; the replaced one is', async () => {
  const health = await gw.request('GET', '/health');
  assert.equal(health.status, 200, health.text);
  assert.equal(health.json.store.details.goneEndpoints, undefined, 'every listed endpoint reaches a member of the cluster');
  assert.ok(!(health.json.store.details.warnings ?? []).some((w: string) => w.includes('ETCD_ENDPOINTS')), health.text);

  await etcd.replaceMember(2);
  const after = await eventually(
    async () => {
      const h = await gw.request('GET', '/health');
      return h.json.store.details?.goneEndpoints ? h : undefined;
    },
    15_000,
    '/health to name the endpoint of the removed member',
  );
  assert.deepEqual(after.json.store.details.goneEndpoints, [pipes[2]!.url]);
});
