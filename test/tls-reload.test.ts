// Certificate rotation without a restart (src/plugins/tls-reload.ts): the gateway serves
// from a directory laid out as Kubernetes mounts a Secret (files that link through a
// `..data` symlink, swapped in one rename on update) a certificate that expires during
// the test. The renewed pair is served to new connections; a change stream and a
// keep-alive connection opened before the swap keep working, also once the old
// certificate has expired; a new pair whose key does not match is refused with a log
// line and the current one stays; SIGHUP reads the files again. Each outcome is
// counted in discovery_certificate_reloads_total, and
// discovery_certificate_expiry_timestamp_seconds tells when the served one ends.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, rm, symlink } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { issueUntil, makeCerts, type KeyPair, type TestCerts } from './helpers/certs.ts';
import { eventually, instanceBody, startGateway, type TestGateway } from './helpers/gateway.ts';

/** The certificate the gateway presents to a new connection (not verified: it may have expired). */
function servedCertificate(base: string): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((ok, ko) => {
    const socket = connect({ host: hostname, port: Number(port), servername: 'localhost', rejectUnauthorized: false }, () => {
      ok(socket.getPeerX509Certificate()!.fingerprint256);
      socket.end();
    }).on('error', ko);
  });
}

const fingerprint = async (pair: KeyPair) => new X509Certificate(await readFile(pair.certFile)).fingerprint256;
/** The certificate's notAfter in Unix seconds, as the expiry gauge gives it. */
const notAfter = async (pair: KeyPair) => Date.parse(new X509Certificate(await readFile(pair.certFile)).validTo) / 1000;

