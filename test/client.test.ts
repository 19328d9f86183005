// The typed client (etcd-discovery-gateway/client) against real gateways, on both stores:
// registration kept alive and closed, conditional reads, local weighted pick, a watch that
// resumes on another replica without gap or duplicate, and read-your-writes across replicas.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DiscoveryClient,
  GatewayRefusedError,
  GatewayUnreachableError,
  Session,
  type RegistrationEvent,
  type WatchEvent,
} from '../src/client/index.ts';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { eventually, metricValue, startGateway, type TestGateway } from './helpers/gateway.ts';
import { freePort } from './helpers/ports.ts';
import { createStore } from '../src/registry/index.ts';
import { loadConfig } from '../src/config.ts';
import type { Store, WatchBatch } from '../src/registry/store/store.ts';

const instance = (service: string, id: string, extra: Record<string, unknown> = {}) => ({
  service,
  id,
  address: '10.0.0.1',
  port: 8080,
  ...extra,
});

// Checked by `npm run typecheck`: GET /services and GET /services/{name}/instances/{id} have no
// consistent read (API.md), so the client must not offer one that the gateway would ignore.
// @ts-expect-error not an option of services()
export const _noConsistentList: Parameters<DiscoveryClient['services']>[0] = { consistent: true };
// @ts-expect-error not an option of instance()
export const _noConsistentInstance: Parameters<DiscoveryClient['instance']>[2] = { consistent: true };

const heartbeatsOk = (gw: TestGateway) => metricValue(gw, 'discovery_heartbeats_total', '{result="ok"}');

/** Collects a watch's events in the background; `until` waits for a condition on them. */
function collect(events: AsyncIterable<WatchEvent>) {
  const seen: WatchEvent[] = [];
  void (async () => {
    for await (const event of events) seen.push(event);
  })().catch(() => undefined);
  return { seen, until: (ok: (seen: WatchEvent[]) => boolean, what: string) => eventually(async () => ok(seen), 10_000, what) };
}

// One etcd for the whole file; every gateway has a key prefix of its own.
let etcd: EtcdCluster;
before(async () => {
  etcd = await startEtcd();
});
after(async () => etcd?.close());

for (const store of ['memory', 'etcd'] as const) {
  describe(`client on the ${store} store`, { timeout: 60_000 }, () => {
    let gw: TestGateway;
    let client: DiscoveryClient;

    before(async () => {
      gw = await startGateway(store === 'etcd' ? { etcd } : {});
      client = new DiscoveryClient({ gateways: gw.base });
    });
    after(async () => {
      client.close();
      await gw.close();
    });

    it('register heartbeats, registers again after the instance was deleted behind its back, and close drains then deregisters', async () => {
      const watch = client.watch('orders');
      const changes = collect(watch);
      await watch.ready();
      const events: RegistrationEvent[] = [];
      const registration = client.register(instance('orders', 'o-1', { ttl: 3 }), { onEvent: (e) => events.push(e) });
      const record = await registration.registered();
      assert.equal(record.id, 'o-1');
      assert.equal(registration.state, 'registered');

      const before = await heartbeatsOk(gw);
      await eventually(async () => (await heartbeatsOk(gw)) >= before + 2, 10_000, 'two heartbeats');

      assert.equal((await gw.request('DELETE', '/services/orders/instances/o-1')).status, 204);
      await eventually(async () => events.some((e) => e.type === 'registered' && e.again), 10_000, 're-registration');
      assert.ok((await client.instance('orders', 'o-1')) !== undefined);

      assert.equal(await registration.close(), true);
      assert.equal(registration.state, 'closed');
      assert.equal(await client.instance('orders', 'o-1'), undefined);
      await changes.until((seen) => seen.some((e) => e.type === 'deregister' && e.reason === 'deregistered'), 'the deregistration');
      const last = changes.seen.flatMap((e) => (e.type === 'snapshot' ? [] : [[e.type, e.instance?.status]])).slice(-2);
      assert.deepEqual(last, [
        ['update', 'draining'],
        ['deregister', 'draining'],
      ]);
      assert.deepEqual(
        events.filter((e) => e.type !== 'unreachable' && e.type !== 'reachable').map((e) => e.type), // a loaded machine may time a call out
        ['registered', 'registered', 'status', 'deregistered'],
      );
      watch.close();
    });

    it('discover reuses an unchanged answer (304) and sees the next change', async () => {
      await gw.request('PUT', '/services/catalog/instances/c-1', { address: '10.0.0.2', port: 80, tags: ['http'] });
      const first = await client.discover('catalog', { tags: ['http'] });
      const second = await client.discover('catalog', { tags: ['http'] });
      assert.equal(second, first, 'the 304 answer reuses the cached view');
      await gw.request('PUT', '/services/catalog/instances/c-2', { address: '10.0.0.3', port: 80, tags: ['http'] });
      const third = await client.discover('catalog', { tags: ['http'] });
      assert.deepEqual(
        third.instances.map((i) => i.id),
        ['c-1', 'c-2'],
      );
      assert.ok(third.revision > first.revision);
    });

    it('pick answers locally in proportion to the weights, never a down or weight-0 instance', async () => {
      const weights: Record<string, number> = { a: 1, b: 2, c: 7 };
      for (const [id, weight] of Object.entries(weights))
        await gw.request('PUT', `/services/search/instances/${id}`, { address: '10.0.0.4', port: 80, weight });
      await gw.request('PUT', '/services/search/instances/zero', { address: '10.0.0.4', port: 81, weight: 0 });
      await gw.request('PUT', '/services/search/instances/down', { address: '10.0.0.4', port: 82, status: 'down', weight: 50 });
      const watch = client.watch('search');
      await watch.ready();
      const counts: Record<string, number> = {};
      const draws = 20_000;
      for (let n = 0; n < draws; n++) {
        const id = watch.pick('search')!.id;
        counts[id] = (counts[id] ?? 0) + 1;
      }
      assert.deepEqual(Object.keys(counts).sort(), ['a', 'b', 'c']);
      // Chi-square with 2 degrees of freedom: 13.8 is p = 0.001; 30 leaves room and still catches a wrong weighting.
      const chiSquare = Object.entries(weights).reduce((sum, [id, w]) => {
        const expected = (draws * w) / 10;
        return sum + (counts[id]! - expected) ** 2 / expected;
      }, 0);
      assert.ok(chiSquare < 30, `chi-square ${chiSquare.toFixed(1)} for ${JSON.stringify(counts)}`);
      assert.equal(watch.pick('search', { tags: ['missing'] }), undefined);
      assert.equal((await client.pick('search'))?.service, 'search');
      watch.close();
    });
  });
}

