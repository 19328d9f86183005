// API.md "Beyond v1", on a real etcd: why an instance left (the same reason on
// every replica, live, replayed from the ring or from the store, across an etcd
// restart), read-your-writes across replicas with minRevision, progress events
// and compaction, weighted pick, Prometheus HTTP SD (checked by promtool and a
// real Prometheus), Age on stale answers, and herd-free pacing.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { eventually, startGateway, uniquePrefix, type TestGateway } from './helpers/gateway.ts';
import { CHANGE_TYPES, openSse, type SseStream } from './helpers/sse.ts';

let etcd: EtcdCluster;
before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  await etcd?.close();
});

const instance = (address: string, port: number, extra: Record<string, unknown> = {}) => ({ address, port, ...extra });

/** Change events of a stream, as comparable values (id, type and the whole data). */
function changes(s: SseStream): { id: string; event: string; data: Record<string, unknown> }[] {
  return s.events
    .filter((e) => CHANGE_TYPES.has(e.event))
    .map((e) => ({ id: e.id, event: e.event, data: JSON.parse(e.data) as Record<string, unknown> }));
}

async function changesAtLeast(s: SseStream, n: number, ms = 10_000): Promise<ReturnType<typeof changes>> {
  await s.until(`${n} change events on ${s.url}`, () => changes(s).length >= n, ms);
  return changes(s);
}

/** etcd's current revision, asked of etcd itself. */
async function etcdRevision(): Promise<number> {
  const out = JSON.parse(await etcd.ctl(['endpoint', 'status', '-w', 'json'])) as { Status: { header: { revision: number } } }[];
  return out[0]!.Status.header.revision;
}

