// Conformance of the two Store implementations (etcd on a real etcd process, and
// the embedded memory store), plus etcd-only failure behaviour: restart, freeze, auth.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { RegistryError, StoreCompactedError, StoreUnavailableError } from '../src/registry/errors.ts';
import { EtcdStore } from '../src/registry/store/etcd.ts';
import { MemoryStore } from '../src/registry/store/memory.ts';
import type { Store, TxnOp, WatchBatch, WatchEvent, WatchHandlers } from '../src/registry/store/store.ts';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';

interface Harness {
  store: Store;
  /** Compact the store's history below `revision`. */
  compact(revision: number): Promise<void>;
  close(): Promise<void>;
}

const put = (key: string, value: string, lease?: string): TxnOp => ({ type: 'put', key, value, ...(lease ? { lease } : {}) });
const del = (key: string): TxnOp => ({ type: 'delete', key });

/** Records a watch; `until` waits (bounded) for a condition instead of sleeping. */
function recorder() {
  const batches: WatchBatch[] = [];
  const errors: Error[] = [];
  let connected = 0;
  let disconnected = 0;
  const ee = new EventEmitter();
  const handlers: WatchHandlers = {
    onBatch: (b) => (batches.push(b), ee.emit('x')),
    onError: (e) => (errors.push(e), ee.emit('x')),
    onConnected: () => (connected++, ee.emit('x')),
    onDisconnected: () => (disconnected++, ee.emit('x')),
  };
  const events = (): WatchEvent[] => batches.flatMap((b) => b.events);
  async function until(what: string, pred: () => boolean, ms = 5000): Promise<void> {
    // A ref'd timer (AbortSignal.timeout's is unref'd): with only unref'd timers pending
    // (the memory store's leases), node:test would see an idle loop and cancel the test.
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), ms);
    try {
      while (!pred()) await once(ee, 'x', { signal: ac.signal });
    } catch {
      throw new Error(`timed out after ${ms} ms waiting for ${what}; batches: ${JSON.stringify(batches)}; errors: ${errors.join(', ')}`);
    } finally {
      clearTimeout(timer);
    }
  }
  return { batches, errors, handlers, events, until, counts: () => ({ connected, disconnected }) };
}

/** Every revision's events sit in exactly one batch (one txn = one batch). */
function assertRevisionsNotSplit(batches: WatchBatch[]): void {
  const seen = new Map<number, number>();
  batches.forEach((b, i) =>
    b.events.forEach((e) => {
      const first = seen.get(e.modRevision) ?? i;
      assert.equal(first, i, `events of revision ${e.modRevision} split across batches`);
      seen.set(e.modRevision, i);
    }),
  );
}

