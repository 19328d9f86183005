// Discovery from the watch-fed cache: no store round trip per read, changes made
// behind the gateway's back, read-your-writes, revisions and ETags that replicas
// agree on, blocking queries, and the watch through etcd restarts, compaction and a
// frozen store.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { call, eventually, instancePath, metricValue, startGateway, uniquePrefix, type TestGateway } from './helpers/gateway.ts';
import { eachStore } from './helpers/stores.ts';

/** Store round trips so far, status probes aside, as /metrics counts them. */
async function storeRequests(gw: TestGateway): Promise<number> {
  const series = (await gw.request('GET', '/metrics')).text
    .split('\n')
    .filter((line) => line.startsWith('discovery_store_request_duration_seconds_count{'));
  return series.filter((line) => !line.includes('op="status"')).reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
}

const ids = (body: { instances: { id: string }[] }) => body.instances.map((x) => x.id);

eachStore('cache', (store) => {
  let gw: TestGateway;

  before(async () => {
    gw = await startGateway({ etcd: store.etcd, env: { CACHE_MAX_BYTES: '65536' } });
  });
  after(async () => {
    await gw?.close();
  });

  it('a cached read makes no store request', async () => {
    await gw.request('PUT', instancePath('hot', 'h-1'), { address: '10.0.0.1', port: 80, ttl: 0 });
    const before = await storeRequests(gw);
    for (let i = 0; i < 20; i++) {
      assert.equal((await gw.request('GET', '/services/hot')).status, 200);
      assert.equal((await gw.request('GET', '/services/hot?tag=x')).status, 200);
      assert.equal((await gw.request('GET', instancePath('hot', 'h-1'))).status, 200);
      assert.equal((await gw.request('GET', '/services')).status, 200);
    }
    assert.equal(await storeRequests(gw), before, 'store requests during 80 cached reads');
    await gw.request('GET', '/services/hot?consistent=true');
    assert.equal(await storeRequests(gw), before + 1, 'a consistent read is one store request');
  });

  it('read-your-writes: a register, replace or delete is visible to the very next read, 50 times', async () => {
    for (let i = 0; i < 50; i++) {
      await gw.request('PUT', instancePath('ryw', `r-${i}`), { address: '10.0.0.2', port: 1000 + i, ttl: 0 });
      const list = (await gw.request('GET', '/services/ryw')).json;
      assert.ok(ids(list).includes(`r-${i}`), `r-${i} missing right after its registration`);
    }
    for (let i = 0; i < 50; i++) {
      await gw.request('DELETE', instancePath('ryw', `r-${i}`));
      assert.ok(!ids((await gw.request('GET', '/services/ryw')).json).includes(`r-${i}`), `r-${i} shown after its delete`);
    }
  });

  it('the revision rises on every change; ETag/If-None-Match gives 304 until then', async () => {
    const a = await gw.request('PUT', instancePath('etag', 'e-1'), { address: '10.0.0.3', port: 1, ttl: 0 });
    const r1 = await gw.request('GET', '/services/etag');
    assert.equal(r1.json.revision, a.json.revision);
    assert.equal(r1.headers.get('etag'), `"${a.json.revision}"`);
    assert.equal((await gw.request('GET', '/services/etag', undefined, { 'if-none-match': r1.headers.get('etag')! })).status, 304);
    await gw.request('PUT', `${instancePath('etag', 'e-1')}/heartbeat`, { status: 'down' });
    const r2 = await gw.request('GET', '/services/etag', undefined, { 'if-none-match': r1.headers.get('etag')! });
    assert.equal(r2.status, 200);
    assert.ok(r2.json.revision > r1.json.revision);
  });

  it('a blocking query answers at a change, well before its wait ends, or after its wait', async () => {
    const a = await gw.request('PUT', instancePath('blk', 'b-1'), { address: '10.0.0.4', port: 1, ttl: 0 });
    const t0 = Date.now();
    const held = gw.request('GET', `/services/blk?index=${a.json.revision}&wait=10s`);
    await sleep(300);
    await gw.request('PUT', instancePath('blk', 'b-2'), { address: '10.0.0.4', port: 2, ttl: 0 });
    const changed = Date.now();
    const r = await held;
    // Bounds that tell a wake-up at the change from the 10 s wait, with room for a busy machine.
    assert.ok(Date.now() - changed < 3000, `answered ${Date.now() - changed} ms after the change`);
    assert.ok(Date.now() - t0 >= 300);
    assert.deepEqual(ids(r.json), ['b-1', 'b-2']);
    const w0 = Date.now();
    const idle = await gw.request('GET', `/services/blk?index=${r.json.revision}&wait=600ms`);
    const took = Date.now() - w0;
    assert.ok(took >= 550 && took < 600 + 600 / 16 + 2000, `wait=600ms took ${took} ms`);
    assert.equal(idle.json.revision, r.json.revision);
  });

  it('a blocking query whose client leaves ends then, not at the end of its wait', async () => {
    const rev = (await gw.request('GET', '/services/leave')).json.revision;
    const hits = () => metricValue(gw, 'discovery_cache_requests_total', '{result="hit"}');
    const before = await hits();
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        const req = http.get(`${gw.base}/services/leave?index=${rev}&wait=1m`, { agent: false }).on('error', () => {});
        await once(req, 'finish'); // written whole: the gateway gets the query before it sees the client leave
        req.destroy();
      }),
    );
    // A held query counts as a read when it ends: the count would wait a minute for a query left parked.
    await eventually(async () => (await hits()) >= before + 20, 10_000, 'the 20 left queries to end');
  });

  it('with a bound of 64 KiB, a third answer of 20 KB evicts the least recently used, which is still answered right', async () => {
    const metadata = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 'v'.repeat(500)]));
    for (const s of ['lru-a', 'lru-b', 'lru-c'])
      await gw.request('PUT', instancePath(s, 'x'), { address: '10.0.0.5', port: 1, ttl: 0, metadata });
    for (const s of ['lru-a', 'lru-b', 'lru-c', 'lru-a']) {
      const r = await gw.request('GET', `/services/${s}`);
      assert.deepEqual([r.json.service, ids(r.json)], [s, ['x']]);
    }
  });

  if (store.kind === 'etcd') {
    const value = (address: string, port: number) =>
      JSON.stringify({
        address,
        port,
        tags: [],
        metadata: {},
        weight: 100,
        status: 'up',
        ttl: 0,
        registeredAt: new Date().toISOString(),
      });

    it('a change made directly in etcd shows within a second, labelled with its revision', async () => {
      await store.etcd!.ctl(['put', `${gw.prefix}/ext/x-1`, value('10.9.9.9', 6553)]);
      const b = await eventually(
        async () => {
          const r = await gw.request('GET', '/services/ext');
          return r.json.instances.length === 1 && r.json;
        },
        1000,
        'external put visible',
      );
      assert.equal(b.instances[0].address, '10.9.9.9');
      await store.etcd!.ctl(['del', `${gw.prefix}/ext/x-1`]);
      await eventually(async () => (await gw.request('GET', '/services/ext')).json.instances.length === 0, 1000, 'external delete visible');
    });

    it('two gateways on one etcd label the same state with the same revision', async () => {
      const other = await startGateway({ etcd: store.etcd, prefix: gw.prefix });
      try {
        await gw.request('PUT', instancePath('two', 't-1'), { address: '10.0.0.6', port: 1, ttl: 0 });
        const a = (await gw.request('GET', '/services/two')).json;
        const b = await eventually(
          async () => {
            const r = (await other.request('GET', '/services/two')).json;
            return r.revision === a.revision && r;
          },
          2000,
          'replica B agrees',
        );
        assert.deepEqual(b, a);
      } finally {
        await other.close();
      }
    });

    it('etcd killed and restarted: changes made after the restart are all seen, in order', async () => {
      await gw.request('PUT', instancePath('rst', 'before'), { address: '10.0.1.1', port: 1, ttl: 0 });
      await store.etcd!.kill(0);
      await store.etcd!.restart(0);
      for (let i = 0; i < 5; i++) await store.etcd!.ctl(['put', `${gw.prefix}/rst/after-${i}`, value('10.0.1.2', i + 1)]);
      await eventually(
        async () => (await gw.request('GET', '/services/rst')).json.instances.length === 6,
        15_000,
        'all 6 instances after the restart',
      );
      await eventually(async () => (await gw.request('GET', '/health/ready')).status === 200, 10_000, 'ready again');
    });

    it('a watch that resumes from a compacted revision reloads the cache, which is then exact', async () => {
      const restartsBefore = await restarts(gw);
      await gw.request('PUT', instancePath('cmp', 'keep'), { address: '10.0.2.1', port: 1, ttl: 0 });
      await gw.request('PUT', instancePath('cmp', 'gone'), { address: '10.0.2.2', port: 2, ttl: 0 });
      // Move etcd where the gateway cannot reach it, change and compact there, then bring it back.
      const hidden = await store.etcd!.restartElsewhere(0);
      await store.etcd!.ctlAt([hidden], ['del', `${gw.prefix}/cmp/gone`]);
      await store.etcd!.ctlAt([hidden], ['put', `${gw.prefix}/cmp/new`, value('10.0.2.3', 3)]);
      const rev = JSON.parse(await store.etcd!.ctlAt([hidden], ['endpoint', 'status', '-w', 'json']))[0].Status.header.revision;
      await store.etcd!.ctlAt([hidden], ['compact', String(rev)]);
      await store.etcd!.restart(0);
      await eventually(
        async () => {
          const r = await gw.request('GET', '/services/cmp');
          return JSON.stringify(ids(r.json)) === JSON.stringify(['keep', 'new']);
        },
        20_000,
        'cache reloaded to keep,new',
      );
      await eventually(async () => (await restarts(gw)) > restartsBefore, 5000, 'discovery_watch_restarts_total to rise');
      await eventually(async () => (await gw.request('GET', '/health/ready')).status === 200, 10_000, 'ready again');
    });

    it('etcd frozen: cached reads are stale-marked, uncached ones and writes 503, ready 503; all recover', async () => {
      const prefix = uniquePrefix('frz');
      const fz = await startGateway({ etcd: store.etcd, prefix, env: { ETCD_TIMEOUT_MS: '1000' } });
      try {
        await fz.request('PUT', instancePath('frz', 'f-1'), { address: '10.0.3.1', port: 1, ttl: 0 });
        await fz.request('PUT', instancePath('frz', 'hb'), { address: '10.0.3.2', port: 2, ttl: 30 });
        store.etcd!.stop(0);
        await eventually(async () => (await fz.request('GET', '/health/ready')).status === 503, 10_000, 'ready 503');
        const cached = await fz.request('GET', '/services/frz');
        assert.equal(cached.status, 200);
        assert.equal(cached.headers.get('x-registry-stale'), 'true');
        assert.match(cached.headers.get('age') ?? '', /^\d+$/);
        const uncached = await fz.request('GET', '/services/never-seen-here');
        assert.equal(uncached.status, 503);
        assert.equal(uncached.json.code, 'store-unavailable');
        const write = await fz.request('PUT', instancePath('frz', 'f-2'), { address: '10.0.3.3', port: 3, ttl: 0 });
        assert.equal(write.status, 503);
        assert.equal(write.json.code, 'store-unavailable');
        const hb = await fz.request('PUT', `${instancePath('frz', 'hb')}/heartbeat`);
        assert.equal(hb.status, 503, 'a heartbeat that cannot reach the store is 503, never 404');
        store.etcd!.cont(0);
        await eventually(async () => (await fz.request('GET', '/health/ready')).status === 200, 15_000, 'ready 200 after SIGCONT');
        const fresh = await fz.request('GET', '/services/frz');
        assert.equal(fresh.headers.get('x-registry-stale'), null);
        await eventually(
          async () => (await fz.request('PUT', instancePath('frz', 'f-2'), { address: '10.0.3.3', port: 3, ttl: 0 })).status < 300,
          10_000,
          'writes work again',
        );
      } finally {
        store.etcd!.cont(0);
        await fz.close();
      }
    });
  }
});

async function restarts(gw: TestGateway): Promise<number> {
  const text = (await call(gw.base, 'GET', '/metrics')).text;
  const m = /^discovery_watch_restarts_total (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}
