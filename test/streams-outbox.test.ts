// One subscriber's outbox (src/streams/outbox.ts) and the gateway's count of
// unread stream bytes (memory.ts), against a fake connection: no sockets.
// Snapshots and replays are written whole however slowly the client reads; live
// changes queued behind them and data of the stream's own count against the
// allowance; shared data counts once for the whole gateway.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Block, StreamMemory, whole, type Piece } from '../src/streams/memory.ts';
import { Outbox, type StreamSink } from '../src/streams/outbox.ts';

/** A connection that takes `room` bytes, then wants a drain. */
class FakeSink implements StreamSink {
  written: Buffer[] = [];
  room = Infinity;
  private drain: (() => void) | undefined;

  write(chunk: string | Buffer): boolean {
    const data = Buffer.from(chunk);
    this.written.push(data);
    this.room -= data.length;
    return this.room > 0;
  }
  onDrain(listener: () => void): void {
    this.drain = listener;
  }
  onClose(): void {}
  close(): void {}

  /** The client read everything: room again. */
  read(room = Infinity): void {
    this.room = room;
    this.drain?.();
  }
  get text(): string {
    return Buffer.concat(this.written).toString();
  }
}

const shared = (text: string): Piece[] => [whole(Block.of(text, false))];
const own = (text: string): Piece[] => [whole(Block.of(text, true))];
const memory = () => new StreamMemory(() => {});
/** The delays of live changes that waited are of no interest here. */
const notWaited = () => {};
/** Until the outbox has written everything it can (bulk goes a slice per turn of the event loop). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

describe('a stream outbox', () => {
  it('writes a live change at once when nothing waits', () => {
    const sink = new FakeSink();
    const outbox = new Outbox(sink, memory(), 100, () => assert.fail('not too slow'), notWaited);
    assert.equal(outbox.live(shared('a')), true);
    assert.equal(sink.text, 'a');
    assert.equal(outbox.idle, true);
  });

  it('writes a snapshot larger than the allowance whole, with live changes after it, in order', async () => {
    const sink = new FakeSink();
    let overflows = 0;
    const outbox = new Outbox(sink, memory(), 1000, () => overflows++, notWaited);
    const big = 'x'.repeat(300_000);
    outbox.bulk(shared(big));
    assert.equal(outbox.live(shared('after')), true);
    while (!outbox.idle) await settle();
    assert.equal(sink.text, big + 'after');
    assert.equal(overflows, 0, 'shared bulk bytes never count against the allowance');
  });

  it('tells how long a live change waited for a full connection, and nothing for one written at once', async () => {
    const sink = new FakeSink();
    const waits: number[] = [];
    const outbox = new Outbox(
      sink,
      memory(),
      1 << 20,
      () => assert.fail('not too slow'),
      (s) => waits.push(s),
    );
    outbox.live(shared('at once'));
    assert.deepEqual(waits, [], 'a change written in the same turn is not a wait');
    sink.room = 1;
    outbox.live(shared('fills the connection'));
    outbox.live(shared('waits'));
    await settle();
    sink.read();
    assert.equal(waits.length, 1, 'one wait: the change behind the full connection');
    assert.ok(waits[0]! >= 0.01, `it waited while the client did not read (${waits[0]} s)`);
  });

  it('waits for the client while it does not read, and counts live bytes against the allowance', () => {
    const sink = new FakeSink();
    sink.room = 10;
    let overflows = 0;
    const outbox = new Outbox(sink, memory(), 100, () => overflows++, notWaited);
    outbox.bulk(shared('s'.repeat(5000))); // the first slice fills the connection
    for (let i = 0; i < 4; i++) assert.equal(outbox.live(shared('c'.repeat(30))), true, `live change ${i} fits`);
    assert.equal(overflows, 0);
    assert.equal(outbox.live(shared('c'.repeat(30))), false, 'past the allowance the stream is too slow');
    assert.equal(overflows, 1);
    assert.equal(outbox.live(shared('more')), false, 'and stays closed');
    assert.equal(overflows, 1, 'told once');
  });

  it("counts bulk data of the stream's own against the allowance", () => {
    const sink = new FakeSink();
    sink.room = 10;
    let overflows = 0;
    const outbox = new Outbox(sink, memory(), 1000, () => overflows++, notWaited);
    outbox.bulk(shared('s'.repeat(100)));
    outbox.bulk(own('o'.repeat(2000)));
    assert.equal(outbox.live(shared('c')), false, 'a private copy waiting unread is too much');
    assert.equal(overflows, 1);
  });

  it('says since when the client has taken nothing while data waits', async () => {
    const sink = new FakeSink();
    sink.room = 10;
    const outbox = new Outbox(sink, memory(), 1 << 20, () => {}, notWaited);
    const before = Date.now();
    outbox.bulk(shared('b'.repeat(1000)));
    assert.ok(outbox.stalledSince !== undefined && outbox.stalledSince >= before);
    sink.read();
    while (!outbox.idle) await settle();
    assert.equal(outbox.stalledSince, undefined);
  });

  it('is idle again once a slow client has read everything', async () => {
    const sink = new FakeSink();
    sink.room = 10;
    const outbox = new Outbox(sink, memory(), 1 << 20, () => assert.fail('not too slow'), notWaited);
    outbox.bulk(shared('b'.repeat(200_000)));
    outbox.live(shared('live'));
    assert.equal(outbox.idle, false);
    for (let i = 0; i < 100 && !outbox.idle; i++) {
      sink.read(70_000);
      await settle();
    }
    assert.equal(outbox.idle, true);
    assert.equal(sink.text, 'b'.repeat(200_000) + 'live');
  });

  it('takes a snapshot still being rendered and writes it in its place', async () => {
    const sink = new FakeSink();
    const outbox = new Outbox(sink, memory(), 100, () => {}, notWaited);
    let render!: (pieces: Piece[]) => void;
    outbox.bulk(new Promise<Piece[]>((resolve) => (render = resolve)));
    outbox.live(shared('live'));
    assert.equal(sink.text, '', 'nothing overtakes the snapshot');
    render([...shared('snap'), ...shared('shot')]);
    while (!outbox.idle) await settle();
    assert.equal(sink.text, 'snapshotlive');
  });
});

describe("the gateway's unread stream bytes", () => {
  it('count a block shared by many streams once, until the last one has handed it on', () => {
    const mem = memory();
    const block = Block.of('x'.repeat(1000), false);
    const sinks = [new FakeSink(), new FakeSink(), new FakeSink()];
    for (const s of sinks) s.room = 0;
    const outboxes = sinks.map((s) => new Outbox(s, mem, 100, () => {}, notWaited));
    for (const o of outboxes) o.bulk(shared('head'));
    for (const o of outboxes) o.bulk([whole(block)]);
    assert.equal(mem.unread, 4 * 3 + 1000, 'each private head, and the shared block once');
    sinks[0]!.read();
    sinks[1]!.read();
    assert.equal(mem.unread, 4 + 1000, 'still held by the third stream');
    outboxes[2]!.close();
    assert.equal(mem.unread, 0, 'a closed stream holds nothing');
  });

  it('keep counting what the connection has taken but not sent, until it drains', () => {
    const mem = memory();
    const sink = new FakeSink();
    sink.room = 10;
    const outbox = new Outbox(sink, mem, 1 << 20, () => {}, notWaited);
    outbox.live(shared('z'.repeat(50)));
    assert.equal(mem.unread, 50, "in the connection's buffer, not yet sent");
    sink.read();
    assert.equal(mem.unread, 0);
  });
});
