// A full store (API.md "Store full and store restored"): etcd's space quota
// exhausted, its NOSPACE alarm raised. Registrations and status changes answer
// 507 at once; heartbeats, deregistrations and reads go on; /health and /metrics
// name the alarm; after the operator's recovery (docs/operations.md) writes work
// again without a restart.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type EtcdCluster, startEtcd, storeRevision } from './helpers/etcd.ts';
import { eventually, instanceBody as instance, metricValue, startGateway, type TestGateway } from './helpers/gateway.ts';
import { openSse } from './helpers/sse.ts';

/** Changes enough to push the early revisions out of the ring (EVENT_HISTORY below): two batches of 110. */
async function pushOutOfTheRing(): Promise<void> {
  for (const round of [0, 1]) {
    const register = Array.from({ length: 110 }, (_, i) => ({ service: 'ring', id: `r${round}-${i}`, ...instance('10.9.1.1', 1000 + i) }));
    const res = await gw.request('POST', '/batch', { register });
    assert.equal(res.status, 200, res.text);
  }
}

/** A quota small enough to fill in a few puts. */
const QUOTA_BYTES = 1024 * 1024;
/** Filler values: large, rewritten over a few keys, so that compaction frees what they took. */
const FILLER = 'x'.repeat(100 * 1024);
const FILLER_KEYS = 3;

let etcd: EtcdCluster;
let gw: TestGateway;
before(async () => {
  etcd = await startEtcd({ quotaBackendBytes: QUOTA_BYTES });
  // A small event ring, so that a resume from before the test's batches must replay from the store.
  gw = await startGateway({ etcd, env: { EVENT_HISTORY: '100' } });
});
after(async () => {
  await gw?.close();
  await etcd?.close();
});

/** Something else fills the store: big values beside the gateway's keys until etcd refuses one. */
async function fillStore(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      await etcd.ctl(['put', `/filler/${i % FILLER_KEYS}`, FILLER]);
    } catch (err) {
      if (String(err).includes('database space exceeded')) return;
      throw err;
    }
  }
  throw new Error('the store never filled up');
}

/** The operator's recovery, as docs/operations.md gives it: compact, defragment, disarm. */
async function recoverSpace(): Promise<void> {
  await etcd.ctl(['compact', String(await storeRevision(etcd))]);
  await etcd.ctl(['defrag']);
  await etcd.ctl(['alarm', 'disarm']);
}

const nospace = () => metricValue(gw, 'discovery_store_alarm', '{alarm="nospace"}');

test('a full store refuses new data with 507, keeps serving the rest, and recovers without a restart', async () => {
  const kept = await gw.request('PUT', '/services/full/instances/kept', instance('10.9.0.1', 80, { ttl: 30 }));
  assert.equal(kept.status, 201, kept.text);
  const leaving = await gw.request('PUT', '/services/full/instances/leaving', instance('10.9.0.2', 80, { ttl: 30 }));
  assert.equal(leaving.status, 201, leaving.text);
  assert.equal(await nospace(), 0);

  await pushOutOfTheRing();
  await fillStore();

  // A resume from before the ring needs a replay from the store, whose fence write a full
  // store refuses: the subscriber still gets its stream, starting from a reset snapshot.
  const resumed = await openSse(`${gw.base}/services/full/events`, { lastEventId: String(kept.json.revision) });
  try {
    assert.equal(resumed.status, 200, resumed.body);
    await resumed.until('a snapshot', () => resumed.events.some((e) => e.event === 'snapshot'), 10_000);
    const snapshot = JSON.parse(resumed.events.find((e) => e.event === 'snapshot')!.data);
    assert.equal(snapshot.reset, true);
    assert.deepEqual(snapshot.services.full.map((x: { id: string }) => x.id).sort(), ['kept', 'leaving']);
  } finally {
    resumed.close();
  }

  // Refused at once, again and again: a full store is no outage, so no breaker opens on it.
  for (let i = 0; i < 5; i++) {
    const started = Date.now();
    const reg = await gw.request('PUT', `/services/full/instances/new-${i}`, instance('10.9.0.3', 80 + i));
    assert.equal(reg.status, 507, reg.text);
    assert.match(reg.headers.get('content-type') ?? '', /application\/problem\+json/);
    assert.equal(reg.json.code, 'store-full');
    assert.ok(Date.now() - started < 5000, 'answered at once, not after a deadline');
    const change = await gw.request('PUT', '/services/full/instances/kept/heartbeat', { status: 'draining' });
    assert.equal(change.status, 507, change.text);
    assert.equal(change.json.code, 'store-full');
    const batch = await gw.request('POST', '/batch', { register: [{ service: 'full', id: `b-${i}`, ...instance('10.9.0.4', 80) }] });
    assert.equal(batch.status, 507, batch.text);
  }

  const beat = await gw.request('PUT', '/services/full/instances/kept/heartbeat');
  assert.equal(beat.status, 200, beat.text);
  assert.equal(beat.json.status, 'up', 'the refused status change changed nothing');
  const consistent = await gw.request('GET', '/services/full?consistent=true');
  assert.equal(consistent.status, 200, consistent.text);
  assert.deepEqual(consistent.json.instances.map((x: { id: string }) => x.id).sort(), ['kept', 'leaving']);
  const gone = await gw.request('DELETE', '/services/full/instances/leaving');
  assert.ok(gone.status === 204 || gone.status === 200, gone.text);
  const cached = await gw.request('GET', '/services/full');
  assert.deepEqual(
    cached.json.instances.map((x: { id: string }) => x.id),
    ['kept'],
    'the watch still brings changes back',
  );

  const health = await gw.request('GET', '/health');
  assert.equal(health.status, 200, 'reads work: the gateway stays ready');
  assert.deepEqual(health.json.store.alarms, ['nospace']);
  assert.equal(await nospace(), 1);

  await recoverSpace();

  const again = await gw.request('PUT', '/services/full/instances/after', instance('10.9.0.5', 80));
  assert.equal(again.status, 201, again.text);
  const change = await gw.request('PUT', '/services/full/instances/kept/heartbeat', { status: 'draining' });
  assert.equal(change.status, 200, change.text);
  await eventually(
    async () => (await gw.request('GET', '/health')).json.store.alarms === undefined && (await nospace()) === 0,
    10_000,
    'the alarm to clear in /health and /metrics',
  );
});