/** One sample of a Prometheus metric from /metrics text (0 when absent). */
async function metric(gw: TestGateway, name: string, labels = ''): Promise<number> {
  const text = (await gw.request('GET', '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('why an instance left', () => {
  const prefix = uniquePrefix('reason');
  let a: TestGateway;
  let b: TestGateway;
  const streams: SseStream[] = [];
  let before0 = 0;
  let live: ReturnType<typeof changes> = [];

  before(async () => {
    a = await startGateway({ etcd, prefix });
    before0 = (await a.request('GET', '/services')).json.revision;
    for (const id of ['del', 'batch'])
      assert.equal((await a.request('PUT', `/services/orders/instances/${id}`, instance('10.1.0.1', 8080))).status, 201);
    assert.equal((await a.request('PUT', '/services/orders/instances/exp', instance('10.1.0.2', 8080, { ttl: 1 }))).status, 201);
    // B starts after every registration: its ring holds nothing at or below `before0`.
    b = await startGateway({ etcd, prefix });
  });
  after(async () => {
    for (const s of streams) s.close();
    await Promise.all([a?.close(), b?.close()]);
  });

  const open = async (gw: TestGateway, path: string, lastEventId?: string) => {
    const s = await openSse(gw.base + path, { lastEventId });
    streams.push(s);
    assert.equal(s.status, 200);
    return s;
  };

  test('DELETE, batch deregister and TTL expiry carry their reason live on both gateways', async () => {
    const liveA = await open(a, '/services/orders/events');
    const liveB = await open(b, '/events');
    await liveA.waitFor((e) => e.event === 'snapshot');
    await liveB.waitFor((e) => e.event === 'snapshot');

    assert.equal((await b.request('DELETE', '/services/orders/instances/del')).status, 204);
    const batch = await a.request('POST', '/batch', {
      register: [{ service: 'orders', id: 'new', ...instance('10.1.0.3', 8080) }],
      deregister: [{ service: 'orders', id: 'batch' }],
    });
    assert.equal(batch.status, 200);
    // 'exp' gets no heartbeat: etcd expires its lease (at least 2 s).
    const onA = await changesAtLeast(liveA, 4, 15_000);
    const onB = await changesAtLeast(liveB, 4, 15_000);
    const summary = onA.map((c) => [c.event, c.data.id, c.data.reason]);
    assert.deepEqual(summary, [
      ['deregister', 'del', 'deregistered'],
      ['register', 'new', undefined],
      ['deregister', 'batch', 'deregistered'],
      ['deregister', 'exp', 'expired'],
    ]);
    // Both replicas describe every change identically (same ids, reasons, last records).
    assert.deepEqual(onB, onA);
    assert.equal(onA[1]!.id, String(batch.json.revision));
    assert.equal(onA[2]!.id, String(batch.json.revision), 'a batch is one revision');
    const lastRecord = onA[0]!.data.instance as { id: string; revision: number };
    assert.equal(lastRecord.id, 'del');
    assert.ok(lastRecord.revision <= before0 + 3, 'a deregister carries the last record with its own revision');
    live = onA;
    for (const gw of [a, b])
      assert.ok((await metric(gw, 'discovery_expirations_total')) >= 1, 'discovery_expirations_total counts the expiry');
  });

  test('a resume from an older Last-Event-ID replays the same reasons, from the ring (A) and from the store (B)', async () => {
    assert.ok(live.length === 4, 'needs the live test');
    const watchesBefore = await metric(b, 'discovery_store_request_duration_seconds_count', '{op="watch"}');
    const fromRing = await open(a, '/services/orders/events', String(before0));
    const fromStore = await open(b, '/services/orders/events', String(before0));
    const fromStoreAll = await open(b, `/events?lastEventId=${before0}`);
    // The registrations of del, batch and exp come first (B never had them in its ring).
    for (const s of [fromRing, fromStore, fromStoreAll]) {
      const got = await changesAtLeast(s, 7);
      await sleep(300); // nothing more, nothing twice
      assert.deepEqual(changes(s), got);
      assert.deepEqual(
        got.slice(0, 3).map((c) => [c.event, c.data.id]),
        [
          ['register', 'del'],
          ['register', 'batch'],
          ['register', 'exp'],
        ],
      );
      assert.deepEqual(got.slice(3), live, `replay on ${s.url} equals the live events`);
      assert.ok(!s.events.some((e) => e.event === 'snapshot'), 'a resume sends no snapshot');
    }
    assert.ok(
      (await metric(b, 'discovery_store_request_duration_seconds_count', '{op="watch"}')) > watchesBefore,
      'B replayed from the store',
    );
  });

  test('bookkeeping keys carry a lease and never show in any answer', async () => {
    const out = JSON.parse(await etcd.ctl(['get', '--prefix', `${prefix}/_/`, '-w', 'json'])) as {
      kvs?: { key: string; lease?: number }[];
    };
    const raw = await etcd.ctl(['get', '--prefix', `${prefix}/_/`, '-w', 'json']);
    const keys = (out.kvs ?? []).map((kv) => Buffer.from(kv.key, 'base64').toString());
    assert.ok(
      keys.filter((k) => k.startsWith(`${prefix}/_/deregistered/`)).length >= 2,
      `markers of the DELETE and the batch: ${keys.join(' ')}`,
    );
    // Lease ids exceed 2^53: read them as text, not through JSON.parse.
    const leases = [...raw.matchAll(/"lease":(\d+)/g)].map((m) => BigInt(m[1]!));
    assert.equal(leases.length, keys.length, 'every bookkeeping key has a lease');
    for (const lease of new Set(leases)) {
      assert.ok(lease > 0n);
      const ttl = await etcd.ctl(['lease', 'timetolive', lease.toString(16)]);
      const m = /remaining\((-?\d+)s\)/.exec(ttl);
      assert.ok(m && Number(m[1]) > 0 && Number(m[1]) <= 120, `lease ${lease.toString(16)} expires by itself: ${ttl}`);
    }

    const tokens = keys.map((k) => k.slice(k.lastIndexOf('/') + 1));
    const texts: string[] = [];
    for (const gw of [a, b]) {
      const list = await gw.request('GET', '/services');
      assert.deepEqual(list.json.services, [{ name: 'orders', instances: 1 }]);
      texts.push(list.text, (await gw.request('GET', '/services/orders')).text, (await gw.request('GET', '/sd/prometheus')).text);
      const snap = await open(gw, '/events');
      const e = await snap.waitFor((x) => x.event === 'snapshot');
      assert.deepEqual(Object.keys((JSON.parse(e.data) as { services: object }).services), ['orders']);
      texts.push(e.data);
      snap.close();
    }
    for (const text of texts) {
      assert.ok(!text.includes('/_/') && !text.includes('"_"') && !text.includes('deregistered/'), text);
      for (const t of tokens) assert.ok(!text.includes(t), `bookkeeping key ${t} leaked into ${text}`);
    }
  });

  test('the reason survives an etcd restart between the delete and the resume', async () => {
    await etcd.restart(0);
    await eventually(async () => (await b.request('GET', '/health/ready')).status === 200, 20_000, 'B ready again');
    // B's ring does not reach back to before0: this is a replay from the restarted store.
    const s = await open(b, '/services/orders/events', String(before0));
    const got = await changesAtLeast(s, 7, 15_000);
    assert.deepEqual(got.slice(3), live);
    // And on a gateway that starts only now.
    const c = await startGateway({ etcd, prefix });
    try {
      const s2 = await open(c, '/services/orders/events', String(before0));
      assert.deepEqual((await changesAtLeast(s2, 7, 15_000)).slice(3), live);
      s2.close();
    } finally {
      await c.close();
    }
  });

  // Regression: the shared bookkeeping lease was reused for a minute even when it
  // was gone, so every DELETE failed as 404 "lease not found" until it was renewed.
  test('a DELETE still works and says why after the bookkeeping lease was revoked', async () => {
    assert.equal((await a.request('PUT', '/services/orders/instances/again', instance('10.1.0.4', 8080))).status, 201);
    const raw = await etcd.ctl(['get', '--prefix', `${prefix}/_/`, '-w', 'json']);
    for (const lease of new Set([...raw.matchAll(/"lease":(\d+)/g)].map((m) => BigInt(m[1]!).toString(16))))
      await etcd.ctl(['lease', 'revoke', lease]);
    const s = await open(b, '/services/orders/events');
    await s.waitFor((e) => e.event === 'snapshot');
    const del = await a.request('DELETE', '/services/orders/instances/again');
    assert.equal(del.status, 204, del.text);
    const ev = await s.waitFor((e) => e.event === 'deregister');
    assert.equal((JSON.parse(ev.data) as { reason: string }).reason, 'deregistered');
  });
});

describe('read-your-writes across replicas (minRevision)', () => {
  const prefix = uniquePrefix('ryw');
  let a: TestGateway;
  let b: TestGateway;
  before(async () => {
    [a, b] = await Promise.all([startGateway({ etcd, prefix }), startGateway({ etcd, prefix })]);
  });
  after(async () => Promise.all([a?.close(), b?.close()]));

  test('a write on A is always read on B right after, with minRevision', async () => {
    for (let i = 0; i < 40; i++) {
      const w = await a.request('PUT', `/services/ryw/instances/i${i}`, instance('10.2.0.1', 1000 + i, { ttl: 0 }));
      assert.equal(w.status, 201);
      const rev = Number(w.headers.get('x-registry-revision'));
      assert.equal(rev, w.json.revision);
      const [svc, one, all] = await Promise.all([
        b.request('GET', `/services/ryw?minRevision=${rev}`),
        b.request('GET', `/services/ryw/instances/i${i}?minRevision=${rev}`),
        b.request('GET', `/services?minRevision=${rev}`),
      ]);
      assert.equal(svc.status, 200);
      assert.ok(svc.json.revision >= rev);
      assert.equal(svc.json.instances.length, i + 1, `round ${i}: B misses the write`);
      assert.equal(one.status, 200, `round ${i}: ${one.text}`);
      assert.equal(one.json.revision, rev);
      assert.ok(all.json.revision >= rev);
      assert.deepEqual(all.json.services, [{ name: 'ryw', instances: i + 1 }]);
    }
  });

  test('a revision far ahead answers after a bounded wait, honestly labelled', async () => {
    const ahead = (await etcdRevision()) + 1_000_000;
    const t0 = Date.now();
    const answers = await Promise.all([
      b.request('GET', `/services/ryw?minRevision=${ahead}`),
      b.request('GET', `/services?minRevision=${ahead}`),
      b.request('GET', `/services/ryw/instances/i0?minRevision=${ahead}`),
    ]);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 2500 && elapsed < 6000, `answered in ${elapsed} ms`);
    const now = await etcdRevision();
    for (const r of answers) {
      assert.equal(r.status, 200, r.text);
      const label = Number(r.headers.get('x-registry-revision'));
      assert.ok(label > 0 && label <= now, `label ${label} is a revision etcd has (${now}), not ${ahead}`);
      if (r.json.revision !== undefined) assert.ok(r.json.revision <= now);
    }
    assert.equal(answers[0]!.json.instances.length, 40);
  });

  test('a malformed minRevision is 400', async () => {
    for (const bad of ['abc', '-1', '1.5', '']) {
      for (const path of ['/services', '/services/ryw', '/services/ryw/instances/i0']) {
        if (bad === '') continue; // an empty value is no value
        const r = await b.request('GET', `${path}?minRevision=${bad}`);
        assert.equal(r.status, 400, `${path}?minRevision=${bad}: ${r.text}`);
        assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);
        assert.equal(r.json.code, 'invalid-request');
      }
    }
  });
});

