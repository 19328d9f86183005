// Membership change under a running gateway: one member of a three-member
// cluster removed and a new one added at other addresses, while ETCD_ENDPOINTS
// still lists the removed one. The gateway keeps serving on the members left,
// and /health names the listed endpoint that is gone.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type EtcdCluster, startEtcd } from './helpers/etcd.ts';
import { eventually, instanceBody as instance, startGateway, type TestGateway } from './helpers/gateway.ts';

let etcd: EtcdCluster;
let gw: TestGateway;
before(async () => {
  etcd = await startEtcd({ size: 3 });
  gw = await startGateway({ etcd });
});
after(async () => {
  await gw?.close();
  await etcd?.close();
});

test('a member replaced: the gateway keeps working and /health names the endpoint that is gone', async () => {
  const first = await gw.request('PUT', '/services/members/instances/a', instance('10.7.0.1', 80, { ttl: 30 }));
  assert.equal(first.status, 201, first.text);
  assert.equal((await gw.request('GET', '/health')).json.store.details.goneEndpoints, undefined);

  const removed = etcd.endpoints[2]!;
  const added = await etcd.replaceMember(2);
  assert.notEqual(added, removed);

  // Calls may meet a 503 while the cluster elects or takes the new member in (likelier on a
  // loaded machine); each must succeed soon, on the members left.
  const soon = (what: string, call: () => Promise<{ status: number; text: string }>, want: number) =>
    eventually(
      async () => {
        const r = await call();
        if (r.status !== 503) assert.equal(r.status, want, `${what}: ${r.text}`);
        return r.status === want;
      },
      20_000,
      what,
    );
  for (let i = 0; i < 10; i++) {
    await soon(
      `registration ${i}`,
      () => gw.request('PUT', `/services/members/instances/n${i}`, instance('10.7.0.3', 80 + i, { ttl: 30 })),
      201,
    );
    await soon(`heartbeat ${i}`, () => gw.request('PUT', '/services/members/instances/a/heartbeat'), 200);
    await soon(`consistent read ${i}`, () => gw.request('GET', '/services/members?consistent=true'), 200);
  }
  const read = await gw.request('GET', '/services/members?consistent=true');
  assert.equal(read.json.instances.length, 11);
  const cached = await gw.request('GET', '/services/members');
  assert.equal(cached.json.instances.length, 11, 'the watch follows');

  const health = await eventually(
    async () => {
      const h = await gw.request('GET', '/health');
      return h.json.store.details?.goneEndpoints ? h : undefined;
    },
    10_000,
    '/health to name the removed endpoint',
  );
  assert.equal(health.status, 200);
  assert.deepEqual(health.json.store.details.goneEndpoints, [removed]);
  assert.ok(
    (health.json.store.details.warnings as string[]).some((w) => w.includes(removed)),
    'a warning names it',
  );
});
