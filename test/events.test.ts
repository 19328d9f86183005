// Change streams (API.md "Change events", and "Beyond v1" for progress events
// and deregister reasons) as an SSE client sees them, on both stores: snapshot,
// change events and their ids, resume by Last-Event-ID from the ring, from the
// store and on a second gateway, reset after compaction, a stalled subscriber,
// the stream limit, shutdown, CORS and the stream headers.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { MemoryStore } from '../src/registry/store/memory.ts';
import { eventually, instancePath, startGateway, uniquePrefix, type TestGateway } from './helpers/gateway.ts';
import { eachStore } from './helpers/stores.ts';
import { openSse, SseParser, toChange, type SseEvent, type SseStream } from './helpers/sse.ts';

const json = (e: SseEvent) => JSON.parse(e.data);
const isChange = (e: SseEvent) => toChange(e) !== undefined;

/** The change an event stands for, in the form the tests expect. */
interface Expected {
  id: number;
  type: 'register' | 'update' | 'deregister';
  service: string;
  instance: string;
}
const expectedOf = (e: SseEvent): Expected => {
  const c = toChange(e);
  assert.ok(c, `not a change event: ${e.event} ${e.data}`);
  return { id: c.id, type: c.type, service: c.service, instance: c.instanceId };
};

async function put(gw: TestGateway, svc: string, id: string, body: Record<string, unknown> = {}) {
  const r = await gw.request('PUT', instancePath(svc, id), { address: '10.0.0.1', port: 8080, ttl: 0, ...body });
  assert.ok(r.status === 200 || r.status === 201, `PUT ${svc}/${id}: ${r.status} ${r.text}`);
  // The answer carries the first heartbeat's `interval` beside the instance; events carry the record alone.
  const instance = { ...r.json };
  delete instance.interval;
  return { rev: Number(r.headers.get('x-registry-revision')), instance, created: r.status === 201 };
}

async function remove(gw: TestGateway, svc: string, id: string): Promise<number> {
  const r = await gw.request('DELETE', instancePath(svc, id));
  assert.equal(r.status, 204, r.text);
  return Number(r.headers.get('x-registry-revision'));
}

async function batch(
  gw: TestGateway,
  register: Record<string, unknown>[],
  deregister: { service: string; id: string }[] = [],
): Promise<number> {
  const r = await gw.request('POST', '/batch', { register, deregister });
  assert.equal(r.status, 200, r.text);
  return r.json.revision;
}

async function sseClients(gw: TestGateway): Promise<number> {
  const r = await gw.request('GET', '/metrics');
  const m = /^discovery_sse_clients (\d+)/m.exec(r.text);
  assert.ok(m, 'discovery_sse_clients in /metrics');
  return Number(m[1]);
}

/** The state a fresh snapshot must show: every service with its instances, read over HTTP. */
async function currentState(gw: TestGateway): Promise<{ revision: number; services: Record<string, unknown[]> }> {
  const list = await gw.request('GET', '/services');
  const services: Record<string, unknown[]> = {};
  for (const s of list.json.services as { name: string }[])
    services[s.name] = (await gw.request('GET', `/services/${s.name}`)).json.instances;
  return { revision: list.json.revision, services };
}

/**
 * A mix of changes through `gw`: registers, updates (one by a status
 * heartbeat), a plain heartbeat (no event), a DELETE and a batch, over several
 * services. Resolves the events they must produce, in order.
 */