describe('progress events', () => {
  const prefix = uniquePrefix('progress');
  const env = { SSE_KEEPALIVE_SECONDS: '1' };
  let a: TestGateway;
  let b: TestGateway;
  const streams: SseStream[] = [];
  let lastChange = 0;
  let progressId = 0;
  let later: ReturnType<typeof changes> = [];

  before(async () => {
    [a, b] = await Promise.all([startGateway({ etcd, prefix, env }), startGateway({ etcd, prefix, env })]);
  });
  after(async () => {
    for (const s of streams) s.close();
    await Promise.all([a?.close(), b?.close()]);
  });
  const open = async (gw: TestGateway, path: string, lastEventId?: string) => {
    const s = await openSse(gw.base + path, { lastEventId });
    streams.push(s);
    assert.equal(s.status, 200, s.body);
    return s;
  };

  test('a quiet subscriber gets a progress event while other services change, and resumes from it exactly', async () => {
    lastChange = (await a.request('PUT', '/services/quiet/instances/q1', instance('10.3.0.1', 80))).json.revision;
    const quiet = await open(a, '/services/quiet/events');
    const narrowed = await open(b, '/events?service=quiet');
    const snap = await quiet.waitFor((e) => e.event === 'snapshot');
    assert.ok(Number(snap.id) >= lastChange);
    let busy = 0;
    for (let i = 0; i < 5; i++)
      busy = (await a.request('PUT', `/services/busy/instances/b${i}`, instance('10.3.0.2', 80 + i))).json.revision;

    const progress = await quiet.waitFor(
      (e) => e.event === 'progress' && Number(e.id) >= busy,
      5000,
      'a progress event past the busy changes',
    );
    assert.deepEqual(JSON.parse(progress.data), { revision: Number(progress.id) });
    assert.ok(Number(progress.id) <= (await etcdRevision()));
    const onB = await narrowed.waitFor(
      (e) => e.event === 'progress' && Number(e.id) >= busy,
      5000,
      'a progress event on the narrowed /events',
    );
    assert.deepEqual(JSON.parse(onB.data), { revision: Number(onB.id) });
    assert.ok(!changes(quiet).length, 'busy changes are not sent to the quiet subscriber');
    progressId = Number(progress.id);

    // After the progress id: changes in and out of scope.
    await a.request('PUT', '/services/busy/instances/b9', instance('10.3.0.2', 99));
    await a.request('PUT', '/services/quiet/instances/q2', instance('10.3.0.1', 81));
    await a.request('PUT', '/services/busy/instances/b0', instance('10.3.0.2', 80, { status: 'draining' }));
    await b.request('DELETE', '/services/quiet/instances/q1');
    later = await changesAtLeast(quiet, 2);
    assert.deepEqual(
      later.map((c) => [c.event, c.data.id, c.data.reason]),
      [
        ['register', 'q2', undefined],
        ['deregister', 'q1', 'deregistered'],
      ],
    );

    for (const s of [
      await open(a, '/services/quiet/events', String(progressId)),
      await open(b, `/events?service=quiet&lastEventId=${progressId}`),
    ]) {
      await changesAtLeast(s, 2);
      await sleep(200);
      assert.deepEqual(changes(s), later, `resume from the progress id on ${s.url}`);
      assert.ok(!s.events.some((e) => e.event === 'snapshot'));
    }
  });

  test('compaction past the last change id forces no reset when progress events kept the subscriber current', async () => {
    assert.ok(progressId > lastChange, 'needs the previous test');
    await etcd.compact(progressId);
    // A gateway started after the compaction has none of this in its ring: it replays from the store.
    const c = await startGateway({ etcd, prefix, env });
    try {
      const s = await openSse(`${c.base}/services/quiet/events`, { lastEventId: String(progressId) });
      streams.push(s);
      await changesAtLeast(s, 2);
      await sleep(200);
      assert.deepEqual(changes(s), later);
      assert.ok(!s.events.some((e) => e.event === 'snapshot'), 'no reset');
      // Without the progress event the subscriber's id would be its last change: compacted away.
      const stale = await openSse(`${c.base}/services/quiet/events`, { lastEventId: String(lastChange) });
      streams.push(stale);
      const reset = await stale.waitFor((e) => e.event === 'snapshot', 5000);
      assert.equal((JSON.parse(reset.data) as { reset?: boolean }).reset, true);
    } finally {
      await c.close();
    }
  });
});

