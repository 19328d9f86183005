// Streams against clients that misbehave on purpose (API.md "Hostile clients"):
// streams that never read, a client looping on an old Last-Event-ID, and ids
// from the future. On the embedded store, with real sockets; assertions on the
// gateway's own accounting (/metrics and store calls), not on RSS.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { KeyLayout } from '../src/registry/keys.ts';
import { encodeRecord, newRecord } from '../src/registry/records.ts';
import { MemoryStore } from '../src/registry/store/memory.ts';
import { eventually, metricValue, startGateway, uniquePrefix, type TestGateway } from './helpers/gateway.ts';
import { openSse } from './helpers/sse.ts';

const unread = (gw: TestGateway) => metricValue(gw, 'discovery_sse_unread_bytes');
const clients = (gw: TestGateway) => metricValue(gw, 'discovery_sse_clients');
const storeCalls = (gw: TestGateway, op: string) => metricValue(gw, 'discovery_store_request_duration_seconds_count', `{op="${op}"}`);

async function gateway(t: TestContext, store: MemoryStore, prefix: string, env: Record<string, string> = {}): Promise<TestGateway> {
  const gw = await startGateway({ prefix, env, deps: { store } });
  t.after(() => gw.close());
  return gw;
}

/** `count` instances of `service` with about `kb` KB of metadata each, straight into the store; resolves the last revision. */
async function fill(store: MemoryStore, prefix: string, service: string, count: number, kb: number): Promise<number> {
  const keys = new KeyLayout(prefix);
  const metadata: Record<string, string> = {};
  for (let k = 0; k < kb * 2; k++) metadata[`k${k}`] = 'm'.repeat(500);
  let revision = 0;
  for (let i = 0; i < count; i++) {
    const record = newRecord(service, `i${i}`, { address: '10.0.0.1', port: 80 + i, metadata }, 30);
    revision = (await store.txn([], [{ type: 'put', key: keys.instance(service, `i${i}`), value: encodeRecord(record) }])).revision;
  }
  return revision;
}

/** A stream opened on a raw socket that never reads: what it is sent stays in the gateway (or the kernel). */
async function silentStream(gw: TestGateway, path: string, lastEventId?: number): Promise<net.Socket> {
  const { port } = new URL(gw.base);
  const socket = net.connect(Number(port), '127.0.0.1');
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.pause();
  socket.on('error', () => {});
  const resume = lastEventId === undefined ? '' : `Last-Event-ID: ${lastEventId}\r\n`;
  socket.write(`GET ${path} HTTP/1.1\r\nHost: gw\r\nAccept: text/event-stream\r\n${resume}\r\n`);
  return socket;
}

/** The status of a stream request, read from its first line. */
async function streamStatus(gw: TestGateway, path: string): Promise<number> {
  const res = await fetch(gw.base + path, { signal: AbortSignal.timeout(10_000) });
  const status = res.status;
  await res.body?.cancel();
  return status;
}

