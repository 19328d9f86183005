// Registration and discovery as a curl user sees them, on both stores: every
// endpoint and status code, TTL expiry, heartbeats, ttl 0, idempotent POST, atomic
// batches; and on etcd, the key layout and leases read back with etcdctl.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { eventually, instancePath, startGateway, type TestGateway } from './helpers/gateway.ts';
import { eachStore } from './helpers/stores.ts';
import { loadConfig } from '../src/config.ts';
import { createStore } from '../src/registry/index.ts';
import type { Store } from '../src/registry/store/store.ts';

/** etcdctl's JSON with lease ids (int64, above 2^53) kept as strings. */
const parseBig = (text: string) => JSON.parse(text.replace(/"(lease|ID|id)":(\d+)/g, '"$1":"$2"'));

eachStore('registry', (store) => {
  let gw: TestGateway;

  before(async () => {
    gw = await startGateway({ etcd: store.etcd });
  });
  after(async () => {
    await gw?.close();
  });

  it('PUT registers (201) then replaces (200) with a higher revision', async () => {
    const body = { address: '10.0.0.7', port: 8080, tags: ['http'], metadata: { zone: 'eu-1' }, weight: 50, ttl: 0 };
    const a = await gw.request('PUT', instancePath('pay', 'i-1'), body);
    assert.equal(a.status, 201);
    assert.deepEqual(
      { ...a.json, registeredAt: undefined, revision: undefined },
      { service: 'pay', id: 'i-1', ...body, status: 'up', registeredAt: undefined, revision: undefined },
    );
    assert.equal(a.headers.get('x-registry-revision'), String(a.json.revision));
    const b = await gw.request('PUT', instancePath('pay', 'i-1'), { ...body, port: 8081 });
    assert.equal(b.status, 200);
    assert.ok(b.json.revision > a.json.revision);
    assert.equal(b.json.registeredAt, a.json.registeredAt, 'registeredAt is kept on replace');
    const g = await gw.request('GET', instancePath('pay', 'i-1'));
    assert.deepEqual(g.json, b.json);
  });

  it('defaults: weight 100, status up, ttl 30', async () => {
    const r = await gw.request('PUT', instancePath('pay', 'def'), { address: 'host-1.example.internal', port: 80 });
    assert.equal(r.status, 201);
    assert.equal(r.json.weight, 100);
    assert.equal(r.json.status, 'up');
    assert.equal(r.json.ttl, 30);
    await gw.request('DELETE', instancePath('pay', 'def'));
  });

  it('POST without id uses address:port, answers Location, and a retry creates no duplicate', async () => {
    const body = { address: '10.0.0.9', port: 9000, ttl: 0 };
    const a = await gw.request('POST', '/services/pay/instances', body);
    assert.equal(a.status, 201);
    assert.equal(a.json.id, '10.0.0.9:9000');
    assert.equal(a.headers.get('location'), '/services/pay/instances/10.0.0.9:9000');
    const b = await gw.request('POST', '/services/pay/instances', body);
    assert.equal(b.status, 201, 'API.md: POST answers 201, retried or not');
    const list = await gw.request('GET', '/services/pay');
    assert.equal(list.json.instances.filter((x: { address: string }) => x.address === '10.0.0.9').length, 1);
    const v6 = await gw.request('POST', '/services/pay/instances', { address: 'fd00::7', port: 8443, ttl: 0 });
    assert.equal(v6.json.id, 'fd00::7:8443');
  });

  it('GET of an unknown instance is 404 problem+json; an unknown service is 200 with []', async () => {
    const r = await gw.request('GET', instancePath('pay', 'nope'));
    assert.equal(r.status, 404);
    assert.match(r.headers.get('content-type')!, /^application\/problem\+json/);
    assert.equal(r.json.code, 'instance-not-found');
    const s = await gw.request('GET', '/services/never-seen');
    assert.equal(s.status, 200);
    assert.deepEqual(s.json.instances, []);
  });

  it('a plain heartbeat renews without writing; a status heartbeat updates the record', async () => {
    const reg = await gw.request('PUT', instancePath('hb', 'h-1'), { address: '10.0.0.11', port: 1100, ttl: 10 });
    for (const [body, headers] of [
      [undefined, {}],
      ['', { 'content-type': 'application/json' }],
      [{}, {}],
    ] as const) {
      const r = await gw.request('PUT', `${instancePath('hb', 'h-1')}/heartbeat`, body, headers);
      assert.equal(r.status, 200);
      assert.equal(r.json.ttl, reg.json.ttl);
      assert.equal(r.json.status, 'up');
      assert.ok(r.json.interval > 0 && r.json.interval <= reg.json.ttl / 2, `interval ${r.json.interval}`);
    }
    assert.equal((await gw.request('GET', instancePath('hb', 'h-1'))).json.revision, reg.json.revision, 'renewals write nothing');
    const d = await gw.request('PUT', `${instancePath('hb', 'h-1')}/heartbeat`, { status: 'draining' });
    assert.equal(d.json.status, 'draining');
    const after = await gw.request('GET', instancePath('hb', 'h-1'));
    assert.equal(after.json.status, 'draining');
    assert.ok(after.json.revision > reg.json.revision);
    assert.equal(d.headers.get('x-registry-revision'), String(after.json.revision));
    assert.equal(after.json.registeredAt, reg.json.registeredAt);
  });

  it('heartbeat of an unknown instance is 404 instance-not-found; of a ttl:0 instance 200 with no interval', async () => {
    const r = await gw.request('PUT', `${instancePath('hb', 'ghost')}/heartbeat`);
    assert.equal(r.status, 404);
    assert.equal(r.json.code, 'instance-not-found');
    await gw.request('PUT', instancePath('hb', 'zero'), { address: '10.0.0.12', port: 1200, ttl: 0 });
    const z = await gw.request('PUT', `${instancePath('hb', 'zero')}/heartbeat`);
    assert.equal(z.status, 200);
    assert.deepEqual(z.json, { ttl: 0, status: 'up' });
  });

  it('DELETE answers 204 with the revision of the delete, then 404', async () => {
    const reg = await gw.request('PUT', instancePath('del', 'd-1'), { address: '10.0.0.13', port: 1300, ttl: 0 });
    const d = await gw.request('DELETE', instancePath('del', 'd-1'));
    assert.equal(d.status, 204);
    assert.equal(d.text, '');
    assert.ok(Number(d.headers.get('x-registry-revision')) > reg.json.revision);
    assert.equal((await gw.request('GET', instancePath('del', 'd-1'))).status, 404);
    assert.equal((await gw.request('DELETE', instancePath('del', 'd-1'))).status, 404);
    const again = await gw.request('PUT', instancePath('del', 'd-1'), { address: '10.0.0.13', port: 1300, ttl: 0 });
    assert.ok(Date.parse(again.json.registeredAt) >= Date.parse(reg.json.registeredAt));
  });

  it('a ttl-2 instance expires by itself and its heartbeat then answers 404', async () => {
    const r = await gw.request('PUT', instancePath('exp', 'e-1'), { address: '10.0.0.14', port: 1400, ttl: 2 });
    assert.ok(r.json.ttl >= 2);
    await eventually(async () => (await gw.request('GET', instancePath('exp', 'e-1'))).status === 404, (r.json.ttl + 6) * 1000, 'expiry');
    assert.equal((await gw.request('PUT', `${instancePath('exp', 'e-1')}/heartbeat`)).status, 404);
    assert.deepEqual((await gw.request('GET', '/services/exp')).json.instances, []);
  });

  it('heartbeats keep a ttl-2 instance alive well past its TTL', async () => {
    await gw.request('PUT', instancePath('exp', 'alive'), { address: '10.0.0.15', port: 1500, ttl: 2 });
    const start = Date.now();
    while (Date.now() - start < 5000) {
      await sleep(600);
      assert.equal((await gw.request('PUT', `${instancePath('exp', 'alive')}/heartbeat`)).status, 200);
    }
    assert.equal((await gw.request('GET', instancePath('exp', 'alive'))).status, 200);
  });

  it('a ttl:0 instance does not expire', async () => {
    await gw.request('PUT', instancePath('exp', 'forever'), { address: '10.0.0.16', port: 1600, ttl: 0 });
    await sleep(3000);
    assert.equal((await gw.request('GET', instancePath('exp', 'forever'))).status, 200);
  });

  it('batch registers and deregisters at one revision, all or nothing', async () => {
    await gw.request('PUT', instancePath('orders', 'old'), { address: '10.1.0.9', port: 7009, ttl: 0 });
    const b = await gw.request('POST', '/batch', {
      register: [
        { service: 'orders', id: 'o-1', address: '10.1.0.1', port: 7001, ttl: 0 },
        { service: 'billing', id: 'b-1', address: '10.1.0.3', port: 7003, ttl: 5 },
      ],
      deregister: [{ service: 'orders', id: 'old' }],
    });
    assert.equal(b.status, 200);
    assert.deepEqual(Object.keys(b.json).sort(), ['instances', 'revision']);
    assert.ok(b.json.instances.every((x: { revision: number }) => x.revision === b.json.revision));
    assert.equal(b.headers.get('x-registry-revision'), String(b.json.revision));
    assert.deepEqual(
      (await gw.request('GET', '/services/orders')).json.instances.map((x: { id: string }) => x.id),
      ['o-1'],
    );

    const bad = await gw.request('POST', '/batch', {
      register: [
        { service: 'atomic', id: 'a-1', address: '10.2.0.1', port: 7101, ttl: 0 },
        { service: 'atomic', id: 'a-2', address: '10.2.0.2', port: 70000, ttl: 0 },
      ],
    });
    assert.equal(bad.status, 400);
    const unknown = await gw.request('POST', '/batch', {
      register: [{ service: 'atomic', id: 'a-3', address: '10.2.0.3', port: 7103, ttl: 0 }],
      deregister: [
        { service: 'orders', id: 'o-1' },
        { service: 'orders', id: 'never' },
      ],
    });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.code, 'instance-not-found');
    assert.deepEqual((await gw.request('GET', '/services/atomic')).json.instances, []);
    assert.equal((await gw.request('GET', instancePath('orders', 'o-1'))).status, 200, 'o-1 survives the failed batch');
  });

  it('batch: 128 registrations pass, 129 operations (or 128 with a deregistration) are 400', async () => {
    const items = (n: number, svc: string) =>
      Array.from({ length: n }, (_, i) => ({ service: svc, id: `k-${i}`, address: '10.3.0.1', port: 1000 + i, ttl: 0 }));
    assert.equal((await gw.request('POST', '/batch', { register: items(128, 'bulk') })).status, 200);
    assert.equal((await gw.request('POST', '/batch', { register: items(129, 'bulk2') })).status, 400);
    const r = await gw.request('POST', '/batch', { register: items(127, 'bulk3'), deregister: [{ service: 'bulk', id: 'k-0' }] });
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 'invalid-request');
    assert.equal((await gw.request('GET', '/services/bulk')).json.instances.length, 128);
    assert.deepEqual((await gw.request('GET', '/services/bulk3')).json.instances, []);
  });

  it('GET /services lists names sorted with counts; filters narrow a service', async () => {
    await gw.request('PUT', instancePath('flt', 'a'), {
      address: '10.4.0.1',
      port: 1,
      tags: ['http', 'v2'],
      metadata: { zone: 'eu' },
      ttl: 0,
    });
    await gw.request('PUT', instancePath('flt', 'b'), {
      address: '10.4.0.2',
      port: 2,
      tags: ['http'],
      status: 'draining',
      metadata: { zone: 'us' },
      ttl: 0,
    });
    const list = await gw.request('GET', '/services');
    const names = list.json.services.map((s: { name: string }) => s.name);
    assert.deepEqual(names, [...names].sort());
    assert.deepEqual(
      list.json.services.find((s: { name: string }) => s.name === 'flt'),
      { name: 'flt', instances: 2 },
    );
    const ids = async (q: string) => (await gw.request('GET', `/services/flt?${q}`)).json.instances.map((x: { id: string }) => x.id);
    assert.deepEqual(await ids('tag=http'), ['a', 'b']);
    assert.deepEqual(await ids('tag=http&tag=v2'), ['a']);
    assert.deepEqual(await ids('status=draining'), ['b']);
    assert.deepEqual(await ids('meta.zone=eu'), ['a']);
    assert.deepEqual(await ids('consistent=true&tag=http'), ['a', 'b']);
  });

  if (store.kind === 'etcd') {
    it('etcd holds one key per instance at {prefix}/{service}/{id}, its value the record, each TTL instance on its own lease', async () => {
      await gw.request('PUT', instancePath('lay', 'l-1'), { address: '10.5.0.1', port: 1, ttl: 20 });
      await gw.request('PUT', instancePath('lay', 'l-2'), { address: '10.5.0.2', port: 2, ttl: 20 });
      await gw.request('PUT', instancePath('lay', 'l-3'), { address: '10.5.0.3', port: 3, ttl: 0 });
      const out = await store.etcd!.ctl(['get', '--prefix', `${gw.prefix}/lay/`, '-w', 'json']);
      const kvs = (parseBig(out).kvs as { key: string; value: string; lease?: number | string; mod_revision: number }[]).map((kv) => ({
        key: Buffer.from(kv.key, 'base64').toString(),
        value: JSON.parse(Buffer.from(kv.value, 'base64').toString()),
        lease: String(kv.lease ?? 0),
        modRevision: kv.mod_revision,
      }));
      assert.deepEqual(
        kvs.map((k) => k.key),
        ['l-1', 'l-2', 'l-3'].map((id) => `${gw.prefix}/lay/${id}`),
      );
      assert.equal(kvs[0]!.value.address, '10.5.0.1');
      assert.notEqual(kvs[0]!.lease, '0');
      assert.notEqual(kvs[1]!.lease, '0');
      assert.notEqual(kvs[0]!.lease, kvs[1]!.lease, 'each TTL instance has its own lease');
      assert.equal(kvs[2]!.lease, '0', 'a ttl:0 instance has no lease');
      const ttl = await store.etcd!.ctl(['lease', 'timetolive', BigInt(kvs[0]!.lease).toString(16), '-w', 'json']);
      assert.equal(JSON.parse(ttl)['granted-ttl'], 20);
      const g = await gw.request('GET', instancePath('lay', 'l-1'));
      assert.equal(g.json.revision, kvs[0]!.modRevision, 'revision is the mod_revision');
    });

    it('replacing an instance moves it to a new lease and revokes the old one', async () => {
      await gw.request('PUT', instancePath('lay', 'r-1'), { address: '10.5.1.1', port: 1, ttl: 20 });
      const lease = async () => {
        const out = parseBig(await store.etcd!.ctl(['get', `${gw.prefix}/lay/r-1`, '-w', 'json']));
        return String(out.kvs[0].lease);
      };
      const first = await lease();
      await gw.request('PUT', instancePath('lay', 'r-1'), { address: '10.5.1.1', port: 2, ttl: 20 });
      assert.notEqual(await lease(), first);
      await eventually(
        async () => {
          const info = JSON.parse(await store.etcd!.ctl(['lease', 'timetolive', BigInt(first).toString(16), '-w', 'json']));
          return info.ttl === -1;
        },
        3000,
        'old lease revoked',
      );
    });
  }
});

