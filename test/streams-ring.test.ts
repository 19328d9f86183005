// The ring of recent changes (src/streams/ring.ts) on its own: no store, no sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Change } from '../src/registry/types.ts';
import { framesAfter, Ring } from '../src/streams/ring.ts';

const change = (revision: number, service = 'svc', id = `i${revision}`): Change => ({ type: 'register', service, id, revision });
const revisions = (ring: Ring, after: number) => [...ring.after(after)].map((e) => e.revision);

describe('the ring of recent changes', () => {
  it('keeps the newest changes and says from where it is complete', () => {
    const ring = new Ring(3, 10);
    assert.equal(ring.base, 10);
    ring.push([change(11), change(12)]);
    ring.push([change(13), change(14)]);
    assert.deepEqual(revisions(ring, 0), [12, 13, 14]);
    assert.equal(ring.base, 11, 'every change above base is held');
    assert.deepEqual(revisions(ring, 12), [13, 14]);
  });

  it('drops whole revisions only, so a batch is never half there', () => {
    const ring = new Ring(3, 0);
    ring.push([change(1), change(2, 'a', 'x'), change(2, 'b', 'y'), change(2, 'c', 'z')]);
    ring.push([change(3)]);
    // Keeping 3 would split revision 2: it goes whole and base moves past it.
    assert.equal(ring.base, 2);
    assert.deepEqual(revisions(ring, 0), [3]);
  });

  it('builds the frames of a revision once, as one block, with the revision as their id', () => {
    const ring = new Ring(10, 0);
    const [a, b] = ring.push([change(5, 'a'), change(5, 'b')]);
    assert.equal(a!.block, b!.block, 'one block per revision');
    assert.match(
      a!.block.data.subarray(a!.start, a!.end).toString(),
      /^id: 5\nevent: register\ndata: \{"type":"register","service":"a","id":"i5","revision":5\}\n\n$/,
    );
    assert.equal(b!.start, a!.end);
    assert.equal(b!.end, b!.block.data.length);
    assert.equal([...ring.after(0)][0], a, 'the ring hands out the same entry, not a copy');
  });

  it('is extended backwards by a replay that reaches up to it, and not by one that does not', () => {
    const ring = new Ring(10, 20);
    ring.push([change(21)]);
    ring.extend({ changes: [change(16), change(18)], from: 15, fence: 18 });
    assert.equal(ring.base, 20, 'a replay whose fence is below the ring leaves a gap: not used');
    ring.extend({ changes: [change(16), change(18), change(20), change(21)], from: 15, fence: 21 });
    assert.equal(ring.base, 15);
    assert.deepEqual(revisions(ring, 0), [16, 18, 20, 21], 'changes already in the ring are not doubled');
  });

  it("gives a subscriber the revision's shared block, a run of it, or a copy of its own when its frames are apart", () => {
    const ring = new Ring(10, 0);
    const entries = ring.push([change(7, 'a'), change(7, 'b'), change(7, 'c'), change(8, 'a')]);
    const all = framesAfter(entries, 0, () => true)!;
    assert.equal(all.events, 4);
    assert.equal(all.last, 8);
    assert.equal(all.pieces[0]!.data, entries[0]!.block.data, 'every frame of revision 7: the block itself');
    const ab = framesAfter(entries, 0, (s) => s !== 'c')!;
    assert.equal(ab.pieces[0]!.block, entries[0]!.block, 'a run of the block: shared');
    assert.equal(ab.pieces[0]!.data.buffer, entries[0]!.block.data.buffer, 'no copy');
    const ac = framesAfter(entries, 0, (s) => s !== 'b')!;
    assert.equal(ac.pieces[0]!.block.own, true, "frames apart: a copy that counts as the stream's own");
    assert.match(ac.pieces[0]!.data.toString(), /"service":"a".*\n\n.*"service":"c"/s);
    assert.equal(
      framesAfter(entries, 8, () => true),
      undefined,
      'nothing after 8',
    );
  });

  it('starts over empty after a reload', () => {
    const ring = new Ring(10, 0);
    ring.push([change(1), change(2)]);
    ring.restart(7);
    assert.equal(ring.base, 7);
    assert.deepEqual(revisions(ring, 0), []);
  });
});
