// The soak checker against small hand-made runs: a clean run has no
// violations, and each doctored one (a dropped event, a duplicate, a swap, a
// stale read…) is reported under the property it breaks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { check, type Property } from '../soak/checker.ts';
import { digestOf, type RunLog, type StreamItem } from '../soak/observations.ts';

const put = (revision: number, key: string, createRevision: number, status = 'up') => ({
  revision,
  key,
  type: 'put' as const,
  createRevision,
  value: JSON.stringify({ status }),
  at: revision * 100,
});
const del = (revision: number, key: string) => ({ revision, key, type: 'delete' as const, at: revision * 100 });
const marker = (revision: number, keys: string[]) => ({
  revision,
  key: `_/deregistered/t${revision}`,
  type: 'put' as const,
  createRevision: revision,
  value: JSON.stringify({ instances: keys }),
  at: revision * 100,
});
const change = (type: string, key: string, revision: number, reason?: string): StreamItem => {
  const [service, id] = key.split('/') as [string, string];
  return { kind: 'change', type, service, id, revision, reason, at: revision * 100 + 20 };
};

/** A clean run: one service "a" watched by one subscriber across two connections, plus a service "b" outside its scope. */
function cleanRun(): RunLog {
  return {
    seed: 1,
    minutes: 1,
    replicas: 2,
    startedAt: '2026-12-03T00:00:00.000Z',
    durationMs: 1000,
    history: {
      startRevision: 1,
      endRevision: 7,
      events: [
        put(2, 'a/1', 2),
        put(3, 'a/2', 3),
        put(4, 'a/1', 2, 'draining'),
        del(5, 'a/2'),
        marker(5, ['a/2']),
        put(6, 'b/1', 6),
        del(7, 'a/1'),
      ],
    },
    settleRevision: 7,
    compactions: [],
    subscribers: [
      {
        name: 'sub-a',
        path: '/services/a/events',
        scope: { services: ['a'] },
        connections: [
          {
            replica: 0,
            lastEventId: '',
            openedAt: 0,
            status: 200,
            items: [
              { kind: 'snapshot', revision: 1, reset: false, digest: digestOf([]), count: 0, at: 110 },
              change('register', 'a/1', 2),
              change('register', 'a/2', 3),
              change('update', 'a/1', 4),
            ],
          },
          {
            replica: 1,
            lastEventId: '4',
            openedAt: 450,
            status: 200,
            items: [
              change('deregister', 'a/2', 5, 'deregistered'),
              { kind: 'progress', revision: 6, at: 650 },
              change('deregister', 'a/1', 7, 'expired'),
            ],
          },
        ],
      },
    ],
    writes: [
      { op: 'register', replica: 0, revision: 2, sentAt: 150, answeredAt: 190, changes: [{ key: 'a/1', kind: 'put', status: 'up' }] },
      { op: 'status', replica: 1, revision: 4, sentAt: 350, answeredAt: 390, changes: [{ key: 'a/1', kind: 'put', status: 'draining' }] },
      { op: 'deregister', replica: 1, revision: 5, sentAt: 450, answeredAt: 490, changes: [{ key: 'a/2', kind: 'delete' }] },
    ],
    renewals: [{ key: 'a/1', sentAt: 150, ttl: 0.4, registration: true }],
    notFound: [],
    abandoned: [],
    agentKeys: [],
    reads: [
      {
        kind: 'minRevision',
        service: 'a',
        replica: 1,
        bound: 4,
        status: 200,
        label: 4,
        digest: digestOf(['a/1@4', 'a/2@3']),
        count: 2,
        stale: false,
        sentAt: 400,
        answeredAt: 410,
      },
    ],
    heartbeats: [],
    faults: [],
    rss: [],
    loopDelay: [],
  };
}

function violated(log: RunLog): Partial<Record<Property, number>> {
  const { counts } = check(log);
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
}

const items = (log: RunLog, conn: number) => log.subscribers[0]!.connections[conn]!.items;

