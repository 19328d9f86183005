// No write hangs on a silent store (API.md "Scale and faults"): with the only etcd
// member frozen (SIGSTOP), a registration, a heartbeat (plain or with a status),
// a deregistration and a batch each answer 503 store-unavailable within 11 s
// with the default settings, whatever the request retries inside.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type EtcdCluster, startEtcd } from './helpers/etcd.ts';
import { eventually, instanceBody, startGateway, type TestGateway } from './helpers/gateway.ts';

const BOUND_MS = 11_000;

describe('writes on a frozen store', () => {
  let etcd: EtcdCluster;
  let gw: TestGateway;
  before(async () => {
    etcd = await startEtcd();
    gw = await startGateway({ etcd });
    for (const id of ['hb', 'status', 'gone']) {
      const r = await gw.request('PUT', `/services/silent/instances/${id}`, instanceBody('10.0.0.1', 80, { ttl: 60 }));
      assert.equal(r.status, 201, r.text);
    }
    // No heartbeat yet: the first one must open a keepalive stream on the frozen member.
    etcd.stop(0);
  });
  after(async () => {
    etcd?.cont(0);
    await gw?.close();
    await etcd?.close();
  });

  it('answers every write 503 store-unavailable within 11 s', async () => {
    const writes: [string, string, unknown?][] = [
      ['PUT', '/services/silent/instances/hb/heartbeat'],
      ['PUT', '/services/silent/instances/status/heartbeat', { status: 'draining' }],
      ['PUT', '/services/silent/instances/new', instanceBody('10.0.0.2', 80, { ttl: 30 })],
      ['DELETE', '/services/silent/instances/gone'],
      ['POST', '/batch', { register: [{ service: 'silent', id: 'b', address: '10.0.0.3', port: 80 }] }],
    ];
    const answers = await Promise.all(
      writes.map(async ([method, path, body]) => {
        const t0 = Date.now();
        const r = await gw.request(method, path, body);
        return { what: `${method} ${path}`, ms: Date.now() - t0, status: r.status, code: r.json?.code };
      }),
    );
    for (const a of answers) {
      assert.equal(a.status, 503, `${a.what}: ${a.status} ${a.code}`);
      assert.equal(a.code, 'store-unavailable', a.what);
      assert.ok(a.ms < BOUND_MS, `${a.what} answered after ${a.ms} ms`);
    }
  });

  it('the same heartbeat succeeds once the member thaws', async () => {
    etcd.cont(0);
    await eventually(
      async () => (await gw.request('PUT', '/services/silent/instances/hb/heartbeat')).status === 200,
      30_000,
      'a heartbeat answered 200',
    );
  });
});
