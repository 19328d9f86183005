// Streams and caches at fleet size (API.md "Scale and faults"), at sizes that
// run in seconds: a slow reader of a snapshot larger than its allowance, a herd
// of resumes on a fresh gateway, a resume while the store is frozen, HEAD on
// stream routes, forgotten services, and HTTP/2.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { after, before, describe, it, type TestContext } from 'node:test';
import { MemoryStore } from '../src/registry/store/memory.ts';
import { makeCerts, type TestCerts } from './helpers/certs.ts';
import { eventually, instancePath, metricValue, startGateway, uniquePrefix, type TestGateway } from './helpers/gateway.ts';
import { eachStore } from './helpers/stores.ts';
import { openSse, SseParser, toChange, type SseEvent, type SseStream } from './helpers/sse.ts';

async function put(gw: TestGateway, svc: string, id: string, body: Record<string, unknown> = {}): Promise<number> {
  const r = await gw.request('PUT', instancePath(svc, id), { address: '10.0.0.1', port: 8080, ttl: 0, ...body });
  assert.ok(r.status === 200 || r.status === 201, `PUT ${svc}/${id}: ${r.status} ${r.text}`);
  return Number(r.headers.get('x-registry-revision'));
}

async function remove(gw: TestGateway, svc: string, id: string): Promise<number> {
  const r = await gw.request('DELETE', instancePath(svc, id));
  assert.equal(r.status, 204, r.text);
  return Number(r.headers.get('x-registry-revision'));
}

const sseClients = (gw: TestGateway) => metricValue(gw, 'discovery_sse_clients');
const storeCalls = (gw: TestGateway, op: string) => metricValue(gw, 'discovery_store_request_duration_seconds_count', `{op="${op}"}`);

/** Change events as [id, service, instance id]. */
const changeList = (events: SseEvent[]) =>
  events.flatMap((e) => {
    const c = toChange(e);
    return c ? [[c.id, c.service, c.instanceId] as const] : [];
  });

