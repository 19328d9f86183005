// One subscriber's outbox (src/streams/outbox.ts) against a fake connection: no
// sockets. Snapshots and replays are written whole however slowly the client
// reads; only live changes queued behind them count against the allowance.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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

/** Until the outbox has written everything it can (bulk goes a slice per turn of the event loop). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

describe('a stream outbox', () => {
  it('writes a live change at once when nothing waits', () => {
    const sink = new FakeSink();
    const outbox = new Outbox(sink, 100, () => assert.fail('not too slow'));
    assert.equal(outbox.live('a'), true);
    assert.equal(sink.text, 'a');
    assert.equal(outbox.idle, true);
  });

  it('writes a snapshot larger than the allowance whole, with live changes after it, in order', async () => {
    const sink = new FakeSink();
    let overflows = 0;
    const outbox = new Outbox(sink, 1000, () => overflows++);
    const big = 'x'.repeat(300_000);
    outbox.bulk(big);
    assert.equal(outbox.live('after'), true);
    while (!outbox.idle) await settle();
    assert.equal(sink.text, big + 'after');
    assert.equal(overflows, 0, 'bulk bytes never count against the allowance');
  });

  it('waits for the client while it does not read, and counts only live bytes against the allowance', async () => {
    const sink = new FakeSink();
    sink.room = 10;
    let overflows = 0;
    const outbox = new Outbox(sink, 100, () => overflows++);
    outbox.bulk('s'.repeat(5000)); // the first slice fills the connection
    for (let i = 0; i < 4; i++) assert.equal(outbox.live('c'.repeat(30)), true, `live change ${i} fits`);
    assert.equal(overflows, 0);
    assert.equal(outbox.live('c'.repeat(30)), false, 'past the allowance the stream is too slow');
    assert.equal(overflows, 1);
    assert.equal(outbox.live('more'), false, 'and stays closed');
    assert.equal(overflows, 1, 'told once');
  });

  it('is idle again once a slow client has read everything', async () => {
    const sink = new FakeSink();
    sink.room = 10;
    const outbox = new Outbox(sink, 1 << 20, () => assert.fail('not too slow'));
    outbox.bulk('b'.repeat(200_000));
    outbox.live('live');
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
    const outbox = new Outbox(sink, 100, () => {});
    let render!: (parts: Buffer[]) => void;
    outbox.bulk(new Promise<Buffer[]>((resolve) => (render = resolve)));
    outbox.live('live');
    assert.equal(sink.text, '', 'nothing overtakes the snapshot');
    render([Buffer.from('snap'), Buffer.from('shot')]);
    while (!outbox.idle) await settle();
    assert.equal(sink.text, 'snapshotlive');
  });
});
