// The gateway on a locked-down etcd: TLS with client certificates (and the failures a
// wrong CA or a missing certificate give at start), and a least-privilege etcd user.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeCerts, type TestCerts } from './helpers/certs.ts';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { instancePath, startGateway, uniquePrefix } from './helpers/gateway.ts';
import { body, runMain } from './helpers/security.ts';
import { openSse, toChange } from './helpers/sse.ts';

let certs: TestCerts;
before(async () => {
  certs = await makeCerts();
});
after(() => certs?.remove());

describe('etcd over TLS with client certificates', () => {
  let secure: EtcdCluster;
  before(async () => {
    secure = await startEtcd({
      tls: { caFile: certs.ca.certFile, certFile: certs.server.certFile, keyFile: certs.server.keyFile, clientCert: certs.client },
    });
  });
  after(() => secure?.close());

  it('the gateway works with the right CA, certificate and key', async () => {
    assert.match(secure.endpoints[0]!, /^https:/);
    const gw = await startGateway({
      etcd: secure,
      env: { ETCD_CA_FILE: certs.ca.certFile, ETCD_CERT_FILE: certs.client.certFile, ETCD_KEY_FILE: certs.client.keyFile },
    });
    try {
      assert.equal((await gw.request('PUT', instancePath('payments', 'tls1'), body())).status, 201);
      assert.equal((await gw.request('GET', '/services/payments')).json.instances.length, 1);
      assert.equal((await gw.request('GET', '/health/ready')).status, 200);
      assert.match(await secure.ctl(['get', `${gw.prefix}/payments/tls1`]), /tls1/);
    } finally {
      await gw.close();
    }
  });

  it('a wrong CA, or no client certificate, fails the start at once with a clear message', async () => {
    const common = { ETCD_ENDPOINTS: secure.endpoints.join(','), ETCD_PREFIX: uniquePrefix('tls') };
    const [wrongCa, noCert] = await Promise.all([
      runMain({
        ...common,
        ETCD_CA_FILE: certs.otherCa.certFile,
        ETCD_CERT_FILE: certs.client.certFile,
        ETCD_KEY_FILE: certs.client.keyFile,
      }),
      runMain({ ...common, ETCD_CA_FILE: certs.ca.certFile }),
    ]);
    assert.equal(wrongCa.code, 1, wrongCa.stderr);
    assert.match(wrongCa.stderr, /cannot start: .*certificate is not trusted.*ETCD_CA_FILE/);
    assert.ok(wrongCa.ms < 15_000, `took ${wrongCa.ms} ms`);
    assert.equal(noCert.code, 1, noCert.stderr);
    assert.match(noCert.stderr, /cannot start: .*client certificate.*ETCD_CERT_FILE/);
    assert.ok(noCert.ms < 15_000, `took ${noCert.ms} ms`);
  });
});

describe('etcd auth with a least-privilege gateway user', () => {
  let locked: EtcdCluster;
  const prefix = uniquePrefix('auth');
  const root = ['--user=root:root-pw'];
  before(async () => {
    locked = await startEtcd();
    // The set-up docs/security.md gives operators.
    await locked.ctl(['user', 'add', 'root:root-pw']);
    await locked.ctl(['role', 'add', 'gateway']);
    await locked.ctl(['role', 'grant-permission', 'gateway', '--prefix=true', 'readwrite', `${prefix}/`]);
    await locked.ctl(['user', 'add', 'gateway:gw-pw']);
    await locked.ctl(['user', 'grant-role', 'gateway', 'gateway']);
    await locked.ctl(['auth', 'enable']);
  });
  after(() => locked?.close());

  it('the gateway works with readwrite on its prefix only', async () => {
    const gw = await startGateway({ etcd: locked, prefix, env: { ETCD_USERNAME: 'gateway', ETCD_PASSWORD: 'gw-pw' } });
    const stream = await openSse(`${gw.base}/services/payments/events`);
    try {
      assert.equal((await gw.request('PUT', instancePath('payments', 'a1'), body({ ttl: 30 }))).status, 201);
      assert.equal((await gw.request('PUT', `${instancePath('payments', 'a1')}/heartbeat`)).status, 200);
      assert.equal((await gw.request('GET', '/services/payments?consistent=true')).json.instances.length, 1);
      await stream.waitFor((e) => toChange(e)?.type === 'register');
      assert.equal((await gw.request('DELETE', instancePath('payments', 'a1'))).status, 204);
      const gone = await stream.waitFor((e) => toChange(e)?.type === 'deregister');
      assert.equal(JSON.parse(gone.data).reason, 'deregistered');
      assert.equal((await gw.request('GET', '/health/ready')).status, 200);
    } finally {
      stream.close();
      await gw.close();
    }
  });

  it('that user cannot touch keys outside the prefix', async () => {
    const user = ['--user=gateway:gw-pw'];
    await assert.rejects(locked.ctl([...user, 'put', '/elsewhere/k', 'v']), /permission denied/);
    await assert.rejects(locked.ctl([...user, 'get', '/elsewhere', '--prefix']), /permission denied/);
    await assert.rejects(locked.ctl([...user, 'del', '/', '--prefix']), /permission denied/);
    await assert.rejects(locked.ctl([...user, 'put', prefix, 'v']), /permission denied/, 'the prefix without its slash is outside');
    await locked.ctl([...user, 'get', `${prefix}/`, '--prefix']);
    await locked.ctl([...root, 'put', '/elsewhere/k', 'v']); // root still can
  });

  it('a wrong password fails the start at once with a clear message', async () => {
    const r = await runMain({
      ETCD_ENDPOINTS: locked.endpoints.join(','),
      ETCD_PREFIX: prefix,
      ETCD_USERNAME: 'gateway',
      ETCD_PASSWORD: 'wrong',
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot start: .*rejected the gateway credentials.*ETCD_PASSWORD/);
    assert.ok(!r.stderr.includes('wrong') || !/password[^\n]*wrong/.test(r.stderr), 'the password is not printed');
    assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
  });
});
