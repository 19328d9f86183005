// Request timeouts that spare change streams and blocking queries (API.md "Running"),
// on a real etcd that the test freezes, and the security headers of the pages.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { instancePath, startGateway, type TestGateway } from './helpers/gateway.ts';
import { assertProblem, body } from './helpers/security.ts';
import { openSse, toChange } from './helpers/sse.ts';

let etcd: EtcdCluster;
before(async () => {
  etcd = await startEtcd();
});
after(() => etcd?.close());

describe('timeouts and headers', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ etcd, env: { ETCD_TIMEOUT_MS: '5000' }, deps: { handlerTimeoutMs: 600 } });
  });
  after(async () => {
    etcd.cont(0);
    await gw?.close();
  });

  it('the dashboard and /docs send security headers', async () => {
    for (const path of ['/', '/docs', '/docs/static/index.html']) {
      const r = await gw.request('GET', path);
      assert.equal(r.status, 200, path);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff', path);
      assert.equal(r.headers.get('x-frame-options'), 'DENY', path);
      assert.equal(r.headers.get('referrer-policy'), 'no-referrer', path);
      assert.match(r.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, path);
    }
  });

  it('change streams and blocking queries outlive the request timeout', async () => {
    const stream = await openSse(`${gw.base}/services/slow/events`);
    try {
      const rev = Number((await gw.request('GET', '/services/slow')).headers.get('x-registry-revision'));
      const t0 = Date.now();
      const blocking = await gw.request('GET', `/services/slow?index=${rev}&wait=1500ms`);
      assert.equal(blocking.status, 200, blocking.text);
      assert.ok(Date.now() - t0 >= 1400, 'held for its wait');
      await gw.request('PUT', instancePath('slow', 's1'), body());
      const e = await stream.waitFor((x) => toChange(x) !== undefined);
      assert.equal(toChange(e)!.instanceId, 's1');
      assert.ok(stream.isOpen);
    } finally {
      stream.close();
    }
  });

  it('an ordinary request stuck on the store is cut: 503 problem+json, no internals', async () => {
    etcd.stop(0);
    try {
      const t0 = Date.now();
      const r = await gw.request('PUT', instancePath('slow', 's2'), body());
      assertProblem(r, 503, 'store-unavailable');
      assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
      assert.ok(!r.text.includes(new URL(etcd.endpoints[0]!).port), 'no etcd address');
    } finally {
      etcd.cont(0);
    }
  });
});
