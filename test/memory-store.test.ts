import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../src/registry/store/memory.ts';
import type { TxnOp, WatchBatch } from '../src/registry/store/store.ts';
import { InvalidRequestError, RegistryError, StoreCompactedError, StoreUnavailableError } from '../src/registry/errors.ts';

const put = (key: string, value = 'v', lease?: string): TxnOp => (lease ? { type: 'put', key, value, lease } : { type: 'put', key, value });
const del = (key: string): TxnOp => ({ type: 'delete', key });

/** Collects watch batches; next() waits for the next one, failing after a timeout instead of sleeping. */
class Collector {
  readonly batches: WatchBatch[] = [];
  readonly errors: Error[] = [];
  private waiters: Array<() => void> = [];
  private read = 0;
  onBatch = (b: WatchBatch): void => {
    this.batches.push(b);
    this.wake();
  };
  onError = (e: Error): void => {
    this.errors.push(e);
    this.wake();
  };
  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  /** Resolves when `pred` holds, re-checked on every delivery. */
  async until(pred: () => boolean, timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for watch delivery');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
  async next(timeoutMs = 3000): Promise<WatchBatch> {
    await this.until(() => this.batches.length > this.read, timeoutMs);
    return this.batches[this.read++]!;
  }
}

describe('MemoryStore', () => {
  it('raises the revision by one per effective write txn', async () => {
    const s = new MemoryStore();
    assert.equal((await s.status(1000)).revision, 1);
    let r = await s.txn([], [put('a'), put('b'), put('c')]);
    assert.deepEqual(r, { succeeded: true, revision: 2 });
    const all = await s.range('');
    assert.deepEqual(
      all.kvs.map((kv) => kv.modRevision),
      [2, 2, 2],
    );
    // reads, failed compares without a failure branch, and deletes of absent keys write nothing
    await s.get('a');
    await s.range('a');
    r = await s.txn([{ key: 'a', target: 'createRevision', op: '==', value: 0 }], [put('x')]);
    assert.deepEqual(r, { succeeded: false, revision: 2 });
    r = await s.txn([], [del('nope')]);
    assert.deepEqual(r, { succeeded: true, revision: 2 });
    r = await s.txn([], [del('a'), del('nope')]);
    assert.equal(r.revision, 3);
    assert.equal((await s.status(1000)).revision, 3);
    assert.deepEqual((await s.status(1000)).details, { keys: 2, leases: 0 });
    await s.close();
  });

  it('keeps createRevision on update and renews it after a delete', async () => {
    const s = new MemoryStore();
    await s.txn([], [put('k', '1')]);
    await s.txn([], [put('k', '2')]);
    let { kv } = await s.get('k');
    assert.deepEqual(kv, { key: 'k', value: '2', modRevision: 3, createRevision: 2, lease: '0' });
    await s.txn([], [del('k')]);
    await s.txn([], [put('k', '3')]);
    ({ kv } = await s.get('k'));
    assert.deepEqual(kv, { key: 'k', value: '3', modRevision: 5, createRevision: 5, lease: '0' });
    // returned objects are copies
    kv!.value = 'mutated';
    assert.equal((await s.get('k')).kv!.value, '3');
    (await s.range('k')).kvs[0]!.value = 'mutated';
    assert.equal((await s.get('k')).kv!.value, '3');
    await s.close();
  });

  it('ranges by prefix in code-unit order', async () => {
    const s = new MemoryStore();
    await s.txn([], [put('/s/b'), put('/s/a'), put('/t/a'), put('/s/B'), put('/s'), put('/r')]);
    await s.txn([], [put('/s/0')]);
    await s.txn([], [del('/s/a')]);
    const r = await s.range('/s/');
    assert.deepEqual(
      r.kvs.map((kv) => kv.key),
      ['/s/0', '/s/B', '/s/b'],
    );
    assert.equal(r.revision, 4);
    assert.deepEqual(
      (await s.range('')).kvs.map((kv) => kv.key),
      ['/r', '/s', '/s/0', '/s/B', '/s/b', '/t/a'],
    );
    assert.deepEqual((await s.range('/u')).kvs, []);
    await s.close();
  });

  it('runs its operations only when every compare holds', async () => {
    const s = new MemoryStore();
    const absent = { key: 'k', target: 'createRevision', op: '==', value: 0 } as const;
    let r = await s.txn([absent], [put('k', 'created')]);
    assert.deepEqual(r, { succeeded: true, revision: 2 });
    r = await s.txn([absent], [put('k', 'again')]);
    assert.deepEqual(r, { succeeded: false, revision: 2 });
    assert.equal((await s.get('k')).kv!.value, 'created');
    await s.txn([], [put('lost', 'yes')]);
    // every compare must hold
    const cas = (rev: number) => ({ key: 'k', target: 'modRevision', op: '==', value: rev }) as const;
    r = await s.txn([cas(2), { key: 'lost', target: 'modRevision', op: '>', value: 2 }], [put('k', 'cas')]);
    assert.equal(r.succeeded, true);
    r = await s.txn([cas(2)], [put('k', 'stale')]);
    assert.equal(r.succeeded, false);
    r = await s.txn([{ key: 'k', target: 'modRevision', op: '!=', value: 4 }], []);
    assert.equal(r.succeeded, false);
    r = await s.txn([{ key: 'k', target: 'createRevision', op: '<', value: 3 }], []);
    assert.equal(r.succeeded, true);
    assert.equal((await s.get('k')).kv!.value, 'cas');
    await s.close();
  });

  it("enforces etcd's txn limits without writing", async () => {
    const s = new MemoryStore();
    const ops = Array.from({ length: 129 }, (_, i) => put(`k${i}`));
    await assert.rejects(
      s.txn([], ops),
      (e: unknown) => e instanceof InvalidRequestError && e.message === 'too many operations in txn request',
    );
    await assert.rejects(
      s.txn([], [put('a'), del('a')]),
      (e: unknown) => e instanceof InvalidRequestError && e.message === 'duplicate key given in txn request',
    );
    await assert.rejects(s.txn([], [put('a'), put('a')]), InvalidRequestError);
    assert.equal((await s.status(1000)).revision, 1);
    const r = await s.txn([], ops.slice(0, 128));
    assert.equal(r.revision, 2);
    assert.equal((await s.range('')).kvs.length, 128);
    await s.close();
  });

  it('binds keys to leases and rejects unknown leases', async () => {
    const s = new MemoryStore();
    const a = await s.grantLease(30);
    const b = await s.grantLease(0);
    assert.equal(b.ttl, 1);
    assert.notEqual(a.id, b.id);
    await s.txn([], [put('k', 'v', a.id), put('j', 'v', a.id)]);
    assert.equal((await s.get('k')).kv!.lease, a.id);
    await s.txn([], [put('k', 'v', b.id)]); // rebinds k from a to b
    await s.txn([], [put('j', 'v')]); // unbinds j
    assert.equal((await s.get('j')).kv!.lease, '0');
    await s.revokeLease(a.id);
    assert.ok((await s.get('k')).kv);
    assert.ok((await s.get('j')).kv);
    const rev = (await s.status(1000)).revision;
    await s.revokeLease('12345'); // unknown: not an error
    await assert.rejects(
      s.txn([], [put('x'), put('y', 'v', a.id)]),
      (e: unknown) => e instanceof RegistryError && e.code === 'instance-not-found',
    );
    assert.equal((await s.get('x')).kv, undefined);
    assert.equal((await s.status(1000)).revision, rev);
    await s.revokeLease(b.id);
    assert.equal((await s.get('k')).kv, undefined);
    assert.equal(await s.keepAlive(b.id), 0);
    await s.close();
  });

  it('expires a lease by deleting all its keys in one revision', async () => {
    const s = new MemoryStore();
    const lease = await s.grantLease(1);
    await s.txn([], [put('/i/b', 'B', lease.id), put('/i/a', 'A', lease.id), put('/i/c', 'C', lease.id), put('/i/keep', 'K')]);
    const rev = (await s.status(1000)).revision;
    const c = new Collector();
    await s.watch('/i/', rev + 1, c);
    const batch = await c.next(3000);
    assert.equal(batch.revision, rev + 1);
    assert.deepEqual(
      batch.events.map((e) => [e.type, e.key, e.modRevision, e.prevValue]),
      [
        ['delete', '/i/a', rev + 1, 'A'],
        ['delete', '/i/b', rev + 1, 'B'],
        ['delete', '/i/c', rev + 1, 'C'],
      ],
    );
    assert.deepEqual(
      (await s.range('/i/')).kvs.map((kv) => kv.key),
      ['/i/keep'],
    );
    assert.equal(await s.keepAlive(lease.id), 0);
    await assert.rejects(s.txn([], [put('/i/z', 'v', lease.id)]), RegistryError);
    assert.equal((await s.status(1000)).details?.leases, 0);
    await s.close();
  });

  it('keepAlive extends a lease', async () => {
    const s = new MemoryStore();
    const kept = await s.grantLease(1);
    const lapsed = await s.grantLease(1);
    await s.txn([], [put('kept', 'v', kept.id), put('lapsed', 'v', lapsed.id)]);
    const c = new Collector();
    await s.watch('', 0, c);
    const timer = setInterval(() => void s.keepAlive(kept.id).then((ttl) => assert.equal(ttl, 1)), 250);
    try {
      // both were granted together: when `lapsed` expires, `kept` would have too
      const first = await c.next(3000);
      assert.deepEqual(
        first.events.map((e) => e.key),
        ['lapsed'],
      );
      assert.ok((await s.get('kept')).kv);
    } finally {
      clearInterval(timer);
    }
    const second = await c.next(3000);
    assert.deepEqual(
      second.events.map((e) => e.key),
      ['kept'],
    );
    assert.equal(await s.keepAlive(kept.id), 0);
    await s.close();
  });

  it('delivers put and delete events with previous values, one batch per revision', async () => {
    const s = new MemoryStore();
    const c = new Collector();
    await s.watch('/p/', 1, c);
    await s.txn([], [put('/p/a', '1'), put('/q/x', '1')]);
    await s.txn([], [put('/q/y', '1')]); // outside the prefix: no batch
    await s.txn([], [put('/p/a', '2'), put('/p/b', '1')]);
    await s.txn([], [del('/p/a')]);
    const b1 = await c.next();
    assert.deepEqual(b1, {
      revision: 2,
      events: [{ type: 'put', key: '/p/a', value: '1', modRevision: 2, createRevision: 2, lease: '0' }],
    });
    const b2 = await c.next();
    assert.equal(b2.revision, 4);
    assert.deepEqual(b2.events[0], {
      type: 'put',
      key: '/p/a',
      value: '2',
      modRevision: 4,
      createRevision: 2,
      lease: '0',
      prevValue: '1',
      prevModRevision: 2,
    });
    assert.equal(b2.events[1]!.key, '/p/b');
    const b3 = await c.next();
    assert.deepEqual(b3, {
      revision: 5,
      events: [
        { type: 'delete', key: '/p/a', value: '', modRevision: 5, createRevision: 0, lease: '0', prevValue: '2', prevModRevision: 4 },
      ],
    });
    assert.equal(c.batches.length, 3);
    await s.close();
  });

  it('never calls handlers synchronously inside a write or watch call', async () => {
    const s = new MemoryStore();
    await s.txn([], [put('a', '0')]);
    let inCall = false;
    let calls = 0;
    const handlers = {
      onBatch: () => {
        calls++;
        assert.equal(inCall, false, 'handler called synchronously');
      },
      onError: () => assert.fail('no error expected'),
    };
    inCall = true;
    const wp = s.watch('', 1, handlers); // has history to replay
    inCall = false;
    await wp;
    const lease = await s.grantLease(60);
    for (const write of [() => s.txn([], [put('a', '1', lease.id)]), () => s.revokeLease(lease.id), () => s.txn([], [put('b')])]) {
      inCall = true;
      const p = write();
      inCall = false;
      await p;
    }
    const c = new Collector();
    await s.watch('', 1, c);
    await c.until(() => c.batches.length === 4);
    assert.equal(calls, 4);
    await s.close();
  });

  it('replays history then goes live with no gap or duplicate, even with writes during replay', async () => {
    const s = new MemoryStore();
    for (let i = 0; i < 20; i++) await s.txn([], [put(`/k/${i % 5}`, String(i))]);
    const end = (await s.status(1000)).revision; // 21
    let wrote = 0;
    const c = new Collector();
    const seen: number[] = [];
    const handlers = {
      onBatch: (b: WatchBatch) => {
        seen.push(b.revision);
        // write while the replay is still being delivered
        if (wrote < 5) {
          wrote++;
          void s.txn([], [put(`/k/live${wrote}`, 'x')]);
        }
        c.onBatch(b);
      },
      onError: c.onError,
    };
    const wp = s.watch('/k/', 10, handlers);
    void s.txn([], [put('/k/early', 'x')]); // before the watch promise even resolves
    await wp;
    await s.txn([], [put('/k/after', 'x')]);
    const last = end + 7;
    await c.until(() => seen.at(-1) === last);
    assert.deepEqual(
      seen,
      Array.from({ length: last - 10 + 1 }, (_, i) => 10 + i),
    );
    assert.equal(c.batches[0]!.events[0]!.value, '8'); // the write at revision 10 was i = 8
    assert.equal(c.errors.length, 0);
    await s.close();
  });

  it('reports a compacted start revision through onError and delivers nothing', async () => {
    const s = new MemoryStore();
    for (let i = 0; i < 5; i++) await s.txn([], [put('k', String(i))]); // revisions 2..6
    s.compact(4);
    const dead = new Collector();
    await s.watch('', 3, dead);
    await dead.until(() => dead.errors.length === 1);
    assert.ok(dead.errors[0] instanceof StoreCompactedError);
    assert.equal((dead.errors[0] as StoreCompactedError).compactRevision, 4);
    const ok = new Collector();
    await s.watch('', 4, ok);
    await ok.until(() => ok.batches.length === 3);
    assert.deepEqual(
      ok.batches.map((b) => b.revision),
      [4, 5, 6],
    );
    await s.txn([], [put('k', 'live')]);
    await ok.until(() => ok.batches.length === 4);
    assert.equal(dead.batches.length, 0);
    assert.throws(() => s.compact(100), InvalidRequestError);
    await s.close();
  });

  it('bounds history by historyLimit, dropping whole revisions', async () => {
    const s = new MemoryStore({ historyLimit: 4 });
    await s.txn([], [put('a'), put('b'), put('c')]); // 2
    await s.txn([], [put('a'), put('b')]); // 3: 5 events in history, revision 2 goes
    const dead = new Collector();
    await s.watch('', 2, dead);
    await dead.until(() => dead.errors.length === 1);
    assert.ok(dead.errors[0] instanceof StoreCompactedError);
    const ok = new Collector();
    await s.watch('', 3, ok);
    const b = await ok.next();
    assert.equal(b.revision, 3);
    assert.equal(b.events.length, 2);
    await s.close();
  });

  it('stops everything on close', async () => {
    const s = new MemoryStore();
    const c = new Collector();
    await s.watch('', 0, c);
    await s.grantLease(1);
    const p = s.txn([], [put('a')]); // its batch is queued but not yet delivered
    await p;
    await s.close();
    await s.close();
    await assert.rejects(s.get('a'), StoreUnavailableError);
    await assert.rejects(s.range(''), StoreUnavailableError);
    await assert.rejects(s.txn([], []), StoreUnavailableError);
    await assert.rejects(s.grantLease(1), StoreUnavailableError);
    await assert.rejects(s.keepAlive('1'), StoreUnavailableError);
    await assert.rejects(s.revokeLease('1'), StoreUnavailableError);
    await assert.rejects(s.watch('', 0, c), StoreUnavailableError);
    await assert.rejects(s.status(1000), StoreUnavailableError);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(c.batches.length, 0);
  });
});