eachStore('streams at fleet size', (store) => {
  interface Started {
    gw: TestGateway;
    memory?: MemoryStore;
  }
  /** A gateway closed after the test; `share` puts it on the store and prefix of another. */
  async function gateway(t: TestContext, env: Record<string, string> = {}, share?: Started): Promise<Started> {
    const memory = store.kind === 'memory' ? (share?.memory ?? new MemoryStore()) : undefined;
    const gw = await startGateway({
      etcd: store.etcd,
      env,
      prefix: share?.gw.prefix ?? uniquePrefix('fleet'),
      deps: memory ? { store: memory } : undefined,
    });
    t.after(() => gw.close());
    return { gw, memory };
  }

  it('a slow reader of a snapshot 300 times its allowance gets it whole, then every live change, on one connection', async (t) => {
    const allowance = 16 * 1024;
    const { gw } = await gateway(t, { SSE_BUFFER_BYTES: String(allowance) });
    // 200 instances of ~25 KB: a snapshot of ~5 MB, more than loopback socket buffers hold.
    const metadata = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, 'v'.repeat(500)]));
    for (let b = 0; b < 10; b++) {
      const register = Array.from({ length: 20 }, (_, i) => ({
        service: 'big',
        id: `b-${b * 20 + i}`,
        address: '10.2.0.1',
        port: 1,
        ttl: 0,
        metadata,
      }));
      assert.equal((await gw.request('POST', '/batch', { register })).status, 200);
    }

    const events: SseEvent[] = [];
    const parser = new SseParser((e) => events.push(e));
    let bytes = 0;
    let closed = false;
    const url = new URL('/events', gw.base);
    const req = http.get({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      agent: false,
      headers: { accept: 'text/event-stream' },
    });
    t.after(() => req.destroy());
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    assert.equal(res.statusCode, 200);
    res.on('close', () => (closed = true));
    // The reader takes 3 ms after each chunk it reads before it reads the next.
    res.setEncoding('utf8').on('data', (text: string) => {
      bytes += Buffer.byteLength(text);
      parser.feed(text);
      res.pause();
      setTimeout(() => res.resume(), 3);
    });

    // Live changes made while the snapshot is still on its way.
    const live: number[] = [];
    for (let i = 0; i < 5; i++) live.push(await put(gw, 'live', `l-${i}`));
    const snapshotDuringChanges = events.some((e) => e.event === 'snapshot');
    // Other requests are answered meanwhile.
    const t0 = performance.now();
    assert.equal((await gw.request('GET', '/health/live')).status, 200);
    const liveAnswerMs = performance.now() - t0;

    await eventually(async () => changeList(events).length >= 5 || closed, 30_000, 'the snapshot and the five changes');
    live.push(await put(gw, 'live', 'after'));
    await eventually(async () => changeList(events).length >= 6 || closed, 10_000, 'the change made after the reader caught up');

    assert.equal(closed, false, 'the stream was not cut');
    assert.equal(snapshotDuringChanges, false, 'precondition: the changes were made while the snapshot was still being read');
    const snapshot = events.find((e) => e.event === 'snapshot')!;
    assert.ok(snapshot.data.length > 300 * allowance, `the snapshot (${snapshot.data.length} bytes) is far over the allowance`);
    assert.equal(JSON.parse(snapshot.data).services.big.length, 200);
    assert.deepEqual(
      changeList(events).map(([id]) => id),
      live,
      'every live change after the snapshot, in order, once',
    );
    assert.equal(events[0], snapshot);
    assert.ok(liveAnswerMs < 2000, `GET /health/live answered in ${liveAnswerMs.toFixed(0)} ms while the snapshot was written`);
    assert.equal(await sseClients(gw), 1);
    t.diagnostic(`snapshot ${(bytes / 1e6).toFixed(1)} MB read on one connection; /health/live meanwhile ${liveAnswerMs.toFixed(0)} ms`);
  });

  it('200 resumes at once on a fresh gateway share its store reads: at most 2 watches and 2 fences', async (t) => {
    const first = await gateway(t);
    const from1 = await put(first.gw, 'alpha', 'a-1');
    await put(first.gw, 'beta', 'b-1');
    const from2 = await put(first.gw, 'alpha', 'a-2');
    await put(first.gw, 'beta', 'b-2', { weight: 3 });
    await remove(first.gw, 'alpha', 'a-1');
    // A gateway started now holds none of these changes in its ring.
    const fresh = (await gateway(t, {}, first)).gw;
    const watches = await storeCalls(fresh, 'watch');
    const txns = await storeCalls(fresh, 'txn');

    const paths = ['/events', '/services/alpha/events', '/events?service=beta'];
    const opened = await Promise.all(
      Array.from({ length: 200 }, (_, i) => {
        const [path, from] = [paths[i % 3]!, i % 2 ? from1 : from2];
        return openSse(fresh.base + path, { lastEventId: String(from) }).then((s) => ({ s, path, from }));
      }),
    );
    const streams: SseStream[] = opened.map((o) => o.s);
    t.after(() => streams.forEach((s) => s.close()));
    const storeWatches = (await storeCalls(fresh, 'watch')) - watches;
    const fences = (await storeCalls(fresh, 'txn')) - txns;

    // What each must get: the changes after its id in its scope (read from a stream that never left).
    const reference = await openSse(`${first.gw.base}/events`, { lastEventId: String(from1 - 1) });
    t.after(() => reference.close());
    await reference.until('the reference replay', () => changeList(reference.events).length === 5);
    const all = changeList(reference.events);
    const last = await put(first.gw, 'beta', 'b-3');
    for (const { s, path, from } of opened) {
      assert.equal(s.status, 200);
      const scope = path === '/events' ? undefined : path.includes('alpha') ? 'alpha' : 'beta';
      const want = [
        ...all.filter(([id, svc]) => id > from && (!scope || svc === scope)),
        ...(scope === 'alpha' ? [] : [[last, 'beta', 'b-3'] as const]),
      ];
      await s.until(`${want.length} changes on ${path} from ${from}`, () => changeList(s.events).length >= want.length, 10_000);
      assert.deepEqual(changeList(s.events), want, `${path} resumed from ${from}`);
      assert.ok(!s.events.some((e) => e.event === 'snapshot'), 'no snapshot on resume');
    }
    assert.ok(storeWatches <= 2, `store watches for 200 resumes: ${storeWatches}`);
    assert.ok(fences <= 2, `fences written for 200 resumes: ${fences}`);
    t.diagnostic(`200 resumes: ${storeWatches} store watch(es), ${fences} fence(s)`);
  });

  it('after a reload every stream gets its reset snapshot, of its own scope', async (t) => {
    const { gw } = await gateway(t);
    await put(gw, 'alpha', 'a-1');
    await put(gw, 'beta', 'b-1');
    const paths = ['/events', '/services/alpha/events'];
    const streams = await Promise.all(Array.from({ length: 20 }, (_, i) => openSse(gw.base + paths[i % 2]!)));
    t.after(() => streams.forEach((s) => s.close()));
    for (const s of streams) await s.waitFor((e) => e.event === 'snapshot');

    gw.app.gateway.hub.resetAll(); // what a reload after compaction (or a restored store) does
    for (const s of streams) await s.waitFor((e) => e.event === 'snapshot' && JSON.parse(e.data).reset === true);
    const services = (s: SseStream) => Object.keys(JSON.parse(s.events.at(-1)!.data).services);
    assert.deepEqual(services(streams[0]!), ['alpha', 'beta']);
    assert.deepEqual(services(streams[1]!), ['alpha']);
  });

  it('HEAD on stream routes answers the stream headers only and opens no stream', async (t) => {
    const { gw } = await gateway(t, { SSE_MAX_STREAMS: '1' });
    await put(gw, 'alpha', 'a-1');
    for (const path of ['/events', '/services/alpha/events', '/events?service=alpha', '/events?lastEventId=1']) {
      const r = await gw.request('HEAD', path);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
      assert.equal(r.text, '');
      assert.equal(await sseClients(gw), 0, `${path}: discovery_sse_clients unchanged`);
    }
    // None of them took the one stream slot.
    const s = await openSse(`${gw.base}/events`);
    t.after(() => s.close());
    assert.equal(s.status, 200);
    await s.waitFor((e) => e.event === 'snapshot');
  });

  it('a service whose last instance left is forgotten, and its label never goes back', async (t) => {
    const { gw } = await gateway(t);
    await put(gw, 'gone', 'g-1');
    await put(gw, 'stays', 's-1');
    assert.equal(await metricValue(gw, 'discovery_services'), 2);
    const emptied = await remove(gw, 'gone', 'g-1');
    await put(gw, 'stays', 's-1', { weight: 5 });

    assert.equal(gw.app.registryRoot.cache.knows('gone'), false, 'the cache holds nothing for it');
    assert.equal(await metricValue(gw, 'discovery_services'), 1);
    assert.deepEqual(
      (await gw.request('GET', '/services')).json.services.map((s: { name: string }) => s.name),
      ['stays'],
    );
    const read = await gw.request('GET', '/services/gone');
    assert.equal(read.status, 200);
    assert.deepEqual(read.json.instances, []);
    assert.ok(read.json.revision >= emptied, `labelled ${read.json.revision}, emptied at ${emptied}`);
    // A blocking query from that label holds: nothing changed for it.
    const t0 = performance.now();
    const held = await gw.request('GET', `/services/gone?index=${read.json.revision}&wait=300ms`);
    assert.ok(performance.now() - t0 >= 290, 'held until its wait ended');
    assert.ok(held.json.revision >= read.json.revision);
    const back = await put(gw, 'gone', 'g-2');
    assert.equal((await gw.request('GET', '/services/gone')).json.revision, back);
  });

  if (store.kind === 'etcd') {
    it('a resume that needs the frozen store is answered 503 store-unavailable before any stream header', async (t) => {
      await gateway(t).then(({ gw }) => put(gw, 'early', 'e-1'));
      const { gw } = await gateway(t, { ETCD_TIMEOUT_MS: '1000' });
      const fromBeforeStart = gw.app.registryRoot.cache.appliedRevision - 1;
      t.after(() => store.etcd!.cont(0));
      store.etcd!.stop(0);
      await eventually(async () => (await gw.request('GET', '/health/ready')).status === 503, 10_000, 'ready 503');
      const t0 = performance.now();
      const r = await gw.request('GET', '/events', undefined, { 'last-event-id': String(fromBeforeStart) });
      const ms = performance.now() - t0;
      assert.equal(r.status, 503);
      assert.match(r.headers.get('content-type') ?? '', /problem\+json/);
      assert.equal(r.json.code, 'store-unavailable');
      assert.ok(ms < 3000, `answered in ${ms.toFixed(0)} ms`);
      assert.equal(await sseClients(gw), 0);
      // A new subscriber is still served from the cache.
      const s = await openSse(`${gw.base}/events`);
      t.after(() => s.close());
      await s.waitFor((e) => e.event === 'snapshot');
      store.etcd!.cont(0);
      await eventually(async () => (await gw.request('GET', '/health/ready')).status === 200, 15_000, 'ready 200 after SIGCONT');
    });
  }
});

