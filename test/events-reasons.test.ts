// Why an instance left (API.md "Events": reason), on a real etcd: the same reason on
// every replica, live, replayed from the ring or from the store, and across an etcd restart.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { eventually, instanceBody as instance, metricValue, startGateway, type TestGateway, uniquePrefix } from './helpers/gateway.ts';
import { changes, changesAtLeast, streamGroup } from './helpers/sse.ts';

let etcd: EtcdCluster;
before(async () => void (etcd = await startEtcd()));
after(() => etcd?.close());

describe('why an instance left', () => {
  const prefix = uniquePrefix('reason');
  let a: TestGateway;
  let b: TestGateway;
  const { open, closeAll } = streamGroup();
  let before0 = 0;
  let live: ReturnType<typeof changes> = [];

  before(async () => {
    a = await startGateway({ etcd, prefix });
    before0 = (await a.request('GET', '/services')).json.revision;
    for (const id of ['del', 'batch'])
      assert.equal((await a.request('PUT', `/services/orders/instances/${id}`, instance('10.1.0.1', 8080))).status, 201);
    assert.equal((await a.request('PUT', '/services/orders/instances/exp', instance('10.1.0.2', 8080, { ttl: 1 }))).status, 201);
    // B starts after every registration: its ring holds nothing at or below `before0`.
    b = await startGateway({ etcd, prefix });
  });
  after(async () => {
    closeAll();
    await Promise.all([a?.close(), b?.close()]);
  });

  test('DELETE, batch deregister and TTL expiry carry their reason live on both gateways', async () => {
    const liveA = await open(a, '/services/orders/events');
    const liveB = await open(b, '/events');
    await liveA.waitFor((e) => e.event === 'snapshot');
    await liveB.waitFor((e) => e.event === 'snapshot');

    assert.equal((await b.request('DELETE', '/services/orders/instances/del')).status, 204);
    const batch = await a.request('POST', '/batch', {
      register: [{ service: 'orders', id: 'new', ...instance('10.1.0.3', 8080) }],
      deregister: [{ service: 'orders', id: 'batch' }],
    });
    assert.equal(batch.status, 200);
    // 'exp' gets no heartbeat: etcd expires its lease (at least 2 s).
    const onA = await changesAtLeast(liveA, 4, 15_000);
    const onB = await changesAtLeast(liveB, 4, 15_000);
    const summary = onA.map((c) => [c.event, c.data.id, c.data.reason]);
    assert.deepEqual(summary, [
      ['deregister', 'del', 'deregistered'],
      ['register', 'new', undefined],
      ['deregister', 'batch', 'deregistered'],
      ['deregister', 'exp', 'expired'],
    ]);
    // Both replicas describe every change identically (same ids, reasons, last records).
    assert.deepEqual(onB, onA);
    assert.equal(onA[1]!.id, String(batch.json.revision));
    assert.equal(onA[2]!.id, String(batch.json.revision), 'a batch is one revision');
    const lastRecord = onA[0]!.data.instance as { id: string; revision: number };
    assert.equal(lastRecord.id, 'del');
    assert.ok(lastRecord.revision <= before0 + 3, 'a deregister carries the last record with its own revision');
    live = onA;
    for (const gw of [a, b])
      assert.ok((await metricValue(gw, 'discovery_expirations_total')) >= 1, 'discovery_expirations_total counts the expiry');
  });

  test('a resume from an older Last-Event-ID replays the same reasons, from the ring (A) and from the store (B)', async () => {
    assert.ok(live.length === 4, 'needs the live test');
    const watchesBefore = await metricValue(b, 'discovery_store_request_duration_seconds_count', '{op="watch"}');
    const fromRing = await open(a, '/services/orders/events', String(before0));
    const fromStore = await open(b, '/services/orders/events', String(before0));
    const fromStoreAll = await open(b, `/events?lastEventId=${before0}`);
    // The registrations of del, batch and exp come first (B never had them in its ring).
    for (const s of [fromRing, fromStore, fromStoreAll]) {
      const got = await changesAtLeast(s, 7);
      await sleep(300); // nothing more, nothing twice
      assert.deepEqual(changes(s), got);
      assert.deepEqual(
        got.slice(0, 3).map((c) => [c.event, c.data.id]),
        [
          ['register', 'del'],
          ['register', 'batch'],
          ['register', 'exp'],
        ],
      );
      assert.deepEqual(got.slice(3), live, `replay on ${s.url} equals the live events`);
      assert.ok(!s.events.some((e) => e.event === 'snapshot'), 'a resume sends no snapshot');
    }
    assert.ok(
      (await metricValue(b, 'discovery_store_request_duration_seconds_count', '{op="watch"}')) > watchesBefore,
      'B replayed from the store',
    );
  });

  test('bookkeeping keys carry a lease and never show in any answer', async () => {
    const out = JSON.parse(await etcd.ctl(['get', '--prefix', `${prefix}/_/`, '-w', 'json'])) as {
      kvs?: { key: string; lease?: number }[];
    };
    const raw = await etcd.ctl(['get', '--prefix', `${prefix}/_/`, '-w', 'json']);
    const keys = (out.kvs ?? []).map((kv) => Buffer.from(kv.key, 'base64').toString());
    assert.ok(
      keys.filter((k) => k.startsWith(`${prefix}/_/deregistered/`)).length >= 2,
      `markers of the DELETE and the batch: ${keys.join(' ')}`,
    );
    // Lease ids exceed 2^53: read them as text, not through JSON.parse.
    const leases = [...raw.matchAll(/"lease":(\d+)/g)].map((m) => BigInt(m[1]!));
    assert.equal(leases.length, keys.length, 'every bookkeeping key has a lease');
    for (const lease of new Set(leases)) {
      assert.ok(lease > 0n);
      const ttl = await etcd.ctl(['lease', 'timetolive', lease.toString(16)]);
      const m = /remaining\((-?\d+)s\)/.exec(ttl);
      assert.ok(m && Number(m[1]) > 0 && Number(m[1]) <= 120, `lease ${lease.toString(16)} expires by itself: ${ttl}`);
    }

    const tokens = keys.map((k) => k.slice(k.lastIndexOf('/') + 1));
    const texts: string[] = [];
    for (const gw of [a, b]) {
      const list = await gw.request('GET', '/services');
      assert.deepEqual(list.json.services, [{ name: 'orders', instances: 1 }]);
      texts.push(list.text, (await gw.request('GET', '/services/orders')).text, (await gw.request('GET', '/sd/prometheus')).text);
      const snap = await open(gw, '/events');
      const e = await snap.waitFor((x) => x.event === 'snapshot');
      assert.deepEqual(Object.keys((JSON.parse(e.data) as { services: object }).services), ['orders']);
      texts.push(e.data);
      snap.close();
    }
    for (const text of texts) {
      assert.ok(!text.includes('/_/') && !text.includes('"_"') && !text.includes('deregistered/'), text);
      for (const t of tokens) assert.ok(!text.includes(t), `bookkeeping key ${t} leaked into ${text}`);
    }
  });

  test('the reason survives an etcd restart between the delete and the resume', async () => {
    await etcd.restart(0);
    await eventually(async () => (await b.request('GET', '/health/ready')).status === 200, 20_000, 'B ready again');
    // B's ring does not reach back to before0: this is a replay from the restarted store.
    const s = await open(b, '/services/orders/events', String(before0));
    const got = await changesAtLeast(s, 7, 15_000);
    assert.deepEqual(got.slice(3), live);
    // And on a gateway that starts only now.
    const c = await startGateway({ etcd, prefix });
    try {
      const s2 = await open(c, '/services/orders/events', String(before0));
      assert.deepEqual((await changesAtLeast(s2, 7, 15_000)).slice(3), live);
      s2.close();
    } finally {
      await c.close();
    }
  });

  // Regression: the shared bookkeeping lease was reused for a minute even when it
  // was gone, so every DELETE failed as 404 "lease not found" until it was renewed.
  test('a DELETE still works and says why after the bookkeeping lease was revoked', async () => {
    assert.equal((await a.request('PUT', '/services/orders/instances/again', instance('10.1.0.4', 8080))).status, 201);
    const raw = await etcd.ctl(['get', '--prefix', `${prefix}/_/`, '-w', 'json']);
    for (const lease of new Set([...raw.matchAll(/"lease":(\d+)/g)].map((m) => BigInt(m[1]!).toString(16))))
      await etcd.ctl(['lease', 'revoke', lease]);
    const s = await open(b, '/services/orders/events');
    await s.waitFor((e) => e.event === 'snapshot');
    const del = await a.request('DELETE', '/services/orders/instances/again');
    assert.equal(del.status, 204, del.text);
    const ev = await s.waitFor((e) => e.event === 'deregister');
    assert.equal((JSON.parse(ev.data) as { reason: string }).reason, 'deregistered');
  });
});