/**
 * The real etcd store, whose renewals a test can answer itself: with TTL 0, as an
 * etcd 3.4 leader waking from a stall does for a lease granted while it slept (it
 * has not applied the grant yet; soak/stale-renewal.ts shows it without the gateway).
 */
function storeWithRenewalHook(etcd: EtcdCluster, prefix: string): { store: Store; hook: RenewalHook } {
  const store = createStore(loadConfig({ ETCD_ENDPOINTS: etcd.endpoints.join(','), ETCD_PREFIX: prefix, LOG_LEVEL: 'silent' }));
  const hook: RenewalHook = { answer: undefined };
  const keepAlive: Store['keepAlive'] = async (lease) => (await hook.answer?.(store, lease)) ?? store.keepAlive(lease);
  const proxy = new Proxy(store, {
    get: (target, key) => {
      if (key === 'keepAlive') return keepAlive;
      const value: unknown = Reflect.get(target, key);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { store: proxy, hook };
}

/** Answers a renewal instead of the store (a TTL), or lets the store answer (undefined). */
interface RenewalHook {
  answer: ((store: Store, lease: string) => Promise<number | undefined>) | undefined;
}

/** The next `n` renewals answer TTL 0 whatever the lease; the rest go to the store. */
const calledGone = (n: number): RenewalHook['answer'] => {
  let left = n;
  return async () => (left-- > 0 ? 0 : undefined);
};

describe('heartbeats answered by an etcd member behind the others', () => {
  let etcd: EtcdCluster;
  let gw: TestGateway;
  let hook: RenewalHook;
  const leaseOf = async (id: string) => {
    const out = parseBig(await etcd.ctl(['get', `${gw.prefix}/behind/${id}`, '-w', 'json']));
    return out.kvs?.[0] ? String(out.kvs[0].lease) : undefined;
  };
  const register = async (id: string, ttl = 20) => {
    assert.equal((await gw.request('PUT', instancePath('behind', id), { address: '10.7.0.1', port: 80, ttl })).status, 201);
    const lease = await leaseOf(id);
    assert.ok(lease && lease !== '0', `${id} has a lease`);
    return lease;
  };
  const heartbeat = (id: string) => gw.request('PUT', `${instancePath('behind', id)}/heartbeat`);
  /** A heartbeat whose renewals `answer` sees first; later renewals go to the store again. */
  const heartbeatWith = async (id: string, answer: RenewalHook['answer']) => {
    hook.answer = answer;
    try {
      return await heartbeat(id);
    } finally {
      hook.answer = undefined;
    }
  };

  before(async () => {
    etcd = await startEtcd();
    const prefix = `/test-behind-${process.pid}`;
    const wrapped = storeWithRenewalHook(etcd, prefix);
    hook = wrapped.hook;
    gw = await startGateway({ etcd, prefix, deps: { store: wrapped.store } });
  });
  after(async () => {
    await gw?.close();
    await etcd?.close();
  });

  it('a renewal called gone while etcd still holds the instance under that lease is asked again: 200, not 404', async () => {
    const lease = await register('b-1');
    const r = await heartbeatWith('b-1', calledGone(1));
    assert.equal(r.status, 200, r.text);
    assert.equal(await leaseOf('b-1'), lease, 'the instance keeps its lease: nothing was registered again');
  });

  it('while the member stays behind the heartbeat is 503 (retry), the instance untouched; then 200 again', async () => {
    const lease = await register('b-2');
    const r = await heartbeatWith('b-2', calledGone(2));
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.code, 'store-unavailable', r.text);
    assert.equal(await leaseOf('b-2'), lease);
    assert.equal((await heartbeat('b-2')).status, 200);
  });

  it('a lease revoked while this gateway still has the instance answers 404 (the re-read finds nothing)', async () => {
    await register('b-3');
    // The revoke happens inside the renewal: the gateway's copy still holds the instance when it asks.
    const r = await heartbeatWith('b-3', async (store, lease) => {
      await store.revokeLease(lease);
      return undefined;
    });
    assert.equal(r.status, 404, r.text);
    assert.equal(r.json.code, 'instance-not-found', r.text);
    assert.equal(await leaseOf('b-3'), undefined);
  });
});