function conformance(name: string, make: () => Promise<Harness>): void {
  describe(`Store conformance: ${name}`, () => {
    let h: Harness;
    let store: Store;
    const prefix = () => `/t/${randomUUID()}/`;
    before(async () => {
      h = await make();
      store = h.store;
    });
    after(async () => h?.close());

    it('raises the revision with each write, and status reports it', async () => {
      const p = prefix();
      const r1 = await store.txn([], [put(`${p}a`, '1')]);
      const r2 = await store.txn([], [put(`${p}a`, '2')]);
      assert.ok(r2.revision > r1.revision);
      assert.equal(r1.succeeded, true);
      const g = await store.get(`${p}a`);
      assert.ok(g.revision >= r2.revision);
      assert.equal(g.kv?.value, '2');
      assert.equal(g.kv?.modRevision, r2.revision);
      assert.equal(g.kv?.createRevision, r1.revision);
      assert.equal(g.kv?.lease, '0');
      assert.ok((await store.status(2000)).revision >= r2.revision);
      assert.equal((await store.get(`${p}missing`)).kv, undefined);
    });

    it('ranges a prefix sorted by key bytes, at the header revision', async () => {
      const p = prefix();
      const keys = ['b', 'a', 'B', 'a/x', 'é', '~', 'c'];
      const w = await store.txn(
        [],
        keys.map((k) => put(p + k, k)),
      );
      await store.txn([], [put(p.slice(0, -1) + '0', 'outside')]); // shares the prefix minus its slash
      const r = await store.range(p);
      const expected = keys
        .map((k) => Buffer.from(p + k))
        .sort(Buffer.compare)
        .map((b) => b.toString());
      assert.deepEqual(
        r.kvs.map((kv) => kv.key),
        expected,
      );
      assert.ok(r.revision >= w.revision + 1);
      assert.ok(r.kvs.every((kv) => kv.modRevision === w.revision && kv.value === kv.key.slice(p.length)));
    });

    it('orders keys by UTF-8 bytes beyond the BMP too', async () => {
      const p = prefix();
      const keys = ['\u{1F600}', '\uFFFD', 'z']; // UTF-16 order differs from byte order here
      await store.txn(
        [],
        keys.map((k) => put(p + k, k)),
      );
      const expected = keys
        .map((k) => Buffer.from(p + k))
        .sort(Buffer.compare)
        .map((b) => b.toString());
      assert.deepEqual(
        (await store.range(p)).kvs.map((kv) => kv.key),
        expected,
      );
    });

    it('pages large ranges into one consistent, sorted result', async () => {
      const p = prefix();
      const n = 12_003;
      const all = Array.from({ length: n }, (_, i) => `${p}${String(i).padStart(6, '0')}`);
      for (let i = 0; i < n; i += 128)
        await store.txn(
          [],
          all.slice(i, i + 128).map((k) => put(k, 'v')),
        );
      const r = await store.range(p);
      assert.equal(r.kvs.length, n);
      assert.deepEqual(
        r.kvs.map((kv) => kv.key),
        all,
      );
    });

    it('runs a txn on createRevision and modRevision compares, one revision per txn that writes', async () => {
      const p = prefix();
      const absent = { key: `${p}a`, target: 'createRevision', op: '==', value: 0 } as const;
      const t1 = await store.txn([absent], [put(`${p}a`, '1'), put(`${p}b`, '1'), put(`${p}c`, '1')]);
      assert.equal(t1.succeeded, true);
      const r = await store.range(p);
      assert.deepEqual(
        r.kvs.map((kv) => kv.key),
        [`${p}a`, `${p}b`, `${p}c`],
      );
      assert.ok(r.kvs.every((kv) => kv.modRevision === t1.revision && kv.createRevision === t1.revision));

      const t2 = await store.txn([absent], [put(`${p}a`, '2')]);
      assert.equal(t2.succeeded, false);
      assert.equal((await store.get(`${p}a`)).kv?.value, '1');
      assert.equal(t2.revision, t1.revision); // nothing written: the revision stays

      const wrong = await store.txn([{ key: `${p}a`, target: 'modRevision', op: '==', value: t1.revision + 100 }], [put(`${p}a`, 'x')]);
      assert.equal(wrong.succeeded, false);
      assert.equal(wrong.revision, t2.revision); // nothing written: the revision stays
      const ok = await store.txn(
        [
          { key: `${p}a`, target: 'modRevision', op: '==', value: t1.revision },
          { key: `${p}a`, target: 'modRevision', op: '<', value: t1.revision + 1 },
          { key: `${p}a`, target: 'createRevision', op: '>', value: 0 },
          { key: `${p}b`, target: 'createRevision', op: '!=', value: 0 },
        ],
        [put(`${p}a`, '3'), del(`${p}b`)],
      );
      assert.equal(ok.succeeded, true);
      assert.equal((await store.get(`${p}a`)).kv?.modRevision, ok.revision);
      assert.equal((await store.get(`${p}b`)).kv, undefined);
    });

    it('rejects too many ops and duplicate keys as invalid requests', async () => {
      const p = prefix();
      const many = Array.from({ length: 129 }, (_, i) => put(`${p}${i}`, 'v'));
      await assert.rejects(store.txn([], many), (e: unknown) => e instanceof RegistryError && e.code === 'invalid-request');
      await assert.rejects(
        store.txn([], [put(`${p}a`, '1'), put(`${p}a`, '2')]),
        (e: unknown) => e instanceof RegistryError && e.code === 'invalid-request',
      );
      assert.equal((await store.range(p)).kvs.length, 0);
    });

    it('grants, renews and revokes leases; revoking deletes the keys', async () => {
      const p = prefix();
      const lease = await store.grantLease(30);
      assert.ok(lease.ttl >= 30);
      assert.match(lease.id, /^\d+$/);
      await store.txn([], [put(`${p}a`, '1', lease.id), put(`${p}b`, '1')]);
      assert.equal((await store.get(`${p}a`)).kv?.lease, lease.id);
      const other = await store.grantLease(30);
      // Concurrent heartbeats, two of them for the same lease, all answer.
      const ttls = await Promise.all([store.keepAlive(lease.id), store.keepAlive(lease.id), store.keepAlive(other.id)]);
      for (const t of ttls) assert.ok(t > 0 && t <= 30, `ttl ${t}`);
      await store.revokeLease(lease.id);
      assert.equal((await store.get(`${p}a`)).kv, undefined);
      assert.equal((await store.get(`${p}b`)).kv?.value, '1');
      assert.equal(await store.keepAlive(lease.id), 0);
      await store.revokeLease(lease.id); // unknown lease: not an error
      await assert.rejects(
        store.txn([], [put(`${p}c`, '1', lease.id)]),
        (e: unknown) => e instanceof RegistryError && e.code === 'instance-not-found',
      );
      await store.revokeLease(other.id);
    });

    it('expires a short lease by itself; the watch sees the delete; keepAlive then answers 0', async () => {
      const p = prefix();
      const lease = await store.grantLease(2);
      assert.ok(lease.ttl >= 2);
      const w0 = await store.txn([], [put(`${p}k`, 'v', lease.id)]);
      const rec = recorder();
      const watch = await store.watch(p, w0.revision + 1, rec.handlers);
      try {
        await rec.until('the lease expiry delete', () => rec.events().some((e) => e.type === 'delete'), (lease.ttl + 8) * 1000);
        const ev = rec.events().find((e) => e.type === 'delete')!;
        assert.equal(ev.key, `${p}k`);
        assert.equal(ev.prevValue, 'v');
        assert.equal(ev.prevModRevision, w0.revision, 'the revision of the previous value (a replayed deregister shows it)');
        assert.equal((await store.get(`${p}k`)).kv, undefined);
        assert.equal(await store.keepAlive(lease.id), 0);
      } finally {
        await watch.close();
      }
    });

    it('replays a watch from a past revision in order, one txn per batch, with prev values', async () => {
      const p = prefix();
      const r1 = await store.txn([], [put(`${p}a`, '1')]);
      await store.txn([], [put(`${p}a`, '2')]);
      const r3 = await store.txn([], [put(`${p}b`, 'b'), put(`${p}c`, 'c'), del(`${p}a`)]);
      await store.txn([], [put(`/elsewhere/${randomUUID()}`, 'x')]); // outside the prefix
      const rec = recorder();
      const watch = await store.watch(p, r1.revision, rec.handlers);
      try {
        await rec.until('the replay', () => rec.events().length >= 5);
        const got = rec.events().map((e) => [e.type, e.key.slice(p.length), e.value, e.prevValue, e.modRevision]);
        assert.deepEqual(got, [
          ['put', 'a', '1', undefined, r1.revision],
          ['put', 'a', '2', '1', r1.revision + 1],
          ['put', 'b', 'b', undefined, r3.revision],
          ['put', 'c', 'c', undefined, r3.revision],
          ['delete', 'a', '', '2', r3.revision],
        ]);
        assertRevisionsNotSplit(rec.batches);
        assert.ok(rec.batches.at(-1)!.revision >= r3.revision);
        // Live changes follow, still one batch per txn.
        const r5 = await store.txn([], [put(`${p}d`, 'd'), put(`${p}e`, 'e')]);
        await rec.until('the live txn', () => rec.events().length >= 7);
        const last = rec.batches.at(-1)!;
        assert.deepEqual(
          last.events.map((e) => e.key.slice(p.length)),
          ['d', 'e'],
        );
        assert.equal(last.revision, r5.revision);
        assert.deepEqual(rec.errors, []);
      } finally {
        await watch.close();
        await watch.close(); // idempotent
      }
    });

    it('calls onError with StoreCompactedError for a watch from a compacted revision', async () => {
      const p = prefix();
      const r1 = await store.txn([], [put(`${p}a`, '1')]);
      const r2 = await store.txn([], [put(`${p}a`, '2')]);
      await h.compact(r2.revision);
      const rec = recorder();
      const watch = await store.watch(p, r1.revision, rec.handlers);
      await rec.until('onError', () => rec.errors.length > 0);
      assert.ok(rec.errors[0] instanceof StoreCompactedError, String(rec.errors[0]));
      assert.equal(rec.errors.length, 1);
      assert.equal(rec.events().length, 0);
      await watch.close(); // safe after onError
      // From the compaction revision on, watching still works.
      const rec2 = recorder();
      const w2 = await store.watch(p, r2.revision, rec2.handlers);
      await rec2.until('the kept revision', () => rec2.events().length >= 1);
      assert.equal(rec2.events()[0]!.value, '2');
      await w2.close();
    });
  });
}