describe('weighted pick', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ etcd });
    const reg = (id: string, body: Record<string, unknown>) =>
      gw.request('PUT', `/services/api/instances/${id}`, { address: '10.4.0.1', port: 80, ...body });
    await reg('w1', { weight: 100, tags: ['blue'], metadata: { zone: 'a' } });
    await reg('w2', { weight: 300, tags: ['blue'], metadata: { zone: 'b' } });
    await reg('w3', { weight: 600, tags: ['green'], metadata: { zone: 'b' } });
    await reg('drain', { weight: 5000, status: 'draining', tags: ['blue'] });
    await reg('down', { weight: 5000, status: 'down', tags: ['blue'] });
    await reg('zero', { weight: 0, tags: ['blue'] });
    await gw.request('PUT', '/services/idle/instances/d1', { address: '10.4.0.2', port: 80, status: 'draining' });
  });
  after(async () => gw?.close());

  async function draw(query: string, n: number): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const r = await gw.request('GET', `/services/api/pick${query}`);
      assert.equal(r.status, 200, r.text);
      counts.set(r.json.id, (counts.get(r.json.id) ?? 0) + 1);
    }
    return counts;
  }

  test('picks follow the weights; draining, down and weight-0 instances are never picked', async () => {
    const n = 600;
    const counts = await draw('', n);
    assert.deepEqual([...counts.keys()].sort(), ['w1', 'w2', 'w3']);
    for (const [id, p] of [
      ['w1', 0.1],
      ['w2', 0.3],
      ['w3', 0.6],
    ] as const) {
      const share = (counts.get(id) ?? 0) / n;
      assert.ok(Math.abs(share - p) < 0.08, `${id}: ${share} of picks, expected about ${p}`);
    }
  });

  test('tag and meta filters apply', async () => {
    const blue = await draw('?tag=blue', 200);
    assert.deepEqual([...blue.keys()].sort(), ['w1', 'w2']);
    assert.ok(blue.get('w2')! > blue.get('w1')!);
    assert.deepEqual([...(await draw('?meta.zone=b&tag=green', 20)).keys()], ['w3']);
    assert.deepEqual([...(await draw('?meta.zone=a', 20)).keys()], ['w1']);
  });

  test('no ETag, no-store, never 304', async () => {
    const r = await gw.request('GET', '/services/api/pick', undefined, { 'if-none-match': '*' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('etag'), null);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(r.json.service, 'api');
    assert.equal(typeof r.json.revision, 'number');
  });

  test('404 no-instance-available when none qualifies', async () => {
    for (const path of [
      '/services/idle/pick',
      '/services/nothing-here/pick',
      '/services/api/pick?tag=red',
      '/services/api/pick?meta.zone=c',
    ]) {
      const r = await gw.request('GET', path);
      assert.equal(r.status, 404, path);
      assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);
      assert.equal(r.json.code, 'no-instance-available');
      assert.equal(r.headers.get('etag'), null);
    }
    assert.equal((await gw.request('GET', '/services/Bad!/pick')).status, 400);
  });
});

