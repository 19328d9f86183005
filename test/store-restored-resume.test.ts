// A subscriber that was away while the store was restored from a snapshot
// comes back with the last id it got, from the old store. Once the restored
// store's revisions have passed that id, the same number names another change:
// the gateway must answer with a reset snapshot, not replay the restored
// store's changes after it as if they followed. Found by the soak
// (store-restore, seeds 2902 and 106): a resume with id 53 on a gateway whose
// restored store was at 60 replayed 55, 88, 101… with no reset.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventually } from './helpers/gateway.ts';
import { restorableStore } from './helpers/restore.ts';
import { openSse } from './helpers/sse.ts';

const store = restorableStore();
const register = (id: string) => store.register('web', id);

test('a Last-Event-ID from before a restore gets a reset snapshot, also once the restored store has passed it', async () => {
  const { gw } = store;
  await register('kept');
  await store.snapshot();
  for (let i = 0; i < 5; i++) await register(`lost-${i}`);
  const oldId = await register('lost-last');

  await store.restore();
  await eventually(
    async () => ((await gw.request('GET', '/health')).json?.store?.appliedRevision ?? Infinity) < oldId,
    30_000,
    'the gateway to follow the restored store',
  );
  // The restored store reuses the old numbers, then passes the old id.
  let revision = 0;
  for (let i = 0; revision <= oldId + 1; i++) revision = await register(`new-${i}`);

  const resumed = await openSse(`${gw.base}/services/web/events`, { lastEventId: String(oldId) });
  try {
    const first = await resumed.waitFor((e) => e.event !== 'progress', 10_000, 'the first event of the resumed stream');
    assert.equal(first.event, 'snapshot', `resumed with ${first.event} ${first.data}`);
    const data = JSON.parse(first.data) as { reset: boolean; services: Record<string, { id: string }[]> };
    assert.equal(data.reset, true);
    const ids = (data.services.web ?? []).map((x) => x.id);
    assert.ok(ids.includes('kept') && ids.includes('new-0') && !ids.includes('lost-last'), `instances ${ids.join(',')}`);
  } finally {
    resumed.close();
  }
});
