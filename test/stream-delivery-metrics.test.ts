// Where a change's delivery time goes, as /metrics tells it
// (docs/operations-observability.md): the gateway's watch catching up with its
// own write, and the fan-out from the watch to the change-stream connections.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type EtcdCluster, startEtcd } from './helpers/etcd.ts';
import { instanceBody, metricValue, startGateway, type TestGateway, uniquePrefix } from './helpers/gateway.ts';
import { changesAtLeast, streamGroup } from './helpers/sse.ts';

let etcd: EtcdCluster;
before(async () => void (etcd = await startEtcd()));
after(() => etcd?.close());

describe('delivery delay metrics', () => {
  let gw: TestGateway;
  const { open, closeAll } = streamGroup();
  before(async () => void (gw = await startGateway({ etcd, prefix: uniquePrefix('delivery') })));
  after(async () => {
    closeAll();
    await gw?.close();
  });

  test('a write may count in the watch lag, a renewal never, and its change handed to a stream counts in the delivery time', async () => {
    const stream = await open(gw, '/services/timed/events');
    await stream.waitFor((e) => e.event === 'snapshot');
    const watchedBefore = await metricValue(gw, 'discovery_watch_lag_seconds_count');
    const deliveredBefore = await metricValue(gw, 'discovery_stream_delivery_seconds_count');

    for (let i = 0; i < 3; i++) {
      const r = await gw.request('PUT', `/services/timed/instances/t${i}`, instanceBody('10.9.0.1', 8000 + i));
      assert.equal(r.status, 201, r.text);
    }
    await changesAtLeast(stream, 3);

    const watched = await metricValue(gw, 'discovery_watch_lag_seconds_count');
    // A write counts only when its answer came before the watch had it (a race on one etcd).
    assert.ok(
      watched >= watchedBefore && watched <= watchedBefore + 3,
      `at most one observation per write (${watchedBefore} → ${watched})`,
    );
    const renewed = await gw.request('PUT', '/services/timed/instances/t0/heartbeat');
    assert.equal(renewed.status, 200, renewed.text);
    assert.equal(await metricValue(gw, 'discovery_watch_lag_seconds_count'), watched, 'a renewal writes nothing: no observation');
    const delivered = await metricValue(gw, 'discovery_stream_delivery_seconds_count');
    assert.ok(delivered >= deliveredBefore + 3, `one observation per watch batch at least (${deliveredBefore} → ${delivered})`);
    // Nothing waits on a loopback stream that reads: every fan-out is in a bucket of seconds or less.
    assert.equal(await metricValue(gw, 'discovery_stream_delivery_seconds_bucket', '{le="10"}'), delivered);
  });
});
