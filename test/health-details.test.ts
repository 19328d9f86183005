// /health for the public (src/routes/health.ts): with access control on, anyone still
// gets readiness and the store's open fields (API.md: kind, reachable, revision,
// latencyMs) and whether DNS is on, but the store's details (etcd version, leader and
// member ids, database size) and the DNS address only with a valid token, whatever its
// rights, as Consul's /v1/agent/self.
// A wrong token is not refused there: the probes are always open.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { startGateway, type TestGateway } from './helpers/gateway.ts';

describe('/health details', () => {
  let etcd: EtcdCluster;
  let guarded: TestGateway;
  let open: TestGateway;
  let dir: string;

  before(async () => {
    [etcd, dir] = await Promise.all([startEtcd(), mkdtemp(join(tmpdir(), 'health-details-'))]);
    const tokensFile = join(dir, 'tokens.json');
    await writeFile(tokensFile, JSON.stringify({ tokens: [{ name: 'reader', token: 'reader-secret', read: ['shop'], write: [] }] }));
    [guarded, open] = await Promise.all([
      startGateway({ etcd, env: { AUTH_TOKENS_FILE: tokensFile, DNS_PORT: '0', DNS_TOKEN: 'reader-secret' } }),
      startGateway({ etcd }),
    ]);
  });
  after(async () => {
    await Promise.all([guarded?.close(), open?.close()]);
    await etcd?.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const path of ['/health', '/health/ready']) {
    it(`${path}: readiness for anyone, the store's details only with a valid token`, async () => {
      for (const headers of [{}, { authorization: 'Bearer not-a-token' }] as Record<string, string>[]) {
        const anyone = await guarded.request('GET', path, undefined, headers);
        assert.equal(anyone.status, 200, 'always open');
        assert.equal(anyone.json.status, 'ok');
        const { kind, reachable, revision, latencyMs } = anyone.json.store;
        assert.deepEqual([kind, reachable, typeof revision, typeof latencyMs], ['etcd', true, 'number', 'number']);
        assert.equal(anyone.json.store.details, undefined, 'no version, member id or size without a token');
        assert.deepEqual(anyone.json.dns, { enabled: true }, 'DNS is on, but not where');
        assert.doesNotMatch(anyone.text, /leader|member|dbSize|version|host|port|domain/);
      }
      const holder = await guarded.request('GET', path, undefined, { authorization: 'Bearer reader-secret' });
      assert.equal(holder.status, 200);
      assert.match(holder.json.store.details.version, /^3\./, 'any valid token sees the details');
      assert.ok(holder.json.store.details.leader && holder.json.store.details.dbSize > 0);
      const { enabled, host, port, domain } = holder.json.dns;
      assert.deepEqual([enabled, host, typeof port, domain], [true, '127.0.0.1', 'number', 'discovery']);
    });
  }

  it('without access control, shows the details to everyone', async () => {
    const r = await open.request('GET', '/health');
    assert.equal(r.status, 200);
    assert.match(r.json.store.details.version, /^3\./);
    assert.deepEqual(r.json.dns, { enabled: false });
  });
});