/** The real etcd store, with every watch delivery held back `lagMs`: a replica whose view lags behind the store. */
function laggingStore(etcd: EtcdCluster, prefix: string, lagMs: number): Store {
  const store = createStore(loadConfig({ ETCD_ENDPOINTS: etcd.endpoints.join(','), ETCD_PREFIX: prefix, LOG_LEVEL: 'silent' }));
  const watch: Store['watch'] = (watchPrefix, fromRevision, handlers) =>
    store.watch(watchPrefix, fromRevision, {
      ...handlers,
      onBatch: (batch: WatchBatch) => void setTimeout(() => handlers.onBatch(batch), lagMs),
    });
  return new Proxy(store, {
    get: (target, key) =>
      key === 'watch' ? watch : typeof target[key as keyof Store] === 'function' ? (target as any)[key].bind(target) : (target as any)[key], // eslint-disable-line @typescript-eslint/no-explicit-any
  });
}

describe('client across two gateway replicas on one etcd', { timeout: 60_000 }, () => {
  let a: TestGateway;
  let b: TestGateway;

  before(async () => {
    a = await startGateway({ etcd });
    b = await startGateway({ etcd, prefix: a.prefix, deps: { store: laggingStore(etcd, a.prefix, 100) } });
  });
  after(async () => {
    await b.close();
    await a.close().catch(() => undefined);
  });

  it('reads its own writes through another replica that lags behind, 50 times in a row', async () => {
    const session = new Session();
    const writer = new DiscoveryClient({ gateways: a.base, session });
    const reader = new DiscoveryClient({ gateways: b.base, session });
    const registrations = [];
    for (let n = 0; n < 50; n++) {
      const registration = writer.register(instance('ryw', `i-${n}`, { ttl: 30 }));
      registrations.push(registration);
      await registration.registered();
      const view = await reader.discover('ryw');
      assert.ok(view.revision >= session.revision, `view ${view.revision} older than the write ${session.revision}`);
      assert.ok(
        view.instances.some((i) => i.id === `i-${n}`),
        `write ${n} not read back`,
      );
    }
    await Promise.all(registrations.map((r) => r.close({ drain: false })));
  });

  it('watch resumes on the next gateway with Last-Event-ID: every write once, in order, none missing', async () => {
    const client = new DiscoveryClient({ gateways: [a.base, b.base] });
    const watch = client.watch(undefined, { services: ['resume'], backoffMinMs: 200 });
    const changes = collect(watch);
    await watch.ready();
    const written: number[] = [];
    const write = async (gw: TestGateway, method: string, id: string) => {
      const r = await gw.request(
        method,
        `/services/resume/instances/${id}`,
        method === 'PUT' ? { address: '10.0.0.5', port: 80 } : undefined,
      );
      assert.ok(r.status < 300, `${method} ${id}: ${r.status}`);
      written.push(Number(r.headers.get('x-registry-revision')));
    };
    for (let n = 0; n < 5; n++) await write(a, 'PUT', `r-${n}`);
    await changes.until((seen) => seen.length >= 6, 'the first writes');
    await a.close(); // ends the stream: the watch moves on to b
    for (let n = 5; n < 10; n++) await write(b, 'PUT', `r-${n}`);
    await write(b, 'DELETE', 'r-0');
    await changes.until((seen) => seen.length >= 1 + written.length, 'the writes made while it moved');
    const revisions = changes.seen.filter((e) => e.type !== 'snapshot').map((e) => e.revision);
    assert.deepEqual(revisions, written);
    assert.equal(changes.seen.filter((e) => e.type === 'snapshot').length, 1, 'resumed, not restarted');
    assert.deepEqual(
      watch.instances('resume').map((i) => i.id),
      ['r-1', 'r-2', 'r-3', 'r-4', 'r-5', 'r-6', 'r-7', 'r-8', 'r-9'],
    );
    watch.close();
  });
});

