// Rotation of the gateway's etcd client certificate without a restart
// (src/plugins/etcd-cert-reload.ts, EtcdStore.reconnect): etcd requires client
// certificates, and the gateway's expires during the test. A renewed pair written
// to ETCD_CERT_FILE/ETCD_KEY_FILE is taken (a log line says until when it is
// valid); once the old one has expired, an etcd restart drops every connection, and
// registrations, heartbeats, discovery and a change stream opened before the
// renewal all go on: the stream sees the later events, with no reset and no event
// twice. Without the reload the gateway could not connect again after the restart.
// A pair whose key is not the certificate's, and one etcd does not trust, are
// refused with a log line, and the current client goes on working; each outcome is
// counted in discovery_certificate_reloads_total, and
// discovery_certificate_expiry_timestamp_seconds tells when the certificate in use
// ends. Below the gateway, EtcdStore.reconnect moves a watch while writes go on: every revision
// arrives once, in order.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EtcdStore } from '../src/registry/store/etcd.ts';
import { issueUntil, makeCerts, type TestCerts } from './helpers/certs.ts';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { eventually, instanceBody, instancePath, metricValue, startGateway, uniquePrefix, type TestGateway } from './helpers/gateway.ts';
import { LogCapture } from './helpers/logs.ts';
import { openSse, toChange, type SseStream } from './helpers/sse.ts';

/** Long enough for the gateway to connect on a busy machine; the test waits out the rest. */
const VALID_MS = 12_000;

let certs: TestCerts;
let etcd: EtcdCluster;
before(async () => {
  certs = await makeCerts();
  etcd = await startEtcd({
    tls: { caFile: certs.ca.certFile, certFile: certs.server.certFile, keyFile: certs.server.keyFile, clientCert: certs.client },
  });
});
after(async () => {
  await etcd?.close();
  await certs?.remove();
});

describe('EtcdStore.reconnect', () => {
  it('moves a watch while writes go on: every revision once, in order; the same lease renews on the new client', async (t) => {
    const tls = async () => ({
      ca: await readFile(certs.ca.certFile),
      cert: await readFile(certs.client.certFile),
      key: await readFile(certs.client.keyFile),
    });
    const store = new EtcdStore({ endpoints: etcd.endpoints, tls: await tls() });
    t.after(() => store.close());
    const prefix = `${uniquePrefix('reconnect')}/`;
    const seen: number[] = [];
    const errors: Error[] = [];
    const watch = await store.watch(prefix, (await store.get(prefix)).revision + 1, {
      onBatch: (b) => seen.push(...b.events.map((e) => e.modRevision)),
      onError: (err) => errors.push(err),
    });
    const lease = await store.grantLease(30);
    const written: number[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++)
        written.push((await store.txn([], [{ type: 'put', key: `${prefix}k${i % 5}`, value: `${i}` }])).revision);
    })();
    for (const n of [10, 30, 50]) {
      await eventually(async () => written.length >= n, 10_000, `${n} writes`);
      if (n < 50) await store.reconnect(await tls());
    }
    writing = false;
    await writer;
    await eventually(async () => seen.length >= written.length, 10_000, 'every write through the watch');
    assert.deepEqual(seen, written);
    assert.deepEqual(errors, []);
    assert.ok((await store.keepAlive(lease.id)) > 0, 'the lease renews on the new client');
    await watch.close();
  });
});