describe('soak checker', () => {
  it('finds no violation in a run that kept every promise', () => {
    const result = check(cleanRun());
    assert.deepEqual(result.violations, []);
    assert.equal(result.stats.deliveries, 5);
    assert.equal(result.stats.expiries, 1);
  });

  it('reports a change the subscriber never got', () => {
    const log = cleanRun();
    items(log, 0).splice(2, 1); // drop register a/2@3
    assert.deepEqual(violated(log), { 'stream-exact': 1 });
    assert.match(check(log).violations[0]!.detail, /never came.*a\/2@3/);
  });

  it("does not count what the subscriber's replica had not applied when the quiet phase ended, only what it had", () => {
    const log = cleanRun();
    items(log, 1).pop(); // deregister a/1@7 never came on replica 1
    log.settledApplied = [7, 6]; // replica 1's store watch stopped at 6
    assert.deepEqual(violated(log), {});
    assert.equal(check(log).stats.unsettledChanges, 1);
    log.settledApplied = [7, 7]; // it had applied 7: a lost event
    assert.deepEqual(violated(log), { 'stream-exact': 1 });
    items(log, 1).shift(); // deregister a/2@5 never came either, though replica 1 had applied it
    log.settledApplied = [7, 6];
    assert.deepEqual(violated(log), { 'stream-exact': 1 });
    assert.match(check(log).violations[0]!.detail, /1 changes of its scope never came.*a\/2@5\)/);
  });

  it('reports a change delivered twice (a replay that overlaps the first connection)', () => {
    const log = cleanRun();
    items(log, 1).unshift(change('update', 'a/1', 4));
    assert.deepEqual(violated(log), { 'stream-exact': 1 });
    assert.match(check(log).violations[0]!.detail, /delivered twice/);
  });

  it('reports two changes swapped', () => {
    const log = cleanRun();
    const list = items(log, 0);
    [list[2], list[3]] = [list[3]!, list[2]!];
    assert.deepEqual(violated(log), { 'stream-exact': 1, 'no-time-travel': 1 }, 'the swapped change went back in time');
    assert.match(check(log).violations[0]!.detail, /out of order/);
  });

  it('reports a change that is not in the history of the scope', () => {
    const log = cleanRun();
    items(log, 1).push(change('register', 'b/1', 6));
    assert.deepEqual(violated(log), { 'stream-exact': 1, 'no-time-travel': 1 }, 'revision 6 came after a later one');
  });

  it('reports a progress event that skips a change', () => {
    const log = cleanRun();
    items(log, 1).shift(); // deregister a/2@5 gone, then progress 6 claims all up to 6 came
    assert.deepEqual(violated(log), { 'stream-exact': 1 });
  });

  it('reports the wrong deregister reason', () => {
    const log = cleanRun();
    items(log, 1)[2] = change('deregister', 'a/1', 7, 'deregistered');
    assert.deepEqual(violated(log), { 'event-content': 1 });
  });

  it('reports a reset with no compaction past the id, and accepts it after one', () => {
    const log = cleanRun();
    items(log, 1).splice(0, 2, { kind: 'snapshot', revision: 6, reset: true, digest: digestOf(['a/1@4']), count: 1, at: 600 });
    assert.deepEqual(violated(log), { 'stream-reset': 1 });
    log.compactions.push({ revision: 6, at: 590 });
    assert.deepEqual(violated(log), {});
  });

  it('reports a snapshot that is not the state at its revision', () => {
    const log = cleanRun();
    log.compactions.push({ revision: 6, at: 590 });
    items(log, 1).splice(0, 2, { kind: 'snapshot', revision: 6, reset: true, digest: digestOf(['a/1@4', 'a/2@3']), count: 2, at: 600 });
    assert.deepEqual(violated(log), { 'snapshot-state': 1 });
  });

  it('reports a stale read: older than its minRevision, or not the state at its label', () => {
    const log = cleanRun();
    log.reads[0] = { ...log.reads[0]!, label: 3, digest: digestOf(['a/1@2', 'a/2@3']) };
    assert.deepEqual(violated(log), { 'read-own-write': 1 });
    log.reads[0] = { ...log.reads[0]!, label: 4, digest: digestOf(['a/1@2', 'a/2@3']) };
    assert.deepEqual(violated(log), { 'read-state': 1 });
  });

  it('reports a blocking query answered below its index before its wait ended, and allows it at the end of the wait', () => {
    const log = cleanRun();
    log.reads.push({
      kind: 'blocking',
      service: 'a',
      replica: 0,
      bound: 5,
      waitMs: 1000,
      status: 200,
      label: 4,
      digest: digestOf(['a/1@4', 'a/2@3']),
      count: 2,
      stale: false,
      sentAt: 500,
      answeredAt: 520,
    });
    assert.deepEqual(violated(log), { 'blocking-not-behind': 1 });
    log.reads[1] = { ...log.reads[1]!, answeredAt: 1600 };
    assert.deepEqual(violated(log), {});
    assert.equal(check(log).stats.blockingBelowIndexAtWaitEnd, 1);
    log.reads[1] = { ...log.reads[1]!, label: 5, digest: digestOf(['a/1@4']), count: 1, answeredAt: 520 };
    assert.deepEqual(violated(log), { 'blocking-not-behind': 1 }, 'answered early at its index');
    log.faults.push({ kind: 'gateway-term', target: 'g0', start: 510, end: 900 });
    assert.deepEqual(violated(log), {}, 'answered at its index by a draining gateway');
  });

  it('reports a read on a replica labelled below a read of it there that had finished', () => {
    const log = cleanRun();
    const earlier = log.reads[0]!;
    // Another replica may be behind; the same replica, once it answered 4, may not answer 3 later.
    const later = { ...earlier, bound: 0, label: 3, digest: digestOf(['a/1@2', 'a/2@3']), sentAt: 420, answeredAt: 430 };
    log.reads.push({ ...later, replica: 0 });
    assert.deepEqual(violated(log), {});
    log.reads.push(later);
    assert.deepEqual(violated(log), { 'no-time-travel': 1 });
  });

  it('reports an acknowledged write missing at its answered revision', () => {
    const log = cleanRun();
    log.writes[2] = { ...log.writes[2]!, revision: 6 };
    log.writes[1] = { ...log.writes[1]!, changes: [{ key: 'a/1', kind: 'put', status: 'down' }] };
    assert.deepEqual(violated(log), { 'ack-in-history': 2 });
  });

  it('reports an instance that expired within the TTL of an answered heartbeat', () => {
    const log = cleanRun();
    log.renewals.push({ key: 'a/1', sentAt: 500, ttl: 30, registration: false });
    assert.deepEqual(violated(log), { 'no-early-expiry': 1 });
  });

  it('reports a heartbeat answered 404 while etcd held the instance, and accepts one that met its expiry', () => {
    const log = cleanRun();
    // a/1 existed from revision 2 to 7; acknowledged writes put etcd between revisions 2 and 3 for this heartbeat.
    log.notFound.push({ key: 'a/1', replica: 0, sentAt: 200, answeredAt: 240 });
    // a/1 was deleted at revision 7: a 404 sent when etcd was at revision 5 or later, answered before any later write, is right.
    log.notFound.push({ key: 'a/1', replica: 1, sentAt: 500, answeredAt: 700 });
    // a/2 was deregistered at 5 and never came back.
    log.notFound.push({ key: 'a/2', replica: 1, sentAt: 500, answeredAt: 520 });
    // Boundaries: a/2 deleted at exactly the highest revision etcd can have been at (a write at 6 was sent after
    // the answer), and an instance etcd never had.
    log.writes.push({
      op: 'register',
      replica: 0,
      revision: 6,
      sentAt: 600,
      answeredAt: 610,
      changes: [{ key: 'b/1', kind: 'put', status: 'up' }],
    });
    log.notFound.push({ key: 'a/2', replica: 0, sentAt: 480, answeredAt: 590 });
    log.notFound.push({ key: 'a/9', replica: 0, sentAt: 200, answeredAt: 240 });
    assert.deepEqual(violated(log), { 'heartbeat-404': 1 });
    assert.match(check(log).violations[0]!.detail, /a\/1: heartbeat to replica 0 .* etcd held it from revision 2 to 3/);
  });

  it('reports an agent instance that expired and an abandoned one that did not', () => {
    const log = cleanRun();
    log.agentKeys.push('a/1');
    log.durationMs = 120_000;
    log.abandoned.push({ key: 'b/1', registeredAt: 600, ttl: 5 });
    assert.deepEqual(violated(log), { 'agent-kept': 1, 'abandoned-expired': 1 });
  });

  it('accounts for every expiry: left to expire, after a deregistration that got no answer, or kept by heartbeats that failed', () => {
    const log = cleanRun();
    assert.equal(check(log).expiries, undefined, 'runs from before unanswered deregistrations were logged say nothing');
    log.history.events.push(put(8, 'b/2', 8), del(9, 'b/2'), put(10, 'b/3', 10), del(11, 'b/3'), put(12, 'b/4', 12), del(13, 'b/4'));
    log.history.endRevision = 13;
    log.abandoned.push({ key: 'b/2', registeredAt: 790, ttl: 0.1 });
    // a/1's DELETE went out after it expired: it still counts as kept; b/4 never had an answered registration.
    log.unansweredDeregistrations = [
      { key: 'b/3', sentAt: 1050 },
      { key: 'a/1', sentAt: 750 },
      { key: 'b/2', sentAt: 850 },
    ];
    const failed = (sentAt: number) => ({ key: 'a/1', replica: 1, status: 503, sentAt, answeredAt: sentAt + 40 });
    log.failedHeartbeats = [failed(100), failed(300), failed(800)]; // before the last renewal, in its TTL, after the expiry
    const result = check(log);
    assert.deepEqual(result.counts, check(cleanRun()).counts, 'no violation');
    assert.deepEqual(result.expiries, {
      total: 4,
      abandoned: 1,
      afterUnansweredDeregistration: 1,
      neverAcknowledged: 1,
      kept: [{ key: 'a/1', at: 700, lastRenewalSentAt: 150, failedHeartbeats: [failed(300)] }],
    });
  });

  it('reports revisions the recorder never saw, but those of the store-full filler (outside the prefix)', () => {
    const log = cleanRun();
    log.history.endRevision = 9;
    assert.deepEqual(violated(log), { 'history-complete': 1 });
    log.foreignRevisions = [8, 9];
    assert.deepEqual(violated(log), {});
  });

  it('checks a run with a store restore in two stretches, and the restore itself', () => {
    // Restored at revision 4 (head 7): revision 5 is now a/3's registration, not a/2's deregistration.
    const restored = (): RunLog => {
      const log = cleanRun();
      log.restores = [{ revision: 4, head: 7, stoppedAt: 750, restartedAt: 800, detectedAt: [900, 900] }];
      log.history.events.push({ ...put(5, 'a/3', 5), at: 1000 });
      log.history.endRevision = 5;
      log.settleRevision = 5;
      log.durationMs = 1100;
      log.subscribers[0]!.connections.push({
        replica: 0,
        lastEventId: '7',
        openedAt: 950,
        status: 200,
        items: [
          { kind: 'snapshot', revision: 4, reset: true, digest: digestOf(['a/1@4', 'a/2@3']), count: 2, at: 960 },
          { ...change('register', 'a/3', 5), at: 1010 },
        ],
      });
      return log;
    };
    assert.deepEqual(check(restored()).violations, []);
    // Read as one history, the same run is full of violations: the restore point is what makes it right.
    const asOne = restored();
    asOne.restores = undefined;
    assert.ok((violated(asOne)['no-time-travel'] ?? 0) > 0, JSON.stringify(violated(asOne)));

    // A resume with a restored-store id below the old head gets a reset: the gateway cannot tell it from an old id.
    const resumedLow = restored();
    resumedLow.subscribers[0]!.connections.push({
      replica: 1,
      lastEventId: '5',
      openedAt: 1050,
      status: 200,
      items: [{ kind: 'snapshot', revision: 5, reset: true, digest: digestOf(['a/1@4', 'a/2@3', 'a/3@5']), count: 3, at: 1060 }],
    });
    assert.deepEqual(check(resumedLow).violations, []);

    const notFlagged = restored();
    (items(notFlagged, 2)[0] as { reset: boolean }).reset = false;
    assert.deepEqual(violated(notFlagged), { 'restore-reset': 1 });

    const early = restored(); // a change from g0 after it showed the restored store, before the reset
    items(early, 2).unshift({ ...change('register', 'a/3', 5), at: 955 });
    assert.equal(violated(early)['restore-reset'], 1);

    const unnoticed = restored();
    unnoticed.restores![0]!.detectedAt = [900, null];
    assert.deepEqual(violated(unnoticed), { 'restore-reset': 1 });
  });

  it('takes a deregistration that a full store recorded without its reason for no expiry', () => {
    // a/1 renewed with TTL 30 s, then deleted at 7 with no bookkeeping key: "expired" in the history.
    const log = cleanRun();
    log.renewals.push({ key: 'a/1', sentAt: 500, ttl: 30, registration: false });
    const acked = structuredClone(log);
    acked.writes.push({
      op: 'deregister',
      replica: 0,
      revision: 7,
      sentAt: 650,
      answeredAt: 720,
      changes: [{ key: 'a/1', kind: 'delete' }],
    });
    assert.deepEqual(violated(acked), {});
    // Unanswered: only while the store was full.
    const unanswered = structuredClone(log);
    unanswered.unansweredDeregistrations = [{ key: 'a/1', sentAt: 650 }];
    assert.deepEqual(violated(unanswered), { 'no-early-expiry': 1 });
    unanswered.faults.push({ kind: 'store-full', target: 'etcd', start: 600, end: 800 });
    assert.deepEqual(violated(unanswered), {});
  });
});