async function makeChanges(gw: TestGateway, tag: string): Promise<Expected[]> {
  const out: Expected[] = [];
  const a = `a-${tag}`;
  const b = `b-${tag}`;
  out.push({ id: (await put(gw, 'alpha', a)).rev, type: 'register', service: 'alpha', instance: a });
  out.push({ id: (await put(gw, 'beta', b)).rev, type: 'register', service: 'beta', instance: b });
  out.push({ id: (await put(gw, 'alpha', a, { weight: 7 })).rev, type: 'update', service: 'alpha', instance: a });
  assert.equal((await gw.request('PUT', `${instancePath('alpha', a)}/heartbeat`)).status, 200);
  const down = await gw.request('PUT', `${instancePath('beta', b)}/heartbeat`, { status: 'down' });
  assert.equal(down.status, 200, down.text);
  out.push({ id: Number(down.headers.get('x-registry-revision')), type: 'update', service: 'beta', instance: b });
  out.push({ id: await remove(gw, 'beta', b), type: 'deregister', service: 'beta', instance: b });
  const g1 = `g1-${tag}`;
  const g2 = `g2-${tag}`;
  const rev = await batch(
    gw,
    [
      { service: 'gamma', id: g1, address: '10.0.0.2', port: 1, ttl: 0 },
      { service: 'gamma', id: g2, address: '10.0.0.3', port: 2, ttl: 0 },
    ],
    [{ service: 'alpha', id: a }],
  );
  out.push({ id: rev, type: 'register', service: 'gamma', instance: g1 });
  out.push({ id: rev, type: 'register', service: 'gamma', instance: g2 });
  out.push({ id: rev, type: 'deregister', service: 'alpha', instance: a });
  return out;
}

/** `count` registrations of service `svc` spread over batches of at most 40 (more than the ring of 100 holds). */
async function bulk(gw: TestGateway, svc: string, count: number, tag: string): Promise<number> {
  let rev = 0;
  for (let i = 0; i < count; i += 40) {
    const items = [];
    for (let j = i; j < Math.min(count, i + 40); j++)
      items.push({ service: svc, id: `${tag}-${j}`, address: '10.1.0.1', port: 1000 + (j % 60000), ttl: 0 });
    rev = await batch(gw, items);
  }
  return rev;
}

/** Subscribe, take the snapshot, see one change, and disconnect: resolves the last id it saw. */
async function subscribeAndLeave(gw: TestGateway, path = '/events', service = 'alpha'): Promise<string> {
  const s = await openSse(gw.base + path);
  assert.equal(s.status, 200);
  await s.waitFor((e) => e.event === 'snapshot', 5000, 'the snapshot');
  const seed = await put(gw, service, `seed-${Math.random().toString(36).slice(2, 8)}`);
  await s.waitFor((e) => e.id === String(seed.rev), 5000, 'the seed change');
  const last = s.lastEventId;
  assert.equal(last, String(seed.rev));
  s.close();
  return last;
}

/** Take exactly `n` events from `s`; then a fresh change must be the very next one (nothing more was queued). */
async function takeExactly(gw: TestGateway, s: SseStream, n: number, ms = 10_000): Promise<SseEvent[]> {
  const got: SseEvent[] = [];
  for (let i = 0; i < n; i++) got.push(await s.nextEvent(ms, `event ${i + 1} of ${n}`));
  const id = `live-${Math.random().toString(36).slice(2, 8)}`;
  const live = await put(gw, 'omega', id);
  const next = await s.nextEvent(5000, 'the live change after the replay');
  assert.deepEqual(expectedOf(next), { id: live.rev, type: 'register', service: 'omega', instance: id });
  return got;
}

describe('the SSE test client parses event streams as the HTML spec says', () => {
  it('fields, comments, multi-line data, CRLF and CR, and events split across chunks', () => {
    const events: SseEvent[] = [];
    const comments: string[] = [];
    const retries: number[] = [];
    const p = new SseParser(
      (e) => events.push(e),
      (c) => comments.push(c),
      (r) => retries.push(r),
    );
    const text =
      'retry: 2500\n\n: keep-alive\r\nid: 7\r\nevent: register\r\ndata: {"a":\r\ndata:1}\r\n\r\ndata: no id field\rdata:second\r\rretry: x\nid\nfoo: bar\ndata\n\n';
    // Every split point, including one between the CR and LF of a CRLF.
    for (let cut = 0; cut <= text.length; cut++) {
      events.length = comments.length = retries.length = 0;
      p.lastEventId = '';
      p.feed(text.slice(0, cut));
      p.feed(text.slice(cut));
      assert.deepEqual(retries, [2500], `cut at ${cut}`);
      assert.deepEqual(comments, ['keep-alive']);
      assert.deepEqual(events, [
        { id: '7', event: 'register', data: '{"a":\n1}' },
        { id: '7', event: 'message', data: 'no id field\nsecond' },
        { id: '', event: 'message', data: '' },
      ]);
    }
  });
});