describe('Prometheus service discovery', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ etcd });
    await gw.request('PUT', '/services/web/instances/v4', {
      address: '10.5.0.1',
      port: 8080,
      tags: ['http', 'v2'],
      metadata: { zone: 'eu-1', 'a.b': 'dot', 'a-b': 'dash', a_b: 'under' },
    });
    await gw.request('PUT', '/services/web/instances/v6', { address: 'fd00::5', port: 9090, status: 'draining', weight: 7 });
    await gw.request('PUT', '/services/db/instances/host', { address: 'db.internal', port: 5432, tags: ['sql'], ttl: 0 });
  });
  after(async () => gw?.close());

  type Group = { targets: string[]; labels: Record<string, string> };
  /** What Prometheus accepts: a JSON array of {targets: string[], labels: {name: string}}, label names [a-zA-Z_][a-zA-Z0-9_]*. */
  async function sd(query = ''): Promise<Group[]> {
    const r = await gw.request('GET', `/sd/prometheus${query}`);
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') ?? '', /^application\/json(;\s*charset=("utf-8"|utf-8))?$/i);
    assert.ok(Array.isArray(r.json));
    for (const g of r.json as Group[]) {
      assert.deepEqual(Object.keys(g).sort(), ['labels', 'targets']);
      assert.ok(Array.isArray(g.targets) && g.targets.every((t) => typeof t === 'string'));
      for (const [name, value] of Object.entries(g.labels)) {
        assert.match(name, /^[a-zA-Z_][a-zA-Z0-9_]*$/);
        assert.equal(typeof value, 'string', `${name} is a string`);
      }
    }
    return r.json as Group[];
  }

  test('one target group per instance with its labels; IPv6 bracketed; metadata keys sanitized', async () => {
    const groups = await sd();
    assert.deepEqual(groups, [
      {
        targets: ['db.internal:5432'],
        labels: {
          __meta_discovery_service: 'db',
          __meta_discovery_instance_id: 'host',
          __meta_discovery_status: 'up',
          __meta_discovery_weight: '100',
          __meta_discovery_tags: ',sql,',
        },
      },
      {
        targets: ['10.5.0.1:8080'],
        labels: {
          __meta_discovery_service: 'web',
          __meta_discovery_instance_id: 'v4',
          __meta_discovery_status: 'up',
          __meta_discovery_weight: '100',
          __meta_discovery_tags: ',http,v2,',
          // "a-b" < "a.b" < "a_b" in code-unit order: the last one wins.
          __meta_discovery_metadata_a_b: 'under',
          __meta_discovery_metadata_zone: 'eu-1',
        },
      },
      {
        targets: ['[fd00::5]:9090'],
        labels: {
          __meta_discovery_service: 'web',
          __meta_discovery_instance_id: 'v6',
          __meta_discovery_status: 'draining',
          __meta_discovery_weight: '7',
          __meta_discovery_tags: ',,',
        },
      },
    ]);
  });

  test('service, tag and status narrow it', async () => {
    const ids = (gs: Group[]) => gs.map((g) => g.labels.__meta_discovery_instance_id);
    assert.deepEqual(ids(await sd('?service=web')), ['v4', 'v6']);
    assert.deepEqual(ids(await sd('?service=web&service=db')), ['host', 'v4', 'v6']);
    assert.deepEqual(ids(await sd('?service=unknown')), []);
    assert.deepEqual(ids(await sd('?tag=http')), ['v4']);
    assert.deepEqual(ids(await sd('?tag=http&tag=v2&service=web')), ['v4']);
    assert.deepEqual(ids(await sd('?status=draining')), ['v6']);
    assert.deepEqual(ids(await sd('?status=up&service=db')), ['host']);
    assert.equal((await gw.request('GET', '/sd/prometheus?status=gone')).status, 400);
    assert.equal((await gw.request('GET', '/sd/prometheus?service=Not_A_Name')).status, 400);
  });

  const promtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' });
  const havePrometheus = !promtool.error && promtool.status === 0;
  const skip = !havePrometheus && process.env.CI !== 'true' ? 'promtool not installed (apt-get install prometheus)' : false;

  /** The scrape config of docs/beyond.md, pointed at this gateway. */
  async function promConfig(dir: string): Promise<string> {
    const file = join(dir, 'prometheus.yml');
    const yml = [
      'global:',
      '  scrape_interval: 1s',
      'scrape_configs:',
      '  - job_name: services',
      '    http_sd_configs:',
      `      - url: ${gw.base}/sd/prometheus`,
      '        refresh_interval: 1s',
      '    relabel_configs:',
      '      - source_labels: [__meta_discovery_status]',
      '        regex: up|draining',
      '        action: keep',
      '      - source_labels: [__meta_discovery_tags]',
      '        regex: .*,(http|sql),.*|,,',
      '        action: keep',
      '      - source_labels: [__meta_discovery_service]',
      '        target_label: service',
      '      - source_labels: [__meta_discovery_instance_id]',
      '        target_label: instance',
      '      - source_labels: [__meta_discovery_metadata_zone]',
      '        target_label: zone',
      '',
    ].join('\n');
    await writeFile(file, yml);
    return file;
  }

  test('promtool accepts an http_sd_configs scrape config pointing at the gateway', { skip }, async () => {
    assert.ok(havePrometheus, 'promtool is required in CI (Debian package prometheus)');
    const dir = await mkdtemp(join(tmpdir(), 'prom-'));
    try {
      const file = await promConfig(dir);
      const r = spawnSync('promtool', ['check', 'config', file], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a real Prometheus discovers every registered instance as a target', { skip }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'prom-'));
    const port = await new Promise<number>((ok, ko) => {
      const s = net.createServer().once('error', ko);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => ok(p));
      });
    });
    const proc = spawn(
      'prometheus',
      [
        `--config.file=${await promConfig(dir)}`,
        `--storage.tsdb.path=${join(dir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=error',
      ],
      { stdio: 'ignore' },
    );
    try {
      type Target = { discoveredLabels: Record<string, string>; labels: Record<string, string> };
      const targets = await eventually(
        async () => {
          if (proc.exitCode !== null) throw new Error(`prometheus exited with ${proc.exitCode}`);
          try {
            const res = await fetch(`http://127.0.0.1:${port}/api/v1/targets`, { signal: AbortSignal.timeout(1000) });
            const body = (await res.json()) as { data: { activeTargets: Target[] } };
            return body.data.activeTargets.length >= 3 && body.data.activeTargets;
          } catch {
            return undefined;
          }
        },
        20_000,
        'Prometheus to discover the targets',
      );
      const seen = targets
        .map((t) => [
          t.discoveredLabels.__address__,
          t.discoveredLabels.__meta_discovery_service,
          t.discoveredLabels.__meta_discovery_instance_id,
        ])
        .sort();
      assert.deepEqual(seen, [
        ['10.5.0.1:8080', 'web', 'v4'],
        ['[fd00::5]:9090', 'web', 'v6'],
        ['db.internal:5432', 'db', 'host'],
      ]);
      // Relabeling works on these labels: service, instance and zone come from them.
      const labels = targets.map((t) => [t.labels.job, t.labels.service, t.labels.instance, t.labels.zone ?? '']).sort();
      assert.deepEqual(labels, [
        ['services', 'db', 'host', ''],
        ['services', 'web', 'v4', 'eu-1'],
        ['services', 'web', 'v6', ''],
      ]);
    } finally {
      proc.kill('SIGTERM');
      if (proc.exitCode === null && proc.signalCode === null) await once(proc, 'exit');
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('staleness and pacing', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ etcd });
    await gw.request('PUT', '/services/pace/instances/p1', instance('10.6.0.1', 80));
  });
  after(async () => gw?.close());

  test('blocking queries return within wait + wait/16 + slack, jittered', async () => {
    const index = (await gw.request('GET', '/services/pace')).json.revision;
    const times = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const t0 = performance.now();
        const r = await gw.request('GET', `/services/pace?index=${index}&wait=1s`);
        assert.equal(r.status, 200);
        return performance.now() - t0;
      }),
    );
    for (const t of times) assert.ok(t >= 990 && t <= 1000 + 1000 / 16 + 250, `answered after ${t.toFixed(0)} ms`);
    assert.ok(Math.max(...times) - Math.min(...times) >= 3, `answers spread by jitter: ${times.map((t) => t.toFixed(0)).join(' ')}`);
  });

  test('retry: is randomized between 1 and 5 seconds across streams', async () => {
    const streams = await Promise.all(Array.from({ length: 8 }, () => openSse(`${gw.base}/services/pace/events`)));
    try {
      await Promise.all(streams.map((s) => s.until('retry:', () => s.retries.length > 0)));
      const retries = streams.map((s) => s.retries[0]!);
      for (const r of retries) assert.ok(r >= 1000 && r <= 5000, `retry: ${r}`);
      assert.ok(new Set(retries).size > 1, `retry values vary: ${retries.join(' ')}`);
    } finally {
      for (const s of streams) s.close();
    }
  });

  test('heartbeat answers carry interval, about a third of the TTL', async () => {
    await gw.request('PUT', '/services/pace/instances/p2', instance('10.6.0.2', 80, { ttl: 30 }));
    await gw.request('PUT', '/services/pace/instances/p3', instance('10.6.0.3', 80, { ttl: 0 }));
    const hb = await gw.request('PUT', '/services/pace/instances/p2/heartbeat');
    assert.equal(hb.status, 200);
    assert.ok(hb.json.interval >= (30 / 3) * 0.8 && hb.json.interval <= 30 / 3, `interval ${hb.json.interval}`);
    const none = await gw.request('PUT', '/services/pace/instances/p3/heartbeat');
    assert.equal(none.json.interval, undefined);
  });

  test('stale answers carry a growing Age while etcd is frozen', async () => {
    etcd.stop(0);
    try {
      const first = await eventually(
        async () => {
          const r = await gw.request('GET', '/services/pace');
          return r.headers.get('x-registry-stale') === 'true' && r;
        },
        15_000,
        'a stale answer',
      );
      assert.equal(first.status, 200);
      const age1 = Number(first.headers.get('age'));
      assert.ok(Number.isInteger(age1) && age1 >= 0, `Age ${first.headers.get('age')}`);
      await sleep(2100);
      const second = await gw.request('GET', '/services/pace');
      assert.equal(second.headers.get('x-registry-stale'), 'true');
      const age2 = Number(second.headers.get('age'));
      assert.ok(age2 >= age1 + 2, `Age grows: ${age1} then ${age2}`);
      const list = await gw.request('GET', '/services');
      assert.equal(list.headers.get('x-registry-stale'), 'true');
      assert.ok(Number(list.headers.get('age')) >= age2);
      const sdAnswer = await gw.request('GET', '/sd/prometheus');
      assert.equal(sdAnswer.status, 200);
      assert.equal(sdAnswer.headers.get('x-registry-stale'), 'true');
      const unknown = await gw.request('GET', '/services/never-seen');
      assert.equal(unknown.status, 503);
      assert.equal(unknown.json.code, 'store-unavailable');
    } finally {
      etcd.cont(0);
    }
    await eventually(
      async () => (await gw.request('GET', '/services/pace')).headers.get('x-registry-stale') === null,
      15_000,
      'fresh answers again',
    );
    const fresh = await gw.request('GET', '/services/pace');
    assert.equal(fresh.headers.get('age'), null);
  });
});
