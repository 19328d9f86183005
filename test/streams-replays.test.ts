// Replays from the store's history (src/streams/replays.ts, history.ts) without
// etcd or sockets: concurrent resumes share one replay, and one replay keeps at
// most the newest REPLAY_MAX_CHANGES changes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { joinEvents } from '../src/events.ts';
import { BookkeepingLease } from '../src/registry/bookkeeping.ts';
import { StoreCompactedError } from '../src/registry/errors.ts';
import { KeyLayout } from '../src/registry/keys.ts';
import { encodeRecord, newRecord } from '../src/registry/records.ts';
import { MemoryStore } from '../src/registry/store/memory.ts';
import { MonitoredStore } from '../src/registry/store/monitored.ts';
import type { Change } from '../src/registry/types.ts';
import { History, ReplayTimedOutError, type Replay } from '../src/streams/history.ts';
import { Replays, type ChangeHistory } from '../src/streams/replays.ts';
import { Ring } from '../src/streams/ring.ts';

const change = (revision: number): Change => ({ type: 'register', service: 'svc', id: `i${revision}`, revision });

/** A history that answers what it is told and counts the replays asked of it. */
class FakeHistory implements ChangeHistory {
  calls: { after: number; max: number }[] = [];
  private release!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.release = resolve));

  constructor(private readonly fence: number) {}

  async since(after: number, max: number): Promise<Replay> {
    this.calls.push({ after, max });
    await this.gate;
    const changes = [];
    for (let r = after + 1; r <= this.fence; r++) changes.push(change(r));
    return { changes, from: after, fence: this.fence };
  }

  open(): void {
    this.release();
  }
}

describe('replays from the store', () => {
  it('resumes that arrive while a replay runs share the next one, from the lowest id among them', async () => {
    const ring = new Ring(100, 50);
    const history = new FakeHistory(50);
    const replays = new Replays(history, ring, 100);
    const waits = [30, 10, 40, 20].map((after) => replays.reachBack(after));
    history.open();
    await Promise.all(waits);
    assert.deepEqual(
      history.calls.map((c) => c.after),
      [30, 10],
      'the first runs at once; the three that came meanwhile share one',
    );
    assert.equal(ring.base, 10, 'the ring now reaches back to the lowest id');
    await replays.reachBack(15);
    assert.equal(history.calls.length, 2, 'a later resume the ring covers costs the store nothing');
  });

  it('remembers a replay that ran out of time: the resume gets its reset, and a loop on the same id costs the store nothing', async () => {
    const ring = new Ring(100, 100_000);
    let calls = 0;
    const slow: ChangeHistory = {
      async since() {
        calls++;
        throw new ReplayTimedOutError('replay from the store timed out');
      },
    };
    const replays = new Replays(slow, ring, 100);
    await replays.reachBack(1); // resolves: the ring, which does not reach back, decides on a reset
    assert.equal(ring.base, 100_000);
    assert.equal(replays.lost(1), true);
    for (let i = 0; i < 5; i++) await replays.reachBack(1);
    assert.equal(calls, 1, 'asked again, the store is not read again');
  });

  it('remembers a gap one replay could not cover: a resume from below it costs the store nothing', async () => {
    const ring = new Ring(100, 100_000);
    let calls = 0;
    const capped: ChangeHistory = {
      async since(after, max) {
        calls++;
        // More than `max` changes since `after`: the newest are kept, from 60_000 on.
        const changes = [];
        for (let r = 60_001; r <= 100_000; r += 10) changes.push(change(r));
        assert.ok(changes.length <= max);
        return { changes, from: 60_000, fence: 100_000 };
      },
    };
    const replays = new Replays(capped, ring, 100);
    assert.equal(replays.lost(1), false, 'not known before the store was asked');
    await replays.reachBack(1);
    assert.equal(calls, 1);
    assert.equal(ring.base, 60_000);
    assert.equal(replays.lost(1), true);
    assert.equal(replays.lost(59_999), true);
    assert.equal(replays.lost(60_000), false, 'from the replay on, the ring has it');
    await replays.reachBack(1);
    assert.equal(calls, 1, 'asked again, the store is not read again');
    replays.restart();
    assert.equal(replays.lost(1), false, 'after a reload revisions may have started over');
  });

  it('remembers ids whose changes were compacted away', async () => {
    let calls = 0;
    const compacted: ChangeHistory = {
      async since() {
        calls++;
        throw new StoreCompactedError();
      },
    };
    const replays = new Replays(compacted, new Ring(100, 500), 100);
    await replays.reachBack(200);
    assert.equal(replays.lost(200), true);
    assert.equal(replays.lost(150), true);
    assert.equal(replays.lost(201), false);
    assert.equal(calls, 1);
  });

  it('asks for at least the ring size and at least the replay cap', async () => {
    const history = new FakeHistory(5);
    history.open();
    await new Replays(history, new Ring(80_000, 5), 80_000).reachBack(1);
    await new Replays(history, new Ring(10, 5), 10).reachBack(1);
    assert.deepEqual(
      history.calls.map((c) => c.max),
      [80_000, 50_000],
    );
  });

  it('a store replay keeps the newest changes, whole revisions, and says where it starts', async () => {
    const store = new MonitoredStore(new MemoryStore(), joinEvents());
    const keys = new KeyLayout('/cap');
    const put = (id: string) => {
      const record = newRecord('svc', id, { address: '10.0.0.1', port: 80 }, 30);
      return { type: 'put' as const, key: keys.instance('svc', id), value: encodeRecord(record) };
    };
    const start = (await store.txn([], [put('a')])).revision;
    for (let i = 0; i < 8; i++) await store.txn([], [put(`x${i}`), put(`y${i}`)]); // 8 revisions of 2 changes
    const replay = await new History(store, keys, new BookkeepingLease(store)).since(start, 5);
    assert.ok(replay.changes.length <= 5 && replay.changes.length >= 4, `kept ${replay.changes.length}`);
    assert.equal(replay.changes.length % 2, 0, 'no revision is cut in half');
    assert.equal(replay.from, replay.changes[0]!.revision - 1, 'from: the newest revision left out');
    assert.ok(replay.fence > replay.changes.at(-1)!.revision, 'read up to a fence written after the changes');
    await store.close();
  });
});