describe('HTTP/2 with TLS', () => {
  let certs: TestCerts;
  let gw: TestGateway;
  before(async () => {
    certs = await makeCerts();
    gw = await startGateway({ env: { TLS_CERT_FILE: certs.server.certFile, TLS_KEY_FILE: certs.server.keyFile } });
  });
  let closed = false;
  after(async () => {
    if (!closed) await gw?.close();
    await certs?.remove();
  });

  it('an HTTP/2 client gets a snapshot and a live change on /events, an HTTP/1.1 client still works, and close ends both', async (t) => {
    const ca = readFileSync(certs.ca.certFile);
    const session = http2.connect(gw.base, { ca });
    t.after(() => session.destroy());
    const h2events: SseEvent[] = [];
    const parser = new SseParser((e) => h2events.push(e));
    const stream = session.request({ ':path': '/events', accept: 'text/event-stream' });
    const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
    assert.equal(headers[':status'], 200);
    assert.match(String(headers['content-type']), /^text\/event-stream/);
    assert.equal(headers.connection, undefined, 'no connection-specific header on HTTP/2');
    let h2ended = false;
    stream.setEncoding('utf8').on('data', (text: string) => parser.feed(text));
    stream.on('close', () => (h2ended = true));
    await eventually(async () => h2events.some((e) => e.event === 'snapshot'), 5000, 'the HTTP/2 snapshot');

    const write = session.request({ ':method': 'PUT', ':path': instancePath('h2', 'x-1'), 'content-type': 'application/json' });
    write.end(JSON.stringify({ address: '10.3.0.1', port: 443, ttl: 0 }));
    const [answer] = (await once(write, 'response')) as [http2.IncomingHttpHeaders];
    assert.equal(answer[':status'], 201);
    write.resume();
    const revision = Number(answer['x-registry-revision']);
    await eventually(async () => changeList(h2events).some(([id]) => id === revision), 5000, 'the live change over HTTP/2');

    const h1events: SseEvent[] = [];
    const h1parser = new SseParser((e) => h1events.push(e));
    const req = https.get(`${gw.base}/services/h2/events`, { ca, agent: false, headers: { accept: 'text/event-stream' } });
    t.after(() => req.destroy());
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    assert.equal(res.httpVersion, '1.1');
    assert.equal(res.statusCode, 200);
    let h1ended = false;
    res.setEncoding('utf8').on('data', (text: string) => h1parser.feed(text));
    res.on('close', () => (h1ended = true));
    await eventually(async () => h1events.some((e) => e.event === 'snapshot'), 5000, 'the HTTP/1.1 snapshot');
    assert.equal(JSON.parse(h1events[0]!.data).services.h2.length, 1);

    const t0 = performance.now();
    closed = true;
    await gw.close();
    const closeMs = performance.now() - t0;
    await eventually(async () => h2ended && h1ended, 5000, 'both streams ended');
    assert.ok(closeMs < 5000, `close took ${closeMs.toFixed(0)} ms`);
  });
});
