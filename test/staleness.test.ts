// Staleness and pacing: Age on stale answers, blocking queries and retry: spread by jitter, on a real etcd.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { eventually, instanceBody as instance, startGateway, type TestGateway } from './helpers/gateway.ts';
import { openSse } from './helpers/sse.ts';

let etcd: EtcdCluster;
before(async () => void (etcd = await startEtcd()));
after(() => etcd?.close());

describe('staleness and pacing', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ etcd });
    await gw.request('PUT', '/services/pace/instances/p1', instance('10.6.0.1', 80));
  });
  after(async () => gw?.close());

  test('blocking queries return within wait + wait/16 + slack, jittered', async () => {
    const index = (await gw.request('GET', '/services/pace')).json.revision;
    const times = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const t0 = performance.now();
        const r = await gw.request('GET', `/services/pace?index=${index}&wait=1s`);
        assert.equal(r.status, 200);
        return performance.now() - t0;
      }),
    );
    // Generous slack: the bound shows the wait is honoured, not how fast a loaded machine answers.
    for (const t of times) assert.ok(t >= 990 && t <= 1000 + 1000 / 16 + 1000, `answered after ${t.toFixed(0)} ms`);
    assert.ok(Math.max(...times) - Math.min(...times) >= 3, `answers spread by jitter: ${times.map((t) => t.toFixed(0)).join(' ')}`);
  });

  test('retry: is randomized between 1 and 5 seconds across streams', async () => {
    const streams = await Promise.all(Array.from({ length: 8 }, () => openSse(`${gw.base}/services/pace/events`)));
    try {
      await Promise.all(streams.map((s) => s.until('retry:', () => s.retries.length > 0)));
      const retries = streams.map((s) => s.retries[0]!);
      for (const r of retries) assert.ok(r >= 1000 && r <= 5000, `retry: ${r}`);
      assert.ok(new Set(retries).size > 1, `retry values vary: ${retries.join(' ')}`);
    } finally {
      for (const s of streams) s.close();
    }
  });

  test('heartbeat answers carry interval, about a third of the TTL', async () => {
    await gw.request('PUT', '/services/pace/instances/p2', instance('10.6.0.2', 80, { ttl: 30 }));
    await gw.request('PUT', '/services/pace/instances/p3', instance('10.6.0.3', 80, { ttl: 0 }));
    const hb = await gw.request('PUT', '/services/pace/instances/p2/heartbeat');
    assert.equal(hb.status, 200);
    assert.ok(hb.json.interval >= (30 / 3) * 0.8 && hb.json.interval <= 30 / 3, `interval ${hb.json.interval}`);
    const none = await gw.request('PUT', '/services/pace/instances/p3/heartbeat');
    assert.equal(none.json.interval, undefined);
  });

  test('stale answers carry a growing Age while etcd is frozen', async () => {
    etcd.stop(0);
    try {
      const first = await eventually(
        async () => {
          const r = await gw.request('GET', '/services/pace');
          return r.headers.get('x-registry-stale') === 'true' && r;
        },
        15_000,
        'a stale answer',
      );
      assert.equal(first.status, 200);
      const age1 = Number(first.headers.get('age'));
      assert.ok(Number.isInteger(age1) && age1 >= 0, `Age ${first.headers.get('age')}`);
      await sleep(2100);
      const second = await gw.request('GET', '/services/pace');
      assert.equal(second.headers.get('x-registry-stale'), 'true');
      const age2 = Number(second.headers.get('age'));
      assert.ok(age2 >= age1 + 2, `Age grows: ${age1} then ${age2}`);
      const list = await gw.request('GET', '/services');
      assert.equal(list.headers.get('x-registry-stale'), 'true');
      assert.ok(Number(list.headers.get('age')) >= age2);
      const sdAnswer = await gw.request('GET', '/sd/prometheus');
      assert.equal(sdAnswer.status, 200);
      assert.equal(sdAnswer.headers.get('x-registry-stale'), 'true');
      const unknown = await gw.request('GET', '/services/never-seen');
      assert.equal(unknown.status, 503);
      assert.equal(unknown.json.code, 'store-unavailable');
    } finally {
      etcd.cont(0);
    }
    await eventually(
      async () => (await gw.request('GET', '/services/pace')).headers.get('x-registry-stale') === null,
      15_000,
      'fresh answers again',
    );
    const fresh = await gw.request('GET', '/services/pace');
    assert.equal(fresh.headers.get('age'), null);
  });
});