eachStore('change events', (store) => {
  interface Started {
    gw: TestGateway;
    memory?: MemoryStore;
    compact(revision: number): Promise<void>;
  }
  /** A gateway closed after the test; `share` puts it on the store and prefix of another. */
  async function gateway(t: TestContext, env: Record<string, string> = {}, share?: Started): Promise<Started> {
    const memory = store.kind === 'memory' ? (share?.memory ?? new MemoryStore()) : undefined;
    const gw = await startGateway({
      etcd: store.etcd,
      env,
      prefix: share?.gw.prefix ?? uniquePrefix('ev'),
      deps: memory ? { store: memory } : undefined,
    });
    t.after(() => gw.close());
    return {
      gw,
      memory,
      compact: async (revision) => (memory ? memory.compact(revision) : store.etcd!.compact(revision)),
    };
  }

  it('a new stream starts with retry, then a snapshot whose id is its revision; no compression, no proxy buffering', async (t) => {
    const { gw } = await gateway(t);
    const x = await put(gw, 'alpha', 'x1', { tags: ['http'] });
    await put(gw, 'beta', 'y1');
    const s = await openSse(`${gw.base}/events`, { headers: { 'accept-encoding': 'gzip, deflate, br' } });
    t.after(() => s.close());
    assert.equal(s.status, 200);
    assert.match(s.headers!.get('content-type') ?? '', /^text\/event-stream/);
    assert.match(s.headers!.get('cache-control') ?? '', /no-cache/);
    assert.equal(s.headers!.get('x-accel-buffering'), 'no');
    assert.equal(s.headers!.get('content-encoding'), null);
    const snap = await s.nextEvent(5000, 'the snapshot');
    assert.equal(snap.event, 'snapshot');
    assert.equal(s.retries.length, 1);
    assert.ok(s.retries[0]! >= 1000 && s.retries[0]! <= 5000, `retry ${s.retries[0]} between 1 and 5 s`);
    assert.ok(s.retryArrivals[0]!.seq < s.arrivalOf(snap).seq, 'retry comes first');
    const data = json(snap);
    assert.equal(snap.id, String(data.revision));
    assert.equal(data.reset, undefined);
    assert.deepEqual(data, await currentState(gw));
    assert.deepEqual(data.services.alpha, [x.instance]);
  });

  it('register, update and deregister carry the store revision as id and the instance; a plain heartbeat emits nothing', async (t) => {
    const { gw } = await gateway(t);
    const s = await openSse(`${gw.base}/events`);
    t.after(() => s.close());
    await s.waitFor((e) => e.event === 'snapshot');

    const reg = await put(gw, 'alpha', 'i1', { metadata: { zone: 'eu-1' } });
    let e = await s.nextEvent();
    assert.equal(e.event, 'register');
    assert.equal(e.id, String(reg.rev));
    assert.deepEqual(json(e), { type: 'register', service: 'alpha', id: 'i1', revision: reg.rev, instance: reg.instance });

    const upd = await put(gw, 'alpha', 'i1', { weight: 3 });
    e = await s.nextEvent();
    assert.equal(e.event, 'update');
    assert.equal(e.id, String(upd.rev));
    assert.deepEqual(json(e), { type: 'update', service: 'alpha', id: 'i1', revision: upd.rev, instance: upd.instance });

    assert.equal((await gw.request('PUT', `${instancePath('alpha', 'i1')}/heartbeat`)).status, 200);
    assert.equal((await gw.request('PUT', `${instancePath('alpha', 'i1')}/heartbeat`, { status: 'up' })).status, 200);
    const status = await gw.request('PUT', `${instancePath('alpha', 'i1')}/heartbeat`, { status: 'draining' });
    e = await s.nextEvent();
    assert.equal(e.event, 'update', 'the heartbeats before the status change sent nothing');
    assert.equal(e.id, status.headers.get('x-registry-revision'));
    const draining = json(e).instance;
    assert.deepEqual(draining, { ...upd.instance, status: 'draining', revision: Number(e.id) });

    const del = await remove(gw, 'alpha', 'i1');
    e = await s.nextEvent();
    assert.equal(e.event, 'deregister');
    assert.equal(e.id, String(del));
    assert.deepEqual(json(e), {
      type: 'deregister',
      service: 'alpha',
      id: 'i1',
      revision: del,
      reason: 'deregistered',
      instance: draining,
    });
  });

  it('an instance whose TTL runs out gets a deregister event with reason "expired"', async (t) => {
    const { gw } = await gateway(t);
    const s = await openSse(`${gw.base}/services/short/events`);
    t.after(() => s.close());
    await s.waitFor((e) => e.event === 'snapshot');
    const reg = await put(gw, 'short', 'i1', { ttl: 1 });
    assert.equal((await s.nextEvent()).event, 'register');
    const e = await s.nextEvent(15_000, 'the expiry');
    assert.equal(e.event, 'deregister');
    assert.ok(Number(e.id) > reg.rev);
    const data = json(e);
    assert.equal(data.reason, 'expired');
    assert.equal(data.revision, Number(e.id));
    assert.deepEqual(data.instance, reg.instance);
  });

  it('/services/{name}/events and /events?service= carry only the named services', async (t) => {
    const { gw } = await gateway(t);
    await put(gw, 'a', 'old');
    await put(gw, 'c', 'old');
    const one = await openSse(`${gw.base}/services/a/events`);
    const two = await openSse(`${gw.base}/events?service=a&service=b`);
    const all = await openSse(`${gw.base}/events`);
    t.after(() => [one, two, all].forEach((s) => s.close()));
    assert.deepEqual(Object.keys(json(await one.nextEvent()).services), ['a']);
    assert.deepEqual(Object.keys(json(await two.nextEvent()).services).sort(), ['a', 'b'], 'a named service is shown even when empty');
    assert.deepEqual(Object.keys(json(await all.nextEvent()).services).sort(), ['a', 'c']);

    const revs: Record<string, number> = {};
    for (const svc of ['c', 'b', 'a', 'c', 'b'])
      revs[svc] = (await put(gw, svc, `n-${svc}`, { weight: Math.floor(Math.random() * 100) })).rev;
    const end = await put(gw, 'a', 'end');
    for (const s of [one, two, all]) await s.waitFor((e) => e.id === String(end.rev), 5000, 'the last change');
    const services = (s: SseStream) => s.events.filter(isChange).map((e) => json(e).service);
    assert.deepEqual(services(one), ['a', 'a']);
    assert.deepEqual(services(two), ['b', 'a', 'b', 'a']);
    assert.deepEqual(services(all), ['c', 'b', 'a', 'c', 'b', 'a']);
  });

  it("a batch's events share one id and arrive in one read", async (t) => {
    const { gw } = await gateway(t);
    await put(gw, 'c', 'gone');
    const s = await openSse(`${gw.base}/events`);
    t.after(() => s.close());
    await s.waitFor((e) => e.event === 'snapshot');
    const rev = await batch(
      gw,
      [
        { service: 'a', id: 'x', address: '10.0.0.1', port: 1 },
        { service: 'b', id: 'y', address: '10.0.0.2', port: 2 },
      ],
      [{ service: 'c', id: 'gone' }],
    );
    const got = [await s.nextEvent(), await s.nextEvent(), await s.nextEvent()];
    assert.deepEqual(got.map(expectedOf), [
      { id: rev, type: 'register', service: 'a', instance: 'x' },
      { id: rev, type: 'register', service: 'b', instance: 'y' },
      { id: rev, type: 'deregister', service: 'c', instance: 'gone' },
    ]);
    assert.equal(json(got[2]!).reason, 'deregistered');
    assert.equal(new Set(got.map((e) => s.arrivalOf(e).read)).size, 1, 'one read');
  });

  it('Last-Event-ID resumes with exactly the changes made while away, in order, and no snapshot', async (t) => {
    const { gw } = await gateway(t);
    const last = await subscribeAndLeave(gw);
    const expected = await makeChanges(gw, 'h');
    const s = await openSse(`${gw.base}/events`, { lastEventId: last });
    t.after(() => s.close());
    const got = await takeExactly(gw, s, expected.length);
    assert.deepEqual(got.map(expectedOf), expected);
  });

  it('?lastEventId= resumes like the header, here on a per-service stream', async (t) => {
    const { gw } = await gateway(t);
    const last = await subscribeAndLeave(gw, '/services/gamma/events', 'gamma');
    const expected = (await makeChanges(gw, 'q')).filter((x) => x.service === 'gamma');
    const s = await openSse(`${gw.base}/services/gamma/events?lastEventId=${last}`);
    t.after(() => s.close());
    const got: SseEvent[] = [];
    for (let i = 0; i < expected.length; i++) got.push(await s.nextEvent());
    assert.deepEqual(got.map(expectedOf), expected);
    const live = await put(gw, 'gamma', 'live');
    assert.equal((await s.nextEvent()).id, String(live.rev));
  });

  it('a second gateway on the same store and prefix resumes the stream of the first', async (t) => {
    const first = await gateway(t);
    const second = await gateway(t, {}, first);
    const last = await subscribeAndLeave(first.gw);
    const expected = [...(await makeChanges(first.gw, 'one')), ...(await makeChanges(second.gw, 'two'))];
    const s = await openSse(`${second.gw.base}/events`, { lastEventId: last });
    t.after(() => s.close());
    const got = await takeExactly(second.gw, s, expected.length);
    assert.deepEqual(got.map(expectedOf), expected);
    assert.ok(!s.events.some((e) => e.event === 'snapshot'));
  });

  it('beyond the ring the changes are replayed from the store, with no gap before the live ones', async (t) => {
    const { gw } = await gateway(t, { EVENT_HISTORY: '100' });
    const reference = await openSse(`${gw.base}/events`);
    t.after(() => reference.close());
    await reference.waitFor((e) => e.event === 'snapshot');
    const last = await subscribeAndLeave(gw);
    const expected = await makeChanges(gw, 'r1');
    await bulk(gw, 'bulk', 150, 'b');
    expected.push(...(await makeChanges(gw, 'r2')));
    // Precondition: the ring no longer reaches back to `last`, so the store replay runs.
    assert.ok((gw.app.gateway.hub as unknown as { ring: { base: number } }).ring.base > Number(last), 'the ring was outrun');

    // Live writes go on while the resumed stream replays.
    let writing = true;
    const liveWrites = (async () => {
      for (let i = 0; writing || i < 5; i++) await put(gw, 'live', `l${i % 7}`, { weight: i });
    })();
    await eventually(
      async () => (reference.events.filter((e) => json(e).service === 'live').length > 0) as boolean,
      5000,
      'the first live write',
    );
    const s = await openSse(`${gw.base}/events`, { lastEventId: last });
    t.after(() => s.close());
    await s.waitFor((e) => e.event === 'update' && json(e).service === 'live', 15_000, 'a live change after the replay');
    writing = false;
    await liveWrites;
    const end = await put(gw, 'omega', 'end');
    for (const x of [reference, s]) await x.waitFor((e) => e.id === String(end.rev), 10_000, 'the last change');

    assert.ok(!s.events.some((e) => e.event === 'snapshot'), 'no snapshot on resume');
    const want = reference.events.filter((e) => isChange(e) && Number(e.id) > Number(last)).map(expectedOf);
    const got = s.events.filter(isChange).map(expectedOf);
    assert.equal(got.length, want.length, 'as many events as the subscriber that never left');
    assert.deepEqual(got, want);
    assert.deepEqual(
      got.filter((x) => !['bulk', 'live', 'omega'].includes(x.service)),
      expected,
    );
    assert.equal(got.filter((x) => x.service === 'bulk').length, 150);
  });

  it('after compaction past the resume id the stream gets a reset snapshot equal to the current state', async (t) => {
    const started = await gateway(t, { EVENT_HISTORY: '100' });
    const { gw } = started;
    const last = await subscribeAndLeave(gw);
    await makeChanges(gw, 'c1');
    const rev = await bulk(gw, 'bulk', 120, 'c');
    await remove(gw, 'bulk', 'c-7');
    const top = await remove(gw, 'bulk', 'c-8');
    assert.ok(rev < top);
    await started.compact(top);

    const s = await openSse(`${gw.base}/events`, { lastEventId: last });
    t.after(() => s.close());
    const snap = await s.nextEvent(10_000, 'the reset snapshot');
    assert.equal(snap.event, 'snapshot');
    const data = json(snap);
    assert.equal(data.reset, true);
    assert.equal(snap.id, String(data.revision));
    const state = await currentState(gw);
    assert.deepEqual({ revision: data.revision, services: data.services }, state);
    assert.equal(data.services.bulk.length, 118);
    // and the stream goes on live from there
    const live = await put(gw, 'omega', 'after-reset');
    assert.deepEqual(expectedOf(await s.nextEvent()), { id: live.rev, type: 'register', service: 'omega', instance: 'after-reset' });
  });

  it('a quiet stream gets keep-alive comments and a progress event for changes outside its scope', async (t) => {
    const { gw } = await gateway(t, { SSE_KEEPALIVE_SECONDS: '1' });
    const s = await openSse(`${gw.base}/services/a/events`);
    t.after(() => s.close());
    const snap = await s.nextEvent();
    const other = await put(gw, 'b', 'x');
    const progress = await s.nextEvent(5000, 'a progress event');
    assert.equal(progress.event, 'progress');
    assert.ok(Number(progress.id) >= other.rev && Number(progress.id) > Number(snap.id));
    assert.deepEqual(json(progress), { revision: Number(progress.id) });
    assert.ok(s.comments.includes('keep-alive'));
    // Resuming from the progress id misses nothing in scope and replays nothing out of it.
    s.close();
    await put(gw, 'b', 'y');
    const mine = await put(gw, 'a', 'x');
    const again = await openSse(`${gw.base}/services/a/events`, { lastEventId: progress.id });
    t.after(() => again.close());
    assert.deepEqual(expectedOf(await again.nextEvent()), { id: mine.rev, type: 'register', service: 'a', instance: 'x' });
  });

  it('a subscriber that stops reading does not slow a healthy one and is closed by the gateway', async (t) => {
    const { gw } = await gateway(t, { SSE_BUFFER_BYTES: '65536' });
    const healthy = await openSse(`${gw.base}/events`);
    t.after(() => healthy.close());
    await healthy.waitFor((e) => e.event === 'snapshot');

    const port = Number(new URL(gw.base).port);
    const stalled = net.connect(port, '127.0.0.1');
    t.after(() => stalled.destroy());
    await once(stalled, 'connect');
    stalled.write('GET /events HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n');
    stalled.pause(); // and never read
    let stalledClosed = false;
    stalled.on('close', () => (stalledClosed = true));
    await eventually(async () => (await sseClients(gw)) === 2, 5000, 'two open streams');

    // ~30 KiB of metadata per instance, 20 instances per write: ~600 KiB per change set.
    const metadata = (round: number) => Object.fromEntries(Array.from({ length: 60 }, (_, k) => [`k${k}`, `${round}-`.padEnd(500, 'x')]));
    const latencies: number[] = [];
    let roundsAfterClose = -1;
    for (let round = 0; round < 60 && roundsAfterClose < 3; round++) {
      const items = Array.from({ length: 20 }, (_, i) => ({
        service: 'big',
        id: `i${i}`,
        address: '10.0.0.1',
        port: 80,
        ttl: 0,
        metadata: metadata(round),
      }));
      const written = performance.now();
      const rev = await batch(gw, items);
      const e = await healthy.waitFor((x) => x.id === String(rev), 5000, `round ${round} on the healthy stream`);
      await healthy.waitFor((x) => x.id === String(rev) && json(x).id === 'i19', 5000, `the rest of round ${round}`);
      latencies.push(healthy.arrivalOf(e).at - written);
      if (roundsAfterClose >= 0) roundsAfterClose++;
      else if ((await sseClients(gw)) === 1) roundsAfterClose = 0;
    }
    t.diagnostic(`${latencies.length} change sets; worst delivery ${Math.max(...latencies).toFixed(0)} ms`);
    assert.ok(roundsAfterClose >= 0, 'the stalled stream was closed by the gateway');
    assert.ok(healthy.isOpen, 'the healthy stream is still open');
    const worst = Math.max(...latencies);
    assert.ok(worst < 2000, `every change reached the healthy stream within 2 s (worst ${worst.toFixed(0)} ms)`);
    assert.equal(await sseClients(gw), 1);
    // Once it reads again, it finds the end of the stream after what was already sent.
    stalled.resume();
    await eventually(async () => stalledClosed, 5000, 'the stalled socket to be closed');
  });

  it('past SSE_MAX_STREAMS a stream gets 503 too-many-streams; closing one frees a slot', async (t) => {
    const { gw } = await gateway(t, { SSE_MAX_STREAMS: '2' });
    const a = await openSse(`${gw.base}/events`);
    const b = await openSse(`${gw.base}/services/x/events`);
    t.after(() => [a, b].forEach((s) => s.close()));
    await a.waitFor((e) => e.event === 'snapshot');
    await b.waitFor((e) => e.event === 'snapshot');
    const c = await openSse(`${gw.base}/events`);
    assert.equal(c.status, 503);
    assert.match(c.headers!.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(JSON.parse(c.body).code, 'too-many-streams');
    a.close();
    const d = await eventually(
      async () => {
        const x = await openSse(`${gw.base}/events`);
        return x.status === 200 ? x : (x.close(), false);
      },
      5000,
      'a free slot',
    );
    t.after(() => d.close());
    assert.equal((await d.nextEvent()).event, 'snapshot');
  });

  it('app.close() with open streams resolves promptly and ends them', async (t) => {
    const { gw } = await gateway(t);
    const streams = [await openSse(`${gw.base}/events`), await openSse(`${gw.base}/services/a/events`)];
    for (const s of streams) await s.waitFor((e) => e.event === 'snapshot');
    const t0 = performance.now();
    await gw.close();
    const took = performance.now() - t0;
    assert.ok(took < 2000, `close took ${took.toFixed(0)} ms`);
    await Promise.all(
      streams.map(async (s) => {
        await s.until('the stream to end', () => !s.isOpen, 2000);
        assert.notEqual(s.endReason, 'closed');
      }),
    );
  });

  it('with CORS_ORIGINS a stream carries Access-Control-Allow-Origin for an allowed origin only', async (t) => {
    const { gw } = await gateway(t, { CORS_ORIGINS: 'http://allowed.example' });
    const ok = await openSse(`${gw.base}/events`, { headers: { origin: 'http://allowed.example' } });
    const other = await openSse(`${gw.base}/events`, { headers: { origin: 'http://other.example' } });
    t.after(() => [ok, other].forEach((s) => s.close()));
    assert.equal(ok.status, 200);
    assert.equal(ok.headers!.get('access-control-allow-origin'), 'http://allowed.example');
    assert.equal(other.headers!.get('access-control-allow-origin'), null);
    assert.equal((await ok.nextEvent()).event, 'snapshot');
  });
});
