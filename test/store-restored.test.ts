// A restored store (API.md "Store full and store restored"): etcd restored from
// a snapshot, so its revision goes back under a running gateway. The gateway
// reloads, open streams get a reset snapshot, labels start again from the
// store's revisions, and a registration made after the restore shows.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { storeRevision } from './helpers/etcd.ts';
import { eventually, metricValue } from './helpers/gateway.ts';
import { restorableStore } from './helpers/restore.ts';
import { openSse } from './helpers/sse.ts';

const store = restorableStore();
const { register } = store;
const ids = (body: { instances: { id: string }[] }) => body.instances.map((x) => x.id).sort();
const json = (data: string) => JSON.parse(data) as Record<string, unknown>;

test('after a restore from a snapshot the gateway follows the store again and streams get a reset', async (t) => {
  const { gw } = store;
  await register('kept', 'a');
  await register('kept', 'b');
  await store.snapshot();
  const snapshotRevision = await storeRevision(store.etcd);

  // The lost future: changes made after the snapshot.
  for (let i = 0; i < 30; i++) await register('lost', `x${i}`);
  const lostRevision = await register('kept', 'c');
  const all = await openSse(`${gw.base}/events`);
  const one = await openSse(`${gw.base}/services/kept/events`);
  for (const s of [all, one]) {
    assert.equal((await s.nextEvent(10_000, 'the first snapshot')).event, 'snapshot');
    t.after(() => s.close());
  }
  const reloads = await metricValue(gw, 'discovery_watch_restarts_total');

  await store.restore();
  assert.equal(await storeRevision(store.etcd), snapshotRevision);

  for (const s of [all, one]) {
    const reset = await s.waitFor((e) => e.event === 'snapshot', 30_000, 'a reset snapshot after the restore');
    const data = json(reset.data);
    assert.equal(data.reset, true);
    assert.ok((data.revision as number) < lostRevision, 'the reset is labelled with the store revision, not the lost one');
  }
  assert.ok((await metricValue(gw, 'discovery_watch_restarts_total')) > reloads);

  const kept = await gw.request('GET', '/services/kept');
  assert.equal(kept.status, 200);
  assert.deepEqual(ids(kept.json), ['a', 'b']);
  assert.ok(kept.json.revision <= snapshotRevision, `labelled ${kept.json.revision}, from the lost future`);
  assert.equal((await gw.request('GET', '/services/lost')).json.instances?.length ?? 0, 0);

  // A registration after the restore reuses revisions the gateway saw before it: it must show.
  const after = await register('kept', 'd');
  assert.ok(after < lostRevision, `revision ${after} reuses the lost range`);
  assert.deepEqual(ids((await gw.request('GET', '/services/kept')).json), ['a', 'b', 'd']);
  for (const s of [all, one]) {
    const ev = await s.waitFor((e) => e.event === 'register' && json(e.data).id === 'd', 10_000, 'the new registration');
    assert.equal(ev.id, String(after));
  }
  await eventually(async () => (await gw.request('GET', '/health')).status === 200, 10_000, 'ready again');
});
