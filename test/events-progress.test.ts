// Progress events (API.md "Events"): a quiet stream's id moves on, so a resume after
// compaction needs no snapshot; on a real etcd with two replicas.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type EtcdCluster, startEtcd, storeRevision } from './helpers/etcd.ts';
import { instanceBody as instance, startGateway, type TestGateway, uniquePrefix } from './helpers/gateway.ts';
import { changes, changesAtLeast, openSse, streamGroup } from './helpers/sse.ts';

let etcd: EtcdCluster;
before(async () => void (etcd = await startEtcd()));
after(() => etcd?.close());

describe('progress events', () => {
  const prefix = uniquePrefix('progress');
  const env = { SSE_KEEPALIVE_SECONDS: '1' };
  let a: TestGateway;
  let b: TestGateway;
  const { streams, open, closeAll } = streamGroup();
  let lastChange = 0;
  let progressId = 0;
  let later: ReturnType<typeof changes> = [];

  before(async () => {
    [a, b] = await Promise.all([startGateway({ etcd, prefix, env }), startGateway({ etcd, prefix, env })]);
  });
  after(async () => {
    closeAll();
    await Promise.all([a?.close(), b?.close()]);
  });

  test('a quiet subscriber gets a progress event while other services change, and resumes from it exactly', async () => {
    lastChange = (await a.request('PUT', '/services/quiet/instances/q1', instance('10.3.0.1', 80))).json.revision;
    const quiet = await open(a, '/services/quiet/events');
    const narrowed = await open(b, '/events?service=quiet');
    const snap = await quiet.waitFor((e) => e.event === 'snapshot');
    assert.ok(Number(snap.id) >= lastChange);
    let busy = 0;
    for (let i = 0; i < 5; i++)
      busy = (await a.request('PUT', `/services/busy/instances/b${i}`, instance('10.3.0.2', 80 + i))).json.revision;

    const progress = await quiet.waitFor(
      (e) => e.event === 'progress' && Number(e.id) >= busy,
      5000,
      'a progress event past the busy changes',
    );
    assert.deepEqual(JSON.parse(progress.data), { revision: Number(progress.id) });
    assert.ok(Number(progress.id) <= (await storeRevision(etcd)));
    const onB = await narrowed.waitFor(
      (e) => e.event === 'progress' && Number(e.id) >= busy,
      5000,
      'a progress event on the narrowed /events',
    );
    assert.deepEqual(JSON.parse(onB.data), { revision: Number(onB.id) });
    assert.ok(!changes(quiet).length, 'busy changes are not sent to the quiet subscriber');
    progressId = Number(progress.id);

    // After the progress id: changes in and out of scope.
    await a.request('PUT', '/services/busy/instances/b9', instance('10.3.0.2', 99));
    await a.request('PUT', '/services/quiet/instances/q2', instance('10.3.0.1', 81));
    await a.request('PUT', '/services/busy/instances/b0', instance('10.3.0.2', 80, { status: 'draining' }));
    await b.request('DELETE', '/services/quiet/instances/q1');
    later = await changesAtLeast(quiet, 2);
    assert.deepEqual(
      later.map((c) => [c.event, c.data.id, c.data.reason]),
      [
        ['register', 'q2', undefined],
        ['deregister', 'q1', 'deregistered'],
      ],
    );

    for (const s of [
      await open(a, '/services/quiet/events', String(progressId)),
      await open(b, `/events?service=quiet&lastEventId=${progressId}`),
    ]) {
      await changesAtLeast(s, 2);
      await sleep(200);
      assert.deepEqual(changes(s), later, `resume from the progress id on ${s.url}`);
      assert.ok(!s.events.some((e) => e.event === 'snapshot'));
    }
  });

  test('compaction past the last change id forces no reset when progress events kept the subscriber current', async () => {
    assert.ok(progressId > lastChange, 'needs the previous test');
    await etcd.compact(progressId);
    // A gateway started after the compaction has none of this in its ring: it replays from the store.
    const c = await startGateway({ etcd, prefix, env });
    try {
      const s = await openSse(`${c.base}/services/quiet/events`, { lastEventId: String(progressId) });
      streams.push(s);
      await changesAtLeast(s, 2);
      await sleep(200);
      assert.deepEqual(changes(s), later);
      assert.ok(!s.events.some((e) => e.event === 'snapshot'), 'no reset');
      // Without the progress event the subscriber's id would be its last change: compacted away.
      const stale = await openSse(`${c.base}/services/quiet/events`, { lastEventId: String(lastChange) });
      streams.push(stale);
      const reset = await stale.waitFor((e) => e.event === 'snapshot', 5000);
      assert.equal((JSON.parse(reset.data) as { reset?: boolean }).reset, true);
    } finally {
      await c.close();
    }
  });
});
