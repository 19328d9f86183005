// A store restored from a snapshot starts its history again at the snapshot's
// revision: revision numbers repeat with other changes. The checker therefore
// checks each stretch of the run between restores (an epoch) on its own, against
// the history recorded in it, and checks the restore itself: every gateway went
// back to the restored store, and every stream got a snapshot flagged reset
// before any change of it. What a client saw is placed in an epoch by time:
// writes and heartbeats by when they were sent and answered, reads by when their
// replica showed the restored store, streams by the reset snapshot that began
// the restored store for them. What straddles a restore is left out.
import type { Connection, HistoryEvent, Restore, RunLog, SubscriberLog } from './observations.ts';

interface Epoch {
  /** Observations from here (the restored store answered)… */
  from: number;
  /** …until here (the store stopped for the next restore). */
  to: number;
  startRevision: number;
  endRevision: number;
  /** By replica: from when its reads count (it showed this epoch's store). */
  readsFrom: (replica: number) => number;
  last: boolean;
}

function epochsOf(log: RunLog, restores: Restore[]): Epoch[] {
  return Array.from({ length: restores.length + 1 }, (_, k) => {
    const before = restores[k - 1];
    const after = restores[k];
    return {
      from: before ? before.restartedAt : -Infinity,
      to: after ? after.stoppedAt : Infinity,
      startRevision: before ? before.revision : log.history.startRevision,
      endRevision: after ? after.head : log.history.endRevision,
      readsFrom: (replica) => (before ? (before.detectedAt[replica] ?? Infinity) : -Infinity),
      last: !after,
    };
  });
}

/** The run log cut into one log per epoch (the run itself when there was no restore). */
export function splitAtRestores(log: RunLog): RunLog[] {
  const restores = [...(log.restores ?? [])].sort((a, b) => a.stoppedAt - b.stoppedAt);
  if (!restores.length) return [log];
  const epochs = epochsOf(log, restores);
  const streams = log.subscribers.map((s) => splitStream(s, restores));
  let base: HistoryEvent[] = [];
  return epochs.map((e, k) => {
    const sent = (t: number) => t >= e.from && t < e.to;
    const recorded = log.history.events.filter((x) => sent(x.at));
    // The restored store starts from the snapshot's state: the instances the history held at its revision.
    const events = [...base.map((x) => ({ ...x, at: e.from })), ...recorded];
    const next = restores[k];
    if (next) base = stateAt(events, next.revision);
    const within = (x: { sentAt: number; answeredAt: number }) => x.sentAt >= e.from && x.answeredAt < e.to;
    return {
      ...log,
      // The restore this stretch starts with: resets of ids up to its old head are the gateway's due.
      restores: restores[k - 1] ? [restores[k - 1]!] : undefined,
      durationMs: e.last ? log.durationMs : e.to,
      history: {
        ...log.history,
        startRevision: e.startRevision,
        endRevision: e.endRevision,
        events,
      },
      // Only the last epoch ends with the quiet phase; a restore throws away what came after its snapshot.
      settleRevision: e.last ? log.settleRevision : e.startRevision,
      settledApplied: e.last ? log.settledApplied : undefined,
      compactions: log.compactions.filter((c) => sent(c.at)),
      subscribers: streams.map((parts) => parts[k]!),
      writes: log.writes.filter(within),
      renewals: log.renewals.filter((r) => sent(r.sentAt)),
      notFound: log.notFound.filter(within),
      failedHeartbeats: log.failedHeartbeats?.filter(within),
      unansweredDeregistrations: log.unansweredDeregistrations?.filter((d) => sent(d.sentAt)),
      storeFull: log.storeFull?.filter((d) => sent(d.sentAt)),
      abandoned: log.abandoned.filter((a) => sent(a.registeredAt)),
      reads: log.reads.filter((r) => r.sentAt >= e.readsFrom(r.replica) && r.answeredAt < e.to),
    };
  });
}

/** The last put of every instance key alive at `revision`. */
function stateAt(events: HistoryEvent[], revision: number): HistoryEvent[] {
  const live = new Map<string, HistoryEvent>();
  for (const x of events) {
    if (x.revision > revision || x.key.startsWith('_/')) continue;
    if (x.type === 'put') live.set(x.key, x);
    else live.delete(x.key);
  }
  return [...live.values()].sort((a, b) => a.revision - b.revision);
}

/**
 * One subscriber's connections, cut where each restored store began for it: at the first
 * snapshot after the restored members answered. That snapshot opens the epoch as if the
 * stream were new (its revision may be below every id before it: not time travel).
 */
function splitStream(sub: SubscriberLog, restores: Restore[]): SubscriberLog[] {
  const parts: Connection[][] = restores.map(() => []).concat([[]]);
  let k = 0;
  for (const conn of sub.connections) {
    let current: Connection = { ...conn, items: [] };
    parts[k]!.push(current);
    for (const item of conn.items) {
      if (k < restores.length && item.kind === 'snapshot' && item.at >= restores[k]!.restartedAt) {
        k++;
        current = { ...conn, lastEventId: '', items: [] };
        parts[k]!.push(current);
      }
      current.items.push(item);
    }
  }
  return parts.map((connections) => ({ ...sub, connections }));
}

/**
 * The restore property: every gateway showed the restored store, and no stream delivered a
 * change from a gateway that already showed it before the snapshot flagged reset that began it.
 */
export function restoreViolations(log: RunLog): { detail: string; subject: string }[] {
  const out: { detail: string; subject: string }[] = [];
  const restores = [...(log.restores ?? [])].sort((a, b) => a.stoppedAt - b.stoppedAt);
  restores.forEach((r, k) => {
    r.detectedAt.forEach((at, g) => {
      if (at === null)
        out.push({
          detail: `restore ${k + 1}: g${g} never showed the restored store (its revision stayed at ${r.head} or above)`,
          subject: `g${g}`,
        });
    });
  });
  for (const sub of log.subscribers) {
    let k = 0;
    let delivered = false;
    for (const conn of sub.connections) {
      for (const item of conn.items) {
        const r = restores[k];
        if (r && item.at >= r.restartedAt) {
          if (item.kind === 'snapshot') {
            if (delivered && !item.reset)
              out.push({
                detail: `${sub.name}: the snapshot at ${item.revision} that began restored store ${k + 1} is not flagged reset`,
                subject: sub.name,
              });
            k++;
          } else if (item.kind === 'change' && item.at > (r.detectedAt[conn.replica] ?? r.restartedAt)) {
            out.push({
              detail: `${sub.name}: g${conn.replica} delivered ${item.type} ${item.service}/${item.id}@${item.revision} after it showed restored store ${k + 1}, before any reset`,
              subject: sub.name,
            });
          }
        }
        delivered = true;
      }
    }
  }
  return out;
}