describe('TLS certificate reload', () => {
  let certs: TestCerts;
  let gw: TestGateway;
  let expiring: KeyPair;
  let expiresAt: number;
  let renewed: KeyPair;
  let secret: string;
  let ca: Buffer;
  const logs: { msg: string; reason?: string }[] = [];
  let version = 0;

  /** A series of /metrics, read in-process (the test's fetch has no CA). */
  async function metric(series: string): Promise<number> {
    const line = (await gw.app.inject({ method: 'GET', url: '/metrics' })).body.split('\n').find((l) => l.startsWith(`${series} `));
    assert.ok(line, `${series} on /metrics`);
    return Number(line.slice(series.length + 1));
  }
  const reloads = (result: 'reloaded' | 'refused') =>
    metric(`discovery_certificate_reloads_total{certificate="serving",result="${result}"}`);
  const expiry = () => metric('discovery_certificate_expiry_timestamp_seconds{certificate="serving"}');

  /** Puts a pair in the Secret directory the way the kubelet updates a Secret volume. */
  async function publish(cert: string, key: string): Promise<void> {
    const dir = join(secret, `..v${++version}`);
    await mkdir(dir);
    await Promise.all([symlink(cert, join(dir, 'tls.crt')), symlink(key, join(dir, 'tls.key'))]);
    await symlink(`..v${version}`, join(secret, '..data_tmp'));
    await rename(join(secret, '..data_tmp'), join(secret, '..data'));
    if (version > 1) await rm(join(secret, `..v${version - 1}`), { recursive: true });
  }

  before(async () => {
    certs = await makeCerts();
    ca = await readFile(certs.ca.certFile);
    // Long enough for the gateway to start on a busy machine, short enough to pass during the test.
    expiresAt = Date.now() + 20_000;
    expiring = await issueUntil(certs.dir, certs.ca, 'expiring', new Date(expiresAt));
    renewed = await issueUntil(certs.dir, certs.ca, 'renewed', new Date(Date.now() + 3_600_000));
    secret = join(certs.dir, 'secret');
    await mkdir(secret);
    await publish(expiring.certFile, expiring.keyFile);
    await symlink('..data/tls.crt', join(secret, 'tls.crt'));
    await symlink('..data/tls.key', join(secret, 'tls.key'));
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(line) as (typeof logs)[number]);
        done();
      },
    });
    gw = await startGateway({
      env: { TLS_CERT_FILE: join(secret, 'tls.crt'), TLS_KEY_FILE: join(secret, 'tls.key'), LOG_LEVEL: 'info' },
      deps: { logStream: stream },
    });
  });
  after(async () => {
    await gw?.close();
    await certs?.remove();
  });

  it('serves a renewed certificate to new connections, keeps open streams and connections, and outlives the old one', async () => {
    assert.equal(await servedCertificate(gw.base), await fingerprint(expiring));
    assert.deepEqual([await reloads('reloaded'), await reloads('refused')], [0, 0], 'the files the gateway started with are no reload');
    assert.equal(await expiry(), await notAfter(expiring), 'the end of the certificate the gateway started with');
    // A change stream and a keep-alive connection, both verified against the CA, opened on the expiring certificate.
    const agent = new Agent({ ca, keepAlive: true, maxSockets: 1 });
    const get = (path: string) =>
      new Promise<{ status: number; socket: unknown }>((ok, ko) =>
        request(`${gw.base}${path}`, { agent }, (res) => ok({ status: res.resume().statusCode!, socket: res.socket }))
          .on('error', ko)
          .end(),
      );
    const first = await get('/health/live');
    assert.equal(first.status, 200);
    let streamed = '';
    const events = request(`${gw.base}/events?service=rotation`, { ca, headers: { accept: 'text/event-stream' } }, (res) =>
      res.setEncoding('utf8').on('data', (chunk: string) => (streamed += chunk)),
    );
    events.end();

    await publish(renewed.certFile, renewed.keyFile);
    const renewedPrint = await fingerprint(renewed);
    await eventually(async () => (await servedCertificate(gw.base)) === renewedPrint, 60_000, 'the renewed certificate served');
    assert.ok(logs.some((l) => l.msg === 'TLS certificate reloaded'));
    assert.deepEqual([await reloads('reloaded'), await reloads('refused')], [1, 0]);
    assert.equal(await expiry(), await notAfter(renewed), 'the end of the renewed certificate');

    // Past the old certificate's end: new connections verify, the old ones still carry requests and events.
    await eventually(async () => Date.now() > expiresAt + 1000, 60_000, 'the first certificate to expire');
    const again = await get('/health/live');
    assert.equal(again.status, 200);
    assert.equal(again.socket, first.socket, 'the same keep-alive connection');
    const fresh = await new Promise<number>((ok, ko) =>
      request(`${gw.base}/health/ready`, { ca }, (res) => ok(res.resume().statusCode!))
        .on('error', ko)
        .end(),
    );
    assert.equal(fresh, 200, 'a new connection verifies the renewed certificate');
    assert.equal(
      (await gw.app.inject({ method: 'PUT', url: '/services/rotation/instances/a', payload: instanceBody('10.0.0.1', 80) })).statusCode,
      201,
    );
    await eventually(async () => streamed.includes('"id":"a"'), 10_000, 'the event on the stream opened before the renewal');
    events.destroy();
    agent.destroy();
  });

  it('refuses a new pair whose key is not the certificate’s, with a log line, and keeps serving the current one', async () => {
    const before = logs.length;
    const refused = await reloads('refused');
    await publish(renewed.certFile, certs.otherCa.keyFile);
    await eventually(
      async () => logs.slice(before).find((l) => l.msg === 'TLS certificate refused: serving the current one'),
      10_000,
      'the refusal',
    );
    assert.equal(await servedCertificate(gw.base), await fingerprint(renewed));
    assert.equal(await reloads('refused'), refused + 1);
    assert.equal(await expiry(), await notAfter(renewed), 'still the served certificate’s end');
  });

  it('reads the files again on SIGHUP', async () => {
    const before = logs.length;
    // The files behind the current links rewritten in place: nothing changes in the watched directory.
    const another = await issueUntil(certs.dir, certs.ca, 'another', new Date(Date.now() + 3_600_000));
    await copyFile(another.certFile, renewed.certFile);
    await copyFile(another.keyFile, certs.otherCa.keyFile);
    process.kill(process.pid, 'SIGHUP');
    const print = await fingerprint(another);
    await eventually(async () => (await servedCertificate(gw.base)) === print, 5000, 'the pair read on SIGHUP');
    assert.ok(logs.slice(before).some((l) => l.msg === 'TLS certificate reloaded'));
    assert.equal(await expiry(), await notAfter(another));
  });
});
