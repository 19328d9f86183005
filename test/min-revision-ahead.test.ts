// A burst of reads with a minRevision from the future (API.md "Hostile clients"):
// each is a 504 revision-not-reached, and the whole burst costs the store one cheap
// revision check, never a read of the service or of the whole prefix.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { instanceBody, metricValue, startGateway, type TestGateway } from './helpers/gateway.ts';

const ROUND_TRIPS = 'discovery_store_request_duration_seconds_count';

describe('minRevision ahead of the store', () => {
  let gw: TestGateway;
  before(async () => void (gw = await startGateway()));
  after(() => gw?.close());

  const storeRequests = async () => ({
    range: await metricValue(gw, ROUND_TRIPS, '{op="range"}'),
    get: await metricValue(gw, ROUND_TRIPS, '{op="get"}'),
  });

  it('60 concurrent reads share one revision check and read no service and no prefix', async () => {
    const put = await gw.request('PUT', '/services/ahead/instances/a', instanceBody('10.0.0.1', 80, { ttl: 0 }));
    assert.equal(put.status, 201);
    const ahead = put.json.revision + 1_000_000;
    const paths = ['/services/ahead', '/services', '/services/ahead/instances/a'];

    for (let burst = 0; burst < 2; burst++) {
      const before = await storeRequests();
      const answers = await Promise.all(
        Array.from({ length: 60 }, (_, i) => gw.request('GET', `${paths[i % paths.length]}?minRevision=${ahead}`)),
      );
      for (const r of answers) {
        assert.equal(r.status, 504, r.text);
        assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);
        assert.equal(r.json.code, 'revision-not-reached');
        assert.equal(r.headers.get('retry-after'), '1');
      }
      const spent = await storeRequests();
      assert.equal(spent.range - before.range, 0, `burst ${burst}: no range of the service or the prefix`);
      assert.ok(spent.get - before.get <= 1, `burst ${burst}: ${spent.get - before.get} revision checks, at most one`);
    }
  });

  it('consistent=true with a minRevision already reached reads the store at once', async () => {
    const put = await gw.request('PUT', '/services/behind/instances/b', instanceBody('10.0.0.2', 80, { ttl: 0 }));
    const r = await gw.request('GET', `/services/behind?minRevision=${put.json.revision}&consistent=true`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(
      r.json.instances.map((x: { id: string }) => x.id),
      ['b'],
    );
  });
});