conformance('memory', async () => {
  const store = new MemoryStore();
  return { store, compact: async (r) => store.compact(r), close: () => store.close() };
});

let shared: EtcdCluster | undefined;
conformance('etcd', async () => {
  shared = await startEtcd();
  const store = new EtcdStore({ endpoints: shared.endpoints, callTimeoutMs: 3000 });
  const cluster = shared;
  return {
    store,
    compact: (r) => cluster.compact(r),
    close: async () => {
      await store.close();
      await cluster.close();
    },
  };
});

/** One counter of etcd's own /metrics for the LeaseKeepAlive RPC. */
async function keepAliveMetric(etcd: EtcdCluster, name: 'grpc_server_msg_received_total' | 'grpc_server_started_total'): Promise<number> {
  const text = await (await fetch(`${etcd.endpoints[0]}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes('grpc_method="LeaseKeepAlive"'));
  return Number(line?.split(' ').pop() ?? NaN);
}

describe('EtcdStore lease renewals', () => {
  let etcd: EtcdCluster;
  let store: EtcdStore;
  before(async () => {
    etcd = await startEtcd();
    store = new EtcdStore({ endpoints: etcd.endpoints });
  });
  after(async () => {
    await store?.close();
    await etcd?.close();
  });

  it('sends one renewal for concurrent heartbeats of one lease', async () => {
    const lease = await store.grantLease(30);
    const before = await keepAliveMetric(etcd, 'grpc_server_msg_received_total');
    const ttls = await Promise.all(Array.from({ length: 20 }, () => store.keepAlive(lease.id)));
    assert.ok(ttls.every((ttl) => ttl > 0 && ttl === ttls[0]));
    assert.equal((await keepAliveMetric(etcd, 'grpc_server_msg_received_total')) - before, 1);
    assert.ok((await store.keepAlive(lease.id)) > 0); // the next heartbeat renews again
    assert.equal((await keepAliveMetric(etcd, 'grpc_server_msg_received_total')) - before, 2);
  });

  it('spreads renewals of many leases over several keepalive streams', async () => {
    const leases = await Promise.all(Array.from({ length: 64 }, () => store.grantLease(30)));
    const before = await keepAliveMetric(etcd, 'grpc_server_started_total');
    const ttls = await Promise.all(leases.map((l) => store.keepAlive(l.id)));
    assert.ok(ttls.every((ttl) => ttl > 0));
    const opened = (await keepAliveMetric(etcd, 'grpc_server_started_total')) - before;
    assert.ok(opened > 1 && opened <= 8, `${opened} streams`);
  });
});

describe('EtcdStore failures', () => {
  let etcd: EtcdCluster;
  let store: EtcdStore;
  before(async () => {
    etcd = await startEtcd();
    store = new EtcdStore({ endpoints: etcd.endpoints, callTimeoutMs: 1000, renewTimeoutMs: 1000 });
  });
  after(async () => {
    await store?.close();
    await etcd?.close();
  });

  it('keeps a watch across an etcd kill -9 and restart, delivering the missed changes in order', async () => {
    const p = `/r/${randomUUID()}/`;
    const lease = await store.grantLease(60);
    const rec = recorder();
    const watch = await store.watch(p, 0, rec.handlers);
    await store.txn([], [put(`${p}0`, 'before')]);
    await rec.until('the first change', () => rec.events().length === 1);
    await etcd.kill(0);
    await rec.until('onDisconnected', () => rec.counts().disconnected > 0);
    await etcd.restart(0);
    // Written by another client before this watch is back.
    for (let i = 1; i <= 5; i++) await etcd.ctl(['put', `${p}${i}`, `v${i}`]);
    await rec.until('the changes made while down', () => rec.events().length >= 6, 15_000);
    assert.deepEqual(
      rec.events().map((e) => e.key.slice(p.length)),
      ['0', '1', '2', '3', '4', '5'],
    );
    const revs = rec.events().map((e) => e.modRevision);
    assert.deepEqual(
      revs,
      [...revs].sort((a, b) => a - b),
    );
    assert.ok(rec.counts().connected >= 2);
    assert.deepEqual(rec.errors, []);
    // The shared keepalive stream broke with etcd; the next heartbeat opens a new one (etcd keeps leases).
    let ttl = 0;
    for (const t0 = Date.now(); Date.now() - t0 < 5000;) {
      try {
        ttl = await store.keepAlive(lease.id);
        break;
      } catch (err) {
        assert.ok(err instanceof StoreUnavailableError);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    assert.ok(ttl > 0);
    await watch.close();
  });

  it('fails calls to a frozen (SIGSTOP) etcd within the call timeout, without its address', async () => {
    await store.get('/warm'); // connected before the freeze
    etcd.stop(0);
    try {
      const calls = {
        get: () => store.get('/x'),
        range: () => store.range('/x/'),
        keepAlive: () => store.keepAlive('1234'),
        status: () => store.status(500),
      };
      for (const [name, call] of Object.entries(calls)) {
        const t0 = Date.now();
        const err = await call().then(
          () => undefined,
          (e: unknown) => e,
        );
        const took = Date.now() - t0;
        assert.ok(err instanceof StoreUnavailableError, `${name}: expected StoreUnavailableError, got ${String(err)}`);
        assert.ok(took < 1800, `took ${took} ms`);
        assert.ok(!err.message.includes('127.0.0.1'), err.message);
      }
    } finally {
      etcd.cont(0);
    }
    // Back to normal once etcd thaws (the breaker half-opens after ~1 s).
    for (const t0 = Date.now(); ; await new Promise((r) => setTimeout(r, 200))) {
      try {
        await store.get('/x');
        break;
      } catch (err) {
        if (Date.now() - t0 > 8000) throw err;
      }
    }
  });
});

describe('EtcdStore with etcd auth', () => {
  let etcd: EtcdCluster;
  let store: EtcdStore;
  before(async () => {
    etcd = await startEtcd();
    await etcd.ctl(['user', 'add', 'root:secret']);
    await etcd.ctl(['auth', 'enable']);
    store = new EtcdStore({ endpoints: etcd.endpoints, username: 'root', password: 'secret', callTimeoutMs: 2000 });
  });
  after(async () => {
    await store?.close();
    await etcd?.close();
  });

  it('rejects bad credentials as StoreUnavailableError', async () => {
    const bad = new EtcdStore({ endpoints: etcd.endpoints, username: 'root', password: 'wrong', callTimeoutMs: 2000 });
    try {
      await assert.rejects(bad.get('/a'), StoreUnavailableError);
    } finally {
      await bad.close();
    }
  });

  it('survives the simple token dying on a restart: unary calls, keepalive and watch go on', async () => {
    const p = `/auth/${randomUUID()}/`;
    const lease = await store.grantLease(60);
    assert.ok((await store.keepAlive(lease.id)) > 0);
    const rec = recorder();
    const watch = await store.watch(p, 0, rec.handlers);
    await store.txn([], [put(`${p}a`, '1')]);
    await rec.until('the first change', () => rec.events().length === 1);
    await etcd.restart(0); // simple tokens live in the member's memory: all are now invalid
    await etcd.ctl(['--user=root:secret', 'put', `${p}b`, '2']);
    await rec.until('the change after the restart', () => rec.events().length >= 2, 15_000);
    assert.deepEqual(rec.errors, []);
    let ttl = -1;
    for (const t0 = Date.now(); ttl < 0 && Date.now() - t0 < 5000;) {
      ttl = await store.keepAlive(lease.id).catch(() => -1);
    }
    assert.ok(ttl > 0);
    assert.equal((await store.get(`${p}b`)).kv?.value, '2');
    await watch.close();
  });

  it('opens a new watch with a dead token (before any unary call re-authenticates)', async () => {
    const p = `/auth/${randomUUID()}/`;
    await store.txn([], [put(`${p}a`, '1')]);
    await etcd.restart(0);
    const rec = recorder();
    const watch = await store.watch(p, 0, rec.handlers); // etcd cancels the first try: invalid auth token
    assert.deepEqual(rec.errors, []);
    await etcd.ctl(['--user=root:secret', 'put', `${p}b`, '2']);
    await rec.until('the change', () => rec.events().length >= 1);
    assert.equal(rec.events()[0]!.key, `${p}b`);
    // A second watch on the same client still connects (no wedged stream).
    const rec2 = recorder();
    const w2 = await store.watch(p, 0, rec2.handlers);
    await store.txn([], [put(`${p}c`, '3')]);
    await rec2.until('the change', () => rec2.events().length >= 1);
    await Promise.all([watch.close(), w2.close()]);
  });
});