describe('streams that never read', () => {
  it('share the snapshot and the replayed changes: silent streams over old ids and distinct scopes hold one copy', async (t) => {
    const store = new MemoryStore();
    const prefix = uniquePrefix('silent');
    const first = (await store.txn([], [])).revision;
    await fill(store, prefix, 'big', 120, 64); // ~8 MB: more than a connection's kernel buffers take
    const gw = await gateway(t, store, prefix);
    const size = (await gw.request('GET', '/services/big')).text.length;
    const sockets: net.Socket[] = [];
    t.after(() => sockets.forEach((s) => s.destroy()));
    for (let i = 0; i < 4; i++) sockets.push(await silentStream(gw, '/services/big/events'));
    for (let i = 0; i < 4; i++) sockets.push(await silentStream(gw, `/events?service=big&service=z${i}`));
    for (let i = 0; i < 4; i++) sockets.push(await silentStream(gw, '/services/big/events', first)); // replayed from the ring
    await eventually(async () => (await clients(gw)) === 12, 20_000, '12 open streams');
    // Each silent stream has more waiting than its connection takes: what waits is held once.
    const held = await eventually(async () => ((await unread(gw)) > size / 4 ? unread(gw) : false), 20_000, 'unread data held');
    assert.ok(
      held < 2 * size,
      `12 streams that never read hold ${held} bytes for a ${size}-byte service (one copy each would be ${12 * size})`,
    );
  });

  it('past the budget new streams are 503 too-many-streams; a stream that reads nothing for long is closed; a slow reader is not', async (t) => {
    const store = new MemoryStore();
    const prefix = uniquePrefix('budget');
    await fill(store, prefix, 'big', 120, 64);
    const gw = await gateway(t, store, prefix, {
      SSE_MEMORY_BUDGET_BYTES: String(2 << 20),
      SSE_STALL_SECONDS: '3',
      SSE_KEEPALIVE_SECONDS: '1',
    });
    // A slow reader: about 1 MB/s, so the ~8 MB snapshot takes longer than the stall limit.
    const slow = await silentStream(gw, '/services/big/events');
    let read = 0;
    slow.on('data', (chunk: Buffer) => {
      read += chunk.length;
      slow.pause();
      setTimeout(() => slow.resume(), 50);
    });
    slow.resume();
    const silent = await silentStream(gw, '/services/big/events');
    t.after(() => [slow, silent].forEach((s) => s.destroy()));
    await eventually(async () => (await unread(gw)) >= 2 << 20, 20_000, 'unread data past the budget');

    const refused = await gw.request('GET', '/services/big/events');
    assert.equal(refused.status, 503);
    assert.equal(refused.json.code, 'too-many-streams');

    // The silent stream is closed after SSE_STALL_SECONDS (its client would see it once it reads again).
    await eventually(async () => (await clients(gw)) === 1, 20_000, 'the silent stream closed');
    await eventually(async () => (await unread(gw)) < 2 << 20, 20_000, 'memory given back');
    assert.equal(await streamStatus(gw, '/services/big/events'), 200, 'new streams are accepted again');
    await eventually(async () => read > 7 << 20, 60_000, 'the slow reader read the whole snapshot');
    assert.equal(slow.destroyed, false, 'the slow reader was not cut');
  });
});

describe('old and future ids', () => {
  it('a client looping on an old Last-Event-ID costs one replay and one fence write, then gets its reset at once', async (t) => {
    const store = new MemoryStore({ historyLimit: 200_000 });
    const prefix = uniquePrefix('loop');
    const keys = new KeyLayout(prefix);
    const gw = await gateway(t, store, prefix, { EVENT_HISTORY: '100' });
    // More changes than one replay keeps (50 000), in batches of 128.
    const record = (id: string) => encodeRecord(newRecord('churn', id, { address: '10.0.0.1', port: 80 }, 30));
    for (let b = 0; b < 400; b++) {
      const ops = Array.from({ length: 128 }, (_, i) => ({
        type: 'put' as const,
        key: keys.instance('churn', `c${i}`),
        value: record(`c${i}`),
      }));
      await store.txn([], ops);
    }
    const latest = (await store.txn([], [])).revision;
    await eventually(async () => gw.app.registryRoot.cache.appliedRevision >= latest, 30_000, 'the gateway caught up');
    const fences = await storeCalls(gw, 'txn');
    const watches = await storeCalls(gw, 'watch');
    for (let i = 0; i < 4; i++) {
      const s = await openSse(`${gw.base}/events`, { headers: { 'last-event-id': '1' } });
      const first = await s.waitFor((e) => e.event === 'snapshot' || ['register', 'update'].includes(e.event));
      s.close();
      assert.equal(first.event, 'snapshot');
      assert.equal(JSON.parse(first.data).reset, true);
    }
    assert.ok((await storeCalls(gw, 'txn')) - fences <= 1, 'at most one fence write');
    assert.ok((await storeCalls(gw, 'watch')) - watches <= 1, 'at most one store replay');
  });

  it('a Last-Event-ID above the store revision gets a reset snapshot, then live changes', async (t) => {
    const store = new MemoryStore();
    const gw = await gateway(t, store, uniquePrefix('future'));
    await gw.request('PUT', '/services/a/instances/1', { address: '10.0.0.1', port: 80 });
    const revision = gw.app.registryRoot.cache.appliedRevision;
    const s = await openSse(`${gw.base}/services/a/events`, { headers: { 'last-event-id': String(revision + 1000) } });
    t.after(() => s.close());
    const snapshot = await s.waitFor((e) => e.event === 'snapshot', 10_000);
    const data = JSON.parse(snapshot.data);
    assert.equal(data.reset, true);
    assert.equal(data.revision, revision);
    assert.deepEqual(
      data.services.a.map((x: { id: string }) => x.id),
      ['1'],
    );
    await gw.request('PUT', '/services/a/instances/2', { address: '10.0.0.1', port: 81 });
    const live = await s.waitFor((e) => e.event === 'register', 10_000);
    assert.equal(JSON.parse(live.data).id, '2');
  });
});
