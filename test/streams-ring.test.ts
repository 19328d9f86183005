// The ring of recent changes (src/streams/ring.ts) on its own: no store, no sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Change } from '../src/registry/types.ts';
import { Ring } from '../src/streams/ring.ts';

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

  it('builds each frame once, with the revision as its id', () => {
    const ring = new Ring(10, 0);
    const [entry] = ring.push([change(5)]);
    assert.match(entry!.frame, /^id: 5\nevent: register\ndata: \{"type":"register","service":"svc","id":"i5","revision":5\}\n\n$/);
    assert.equal([...ring.after(0)][0], entry, 'the ring hands out the same entry, not a copy');
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

  it('starts over empty after a reload', () => {
    const ring = new Ring(10, 0);
    ring.push([change(1), change(2)]);
    ring.restart(7);
    assert.equal(ring.base, 7);
    assert.deepEqual(revisions(ring, 0), []);
  });
});