describe('client with access control and compaction', { timeout: 60_000 }, () => {
  let gw: TestGateway;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'client-auth-'));
    const tokensFile = join(dir, 'tokens.json');
    await writeFile(tokensFile, JSON.stringify({ tokens: [{ name: 'shop', token: 'shop-secret', read: ['shop*'], write: ['shop'] }] }));
    // Revisions from before the gateway started: a resume from them needs etcd's history.
    for (let n = 0; n < 3; n++) await etcd.ctl(['put', '/elsewhere', String(n)]);
    gw = await startGateway({ etcd, env: { AUTH_TOKENS_FILE: tokensFile } });
  });
  after(async () => {
    await gw?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('sends its token on every call and on the change stream; refusals carry the problem code', async () => {
    const client = new DiscoveryClient({ gateways: gw.base, token: 'shop-secret' });
    const watch = client.watch('shop');
    await watch.ready();
    const registration = client.register(instance('shop', 's-1'));
    await registration.registered();
    await eventually(async () => watch.instances('shop').length === 1, 10_000, 'the watch to see the registration');

    const stranger = new DiscoveryClient({ gateways: gw.base });
    await assert.rejects(
      stranger.discover('shop'),
      (err: unknown) => err instanceof GatewayRefusedError && err.status === 401 && err.code === 'unauthorized',
    );
    await assert.rejects(
      client.discover('orders'),
      (err: unknown) => err instanceof GatewayRefusedError && err.status === 403 && err.code === 'forbidden',
    );
    const refused = stranger.register(instance('shop', 's-2'));
    await assert.rejects(refused.registered(), (err: unknown) => err instanceof GatewayRefusedError && err.code === 'unauthorized');
    assert.equal(refused.state, 'refused');
    const deniedWatch = stranger.watch('shop');
    await assert.rejects(deniedWatch.ready(), (err: unknown) => err instanceof GatewayRefusedError && err.code === 'unauthorized');

    assert.equal(await registration.close(), true);
    watch.close();
  });

  it('a resume the gateway can no longer replay (compacted) surfaces a reset snapshot that replaces the view', async () => {
    const client = new DiscoveryClient({ gateways: gw.base, token: 'shop-secret' });
    const auth = { authorization: 'Bearer shop-secret' };
    await gw.request('PUT', '/services/shop/instances/old', { address: '10.0.0.8', port: 1 }, auth);
    await gw.request('DELETE', '/services/shop/instances/old', undefined, auth);
    const last = await gw.request('PUT', '/services/shop/instances/new', { address: '10.0.0.8', port: 2 }, auth);
    await etcd.compact(Number(last.headers.get('x-registry-revision')));
    // Revision 1 is older than what this gateway keeps in memory: it must ask etcd, which compacted it.
    const watch = client.watch('shop', { after: 1 });
    const events = watch[Symbol.asyncIterator]();
    const first = (await events.next()).value as WatchEvent;
    assert.equal(first.type, 'snapshot');
    assert.equal(first.type === 'snapshot' && first.reset, true);
    assert.deepEqual(
      watch.instances('shop').map((i) => i.id),
      ['new'],
    );
    watch.close();
  });
});

describe('client with no gateway answering', { timeout: 30_000 }, () => {
  it('pick() gives up after the client timeout instead of waiting forever for a first snapshot', async () => {
    const client = new DiscoveryClient({ gateways: `http://127.0.0.1:${await freePort()}`, timeoutMs: 500 });
    try {
      const started = Date.now();
      await assert.rejects(client.pick('search'), GatewayUnreachableError);
      assert.ok(Date.now() - started < 10_000, 'the rejection comes near the 0.5 s timeout');
    } finally {
      client.close();
    }
  });
});
