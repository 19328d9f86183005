// Cause: the SSE sink judged "too far behind" by the bytes queued after writing the
// chunk at hand, so one change set larger than SSE_BUFFER_BYTES (a batch of big
// records) closed every stream, healthy ones included, and a resume replayed the
// same chunk and was closed again, forever. Now only bytes left from earlier writes count.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MemoryStore } from '../../src/registry/store/memory.ts';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.ts';
import { startGateway } from '../helpers/gateway.ts';
import { openSse } from '../helpers/sse.ts';

for (const kind of ['memory', 'etcd'] as const) {
  describe(`a change set larger than SSE_BUFFER_BYTES (${kind} store)`, () => {
    let etcd: EtcdCluster | undefined;
    before(async () => {
      if (kind === 'etcd') etcd = await startEtcd();
    });
    after(async () => etcd?.close());

    it('reaches a reading subscriber and a resuming one without closing either', async (t) => {
      const gw = await startGateway({
        etcd,
        env: { SSE_BUFFER_BYTES: '65536' },
        deps: kind === 'memory' ? { store: new MemoryStore() } : undefined,
      });
      t.after(() => gw.close());
      const live = await openSse(`${gw.base}/events`);
      t.after(() => live.close());
      const snap = await live.nextEvent();
      assert.equal(snap.event, 'snapshot');

      // 20 records of ~30 KiB in one transaction: ~600 KiB in one write, ten times the buffer.
      const metadata = Object.fromEntries(Array.from({ length: 60 }, (_, k) => [`k${k}`, 'x'.repeat(500)]));
      const register = Array.from({ length: 20 }, (_, i) => ({
        service: 'big',
        id: `i${i}`,
        address: '10.0.0.1',
        port: 80,
        ttl: 0,
        metadata,
      }));
      const r = await gw.request('POST', '/batch', { register });
      assert.equal(r.status, 200, r.text);
      await live.waitFor((e) => e.id === String(r.json.revision) && JSON.parse(e.data).id === 'i19', 5000, 'the whole change set');
      assert.ok(live.isOpen, `the reading stream was closed (${live.endReason})`);

      const resumed = await openSse(`${gw.base}/events`, { lastEventId: snap.id });
      t.after(() => resumed.close());
      for (let i = 0; i < 20; i++) assert.equal(JSON.parse((await resumed.nextEvent()).data).id, `i${i}`);
      assert.ok(resumed.isOpen, `the resumed stream was closed (${resumed.endReason})`);
    });
  });
}
