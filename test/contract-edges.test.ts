// API.md "Scale and faults": minRevision ahead of the store, blocking queries that never
// go back, conditional reads on store reads. On a real etcd and on the embedded store.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type EtcdCluster, startEtcd } from './helpers/etcd.ts';
import { type Answer, eventually, instanceBody as instance, startGateway, type TestGateway, uniquePrefix } from './helpers/gateway.ts';

let etcd: EtcdCluster;
before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  await etcd?.close();
});

const revisionOf = (r: Answer) => Number(r.headers.get('x-registry-revision'));

for (const kind of ['etcd', 'memory'] as const) {
  describe(`contract edges (${kind} store)`, () => {
    // Replicas and a lagging watch exist only over etcd (the embedded store lives in one process).
    const etcdOnly = kind === 'etcd' ? test : undefined;
    let gw: TestGateway;
    let other: TestGateway | undefined;
    const prefix = uniquePrefix('edges');
    before(async () => {
      gw = await startGateway(kind === 'etcd' ? { etcd, prefix } : {});
      if (kind === 'etcd') other = await startGateway({ etcd, prefix });
    });
    after(async () => Promise.all([gw?.close(), other?.close()]));

    const put = async (service: string, id: string, port = 1000) => {
      const r = await gw.request('PUT', `/services/${service}/instances/${id}`, instance('10.3.0.1', port, { ttl: 0 }));
      assert.ok(r.status === 201 || r.status === 200, r.text);
      return revisionOf(r);
    };

    test('minRevision the store has not reached is 504 revision-not-reached with Retry-After, after a bounded wait', async () => {
      const now = await put('ahead', 'a');
      const wanted = now + 1000;
      const t0 = Date.now();
      const answers = await Promise.all(
        ['/services/ahead', '/services', '/services/ahead/instances/a'].map((path) => gw.request('GET', `${path}?minRevision=${wanted}`)),
      );
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 2500 && elapsed < 10_000, `answered after ${elapsed} ms`);
      for (const r of answers) {
        assert.equal(r.status, 504, r.text);
        assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);
        assert.equal(r.json.code, 'revision-not-reached');
        assert.equal(r.headers.get('retry-after'), '1');
        assert.equal(r.headers.get('etag'), null, 'no view is labelled');
      }
    });

    test('minRevision one ahead is answered as soon as the store reaches it, with that change', async () => {
      const now = await put('soon', 'a');
      const pending = Promise.all([
        gw.request('GET', `/services/soon?minRevision=${now + 1}`),
        gw.request('GET', `/services?minRevision=${now + 1}`),
      ]);
      const written = await put('soon', 'b', 1001);
      const [one, all] = await pending;
      assert.equal(one.status, 200, one.text);
      assert.deepEqual(
        one.json.instances.map((x: { id: string }) => x.id),
        ['a', 'b'],
      );
      assert.ok(one.json.revision >= now + 1 && one.json.revision <= written);
      assert.equal(all.status, 200, all.text);
      assert.ok(all.json.revision >= now + 1);
    });

    test('a blocking query whose index is ahead of this gateway holds through changes at or below index', async () => {
      const first = await put('hold', 'i0');
      // A client that read a replica further on than this one, by three revisions.
      const index = first + 3;
      let answered: Answer | undefined;
      const blocking = gw.request('GET', `/services/hold?index=${index}&wait=30s`).then((r) => (answered = r));
      let written = first;
      for (let i = 1; written < index; i++) {
        written = await put('hold', `i${i}`, 1000 + i);
        const seen = await gw.request('GET', '/services/hold');
        assert.equal(seen.json.revision, written, 'the change is applied here');
        assert.equal(answered, undefined, `answered at revision ${answered?.json?.revision}, not above index ${index}`);
      }
      const past = await put('hold', 'last', 2000);
      const r = await blocking;
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.revision, past);
      assert.ok(r.json.revision > index);
      assert.ok(r.json.instances.some((x: { id: string }) => x.id === 'last'));
    });

    test('a blocking query still ends at its wait, with the latest view, when the label never passes index', async () => {
      const first = await put('waitend', 'a');
      const t0 = Date.now();
      const blocking = gw.request('GET', `/services/waitend?index=${first + 1000}&wait=1s`);
      const written = await put('waitend', 'b', 1001);
      const r = await blocking;
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 950, `answered after ${elapsed} ms, before its wait`);
      assert.equal(r.status, 200);
      assert.equal(r.json.revision, written);
    });

    test('consistent=true answers 304 for the current ETag, which unrelated writes do not move', async () => {
      await put('cond', 'a');
      const cached = await gw.request('GET', '/services/cond');
      const etag = cached.headers.get('etag')!;
      const consistent = await gw.request('GET', '/services/cond?consistent=true');
      assert.equal(consistent.status, 200);
      assert.equal(consistent.headers.get('etag'), etag, 'a store read is labelled as the cache labels the same state');
      assert.deepEqual(consistent.json, cached.json);

      await put('unrelated', 'x');
      for (const inm of [etag, `W/${etag}`, `"1", ${etag}`]) {
        const r = await gw.request('GET', '/services/cond?consistent=true', undefined, { 'if-none-match': inm });
        assert.equal(r.status, 304, `If-None-Match: ${inm}`);
        assert.equal(r.headers.get('etag'), etag);
        assert.equal(r.text, '');
      }

      // A change (here a delete: the state it leaves is labelled with the delete, not an older put) moves it.
      const del = await gw.request('DELETE', '/services/cond/instances/a');
      assert.equal(del.status, 204);
      const after = await gw.request('GET', '/services/cond?consistent=true', undefined, { 'if-none-match': etag });
      assert.equal(after.status, 200);
      assert.deepEqual(after.json.instances, []);
      assert.equal(revisionOf(after), revisionOf(del));
      assert.equal(after.headers.get('etag'), (await gw.request('GET', '/services/cond')).headers.get('etag'));
      await put('unrelated', 'y');
      const again = await gw.request('GET', '/services/cond?consistent=true', undefined, { 'if-none-match': after.headers.get('etag')! });
      assert.equal(again.status, 304, 'an emptied service keeps its label');

      // A service nobody registered: the same label as the cache's, stable too.
      const unknown = await gw.request('GET', '/services/nobody?consistent=true');
      assert.equal(unknown.headers.get('etag'), (await gw.request('GET', '/services/nobody')).headers.get('etag'));
    });

    etcdOnly?.('a minRevision read answered from the store, past a lagging watch, gives 304 for its ETag', async () => {
      const lagging = await startGateway({ etcd, prefix });
      try {
        await put('still', 'a');
        const seen = await put('moving', 'a');
        assert.equal((await lagging.request('GET', `/services/moving?minRevision=${seen}`)).json.instances.length, 1);
        const stillTag = (await lagging.request('GET', '/services/still')).headers.get('etag')!;
        await lagging.app.registryRoot.sync.close(); // from here on its copy falls behind the store
        const moved = await put('moving', 'b', 1001);
        const [fallback, conditional, unchanged] = await Promise.all([
          lagging.request('GET', `/services/moving?minRevision=${moved}`),
          lagging.request('GET', `/services/moving?minRevision=${moved}`, undefined, { 'if-none-match': `"${moved}"` }),
          lagging.request('GET', `/services/still?minRevision=${moved}`, undefined, { 'if-none-match': stillTag }),
        ]);
        assert.equal(fallback.status, 200, fallback.text);
        assert.deepEqual(
          fallback.json.instances.map((x: { id: string }) => x.id),
          ['a', 'b'],
        );
        assert.equal(revisionOf(fallback), moved, 'a change the cache has not seen: labelled with the read, as a cold load');
        assert.equal(conditional.status, 304);
        assert.equal(unchanged.status, 304, 'a service the cache holds as the store does keeps its label');
        assert.equal(unchanged.headers.get('etag'), stillTag);
      } finally {
        await lagging.close();
      }
    });

    etcdOnly?.('replicas agree on the ETag of a consistent read', async () => {
      const rev = await put('agree', 'a');
      await put('agree', 'b', 1001);
      const [here, there] = await Promise.all([
        gw.request('GET', '/services/agree?consistent=true'),
        other!.request('GET', `/services/agree?consistent=true&minRevision=${rev + 1}`),
      ]);
      assert.equal(here.status, 200);
      assert.equal(there.status, 200);
      assert.equal(there.headers.get('etag'), here.headers.get('etag'));
      const r = await eventually(
        async () => {
          const a = await other!.request('GET', '/services/agree?consistent=true', undefined, {
            'if-none-match': here.headers.get('etag')!,
          });
          return a.status === 304 && a;
        },
        5000,
        'the other replica to answer 304',
      );
      assert.equal(r.status, 304);
    });
  });
}