describe('etcd client certificate reload', () => {
  let gw: TestGateway;
  let stream: SseStream;
  let expiresAt: number;
  let live: { certFile: string; keyFile: string };
  let expiring: { certFile: string; keyFile: string };
  const logs = new LogCapture();

  /** Replaces the gateway's files, each in one rename, as a tool renewing certificates does. */
  async function publish(cert: string, key: string): Promise<void> {
    for (const [from, to] of [
      [key, live.keyFile],
      [cert, live.certFile],
    ] as const) {
      await copyFile(from, `${to}.new`);
      await rename(`${to}.new`, to);
    }
  }
  const logged = (msg: string, since: number) =>
    eventually(async () => logs.lines.slice(since).find((l) => l.msg === msg), 20_000, `the log line "${msg}"`);
  const register = (id: string) => gw.request('PUT', instancePath('payments', id), instanceBody('10.0.0.1', 80, { ttl: 30 }));
  const reloads = (result: 'reloaded' | 'refused') =>
    metricValue(gw, 'discovery_certificate_reloads_total', `{certificate="etcd-client",result="${result}"}`);
  const expiry = () => metricValue(gw, 'discovery_certificate_expiry_timestamp_seconds', '{certificate="etcd-client"}');
  /** The certificate's notAfter in Unix seconds, as the expiry gauge gives it. */
  const notAfter = async (certFile: string) => Date.parse(new X509Certificate(await readFile(certFile)).validTo) / 1000;

  before(async () => {
    await mkdir(join(certs.dir, 'live'));
    live = { certFile: join(certs.dir, 'live', 'client.crt'), keyFile: join(certs.dir, 'live', 'client.key') };
    expiresAt = Date.now() + VALID_MS;
    expiring = await issueUntil(certs.dir, certs.ca, 'expiring', new Date(expiresAt));
    await publish(expiring.certFile, expiring.keyFile);
    gw = await startGateway({
      etcd,
      env: { ETCD_CA_FILE: certs.ca.certFile, ETCD_CERT_FILE: live.certFile, ETCD_KEY_FILE: live.keyFile, LOG_LEVEL: 'info' },
      deps: { logStream: logs },
    });
    stream = await openSse(`${gw.base}/services/payments/events`);
    assert.equal((await register('a1')).status, 201);
    await stream.waitFor((e) => toChange(e)?.instanceId === 'a1', 10_000, 'a1 on the stream');
  });
  after(async () => {
    stream?.close();
    await gw?.close();
  });

  it('refuses a pair whose key is not the certificate’s, or that etcd does not trust; the current client goes on', async () => {
    assert.equal(await expiry(), await notAfter(expiring.certFile), 'the end of the certificate the gateway started with');
    let since = logs.lines.length;
    const renewed = await issueUntil(certs.dir, certs.ca, 'mismatched', new Date(Date.now() + 3_600_000));
    await publish(renewed.certFile, certs.otherCa.keyFile);
    await logged('etcd client certificate refused: the store client keeps the current one', since);
    // At least: publish() renames the key and the certificate one at a time, and a read between them refuses too.
    assert.ok((await reloads('refused')) >= 1, 'a pair that does not load is counted as refused');

    since = logs.lines.length;
    const refused = await reloads('refused');
    const stranger = await issueUntil(certs.dir, certs.otherCa, 'stranger', new Date(Date.now() + 3_600_000));
    await publish(stranger.certFile, stranger.keyFile);
    const line = await logged(
      'etcd client certificate not reloaded: the store client keeps the current one; tried again on the next change, poll or SIGHUP',
      since,
    );
    assert.match(String(line.reason), /client certificate/);
    assert.ok((await reloads('refused')) > refused, 'a pair etcd would not take is counted as refused');

    assert.equal((await gw.request('PUT', `${instancePath('payments', 'a1')}/heartbeat`)).status, 200);
    assert.equal((await register('a2')).status, 201);
    await stream.waitFor((e) => toChange(e)?.instanceId === 'a2', 10_000, 'a2 on the stream');
    assert.equal(logs.count('etcd client certificate reloaded'), 0);
    assert.equal(await reloads('reloaded'), 0);
    assert.equal(await expiry(), await notAfter(expiring.certFile), 'still the end of the certificate in use');
  });

  it('takes a renewed pair and keeps registrations, heartbeats, discovery and open streams across the old one’s expiry', async () => {
    const since = logs.lines.length;
    const renewed = await issueUntil(certs.dir, certs.ca, 'renewed', new Date(Date.now() + 3_600_000));
    await publish(renewed.certFile, renewed.keyFile);
    const line = await logged('etcd client certificate reloaded', since);
    assert.equal(line.validTo, new X509Certificate(await readFile(renewed.certFile)).validTo, 'the log says until when');
    assert.equal(await reloads('reloaded'), 1);
    assert.equal(await expiry(), await notAfter(renewed.certFile), 'the end of the renewed certificate');
    assert.equal((await register('a3')).status, 201, 'a write on the new client');
    await stream.waitFor((e) => toChange(e)?.instanceId === 'a3', 10_000, 'a3 on the stream');

    // The old certificate expires; restarting etcd drops every connection, so only the renewed one can connect again.
    await eventually(async () => Date.now() > expiresAt + 1000, VALID_MS + 5000, 'the first certificate to expire');
    await etcd.restart(0);
    await eventually(
      async () => (await gw.request('PUT', `${instancePath('payments', 'a1')}/heartbeat`)).status === 200,
      15_000,
      'a heartbeat after the restart',
    );
    assert.equal((await register('a4')).status, 201);
    const found = await gw.request('GET', '/services/payments?consistent=true');
    assert.deepEqual(found.json.instances.map((i: { id: string }) => i.id).sort(), ['a1', 'a2', 'a3', 'a4']);
    await stream.waitFor((e) => toChange(e)?.instanceId === 'a4', 10_000, 'a4 on the stream opened before the renewal');

    assert.ok(stream.isOpen);
    const changes = stream.events.map(toChange).filter((c) => c !== undefined);
    assert.deepEqual(
      changes.map((c) => `${c.type} ${c.instanceId}`),
      ['register a1', 'register a2', 'register a3', 'register a4'],
      'every change once, in order',
    );
    assert.equal(stream.events.filter((e) => e.event === 'snapshot').length, 1, 'no reset snapshot');
    assert.equal(await metricValue(gw, 'discovery_watch_restarts_total'), 0, 'the watch never lost its place');
    const restarts = logs.lines.filter((l) => /restarting the store watch/.test(String(l.msg)));
    assert.deepEqual(restarts, [], 'the watch moved to the new client by itself: no write waited for it');
  });
});
