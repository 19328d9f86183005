// Faults of the store itself. A full store: history written into etcd until its
// space quota is exhausted (etcd raises NOSPACE), held full, then freed with
// exactly the operator's commands of docs/operations.md ("A full store"):
// compact at the current revision, defragment, disarm. A restored store: the
// cluster restored from a snapshot, so revisions go back.
import { Etcd3 } from 'etcd3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EtcdCluster } from '../test/helpers/etcd.ts';
import type { HistoryRecorder } from './history.ts';
import { now } from './http.ts';
import type { NetPipe } from './net-pipe.ts';
import type { Compaction, Restore } from './observations.ts';
import type { Gateway } from './system.ts';

/** Outside the soak's prefix: no gateway and no recorder sees it. */
const FILL_KEY = '/soak-fill';
const FILL_VALUE = Buffer.alloc(512 * 1024, 'x');

/**
 * Overwrites one key with large values until etcd refuses (`database space exceeded`):
 * the quota fills with history, which compaction frees (live data would not be).
 */
export async function fillStore(cluster: EtcdCluster, revisions: number[], timeoutMs = 300_000): Promise<string> {
  const endpoints = cluster.members.map((m) => m.clientUrl);
  const before = await dbSizeMb(cluster);
  const client = new Etcd3({ hosts: endpoints, defaultCallOptions: () => ({ deadline: Date.now() + 10_000 }) });
  const started = Date.now();
  let puts = 0;
  try {
    for (;;) {
      if (Date.now() - started > timeoutMs) throw new Error(`the store was not full after ${puts} writes of 512 KiB`);
      try {
        // Outside the prefix: the checker learns these revisions from here, not from the recorder.
        revisions.push(Number((await client.put(FILL_KEY).value(FILL_VALUE).exec()).header.revision));
        puts++;
      } catch (err) {
        // A timeout may hide a write that landed, and etcd applies the write that crosses the quota
        // before it answers NOSPACE (quotaApplierV3): its revision is the key's latest.
        const landed = await client
          .get(FILL_KEY)
          .exec()
          .then((r) => Number(r.kvs[0]?.mod_revision ?? 0))
          .catch(() => 0);
        if (landed && !revisions.includes(landed)) revisions.push(landed);
        if (/database space exceeded/.test(String(err))) break;
        await sleep(200); // an election, a member restarting: try again
      }
    }
  } finally {
    client.close();
  }
  return `database ${before.toFixed(1)} MiB, full after ${puts} writes of 512 KiB in ${((Date.now() - started) / 1000).toFixed(1)} s`;
}

/** The largest database of the members (etcdctl endpoint status). */
async function dbSizeMb(cluster: EtcdCluster): Promise<number> {
  const status = JSON.parse(
    await cluster.ctlAt(
      cluster.members.map((m) => m.clientUrl),
      ['endpoint', 'status', '-w', 'json'],
    ),
  ) as {
    Status: { dbSize: number };
  }[];
  return Math.max(...status.map((s) => s.Status.dbSize)) / 2 ** 20;
}

/** Holds the store full for `ms`; resolves how many gateways showed the alarm on /health meanwhile. */
export async function heldFull(gateways: Gateway[], ms: number): Promise<string> {
  const seen = new Set<number>();
  for (const end = Date.now() + ms; Date.now() < end; await sleep(Math.min(2000, Math.max(0, end - Date.now())))) {
    for (const g of gateways) if ((await g.health())?.store.alarms?.includes('nospace')) seen.add(g.index);
  }
  return `/health named the nospace alarm on ${seen.size}/${gateways.length} gateways`;
}

/** The operator's recovery: compact at the current revision, defragment every member, disarm. */
export async function freeStore(cluster: EtcdCluster, recorder: HistoryRecorder, compactions: Compaction[]): Promise<string> {
  const urls = cluster.members.map((m) => m.clientUrl);
  const started = Date.now();
  const status = JSON.parse(await cluster.ctlAt(urls, ['endpoint', 'status', '-w', 'json'])) as {
    Status: { header: { revision: number } };
  }[];
  const revision = Math.max(...status.map((s) => s.Status.header.revision));
  // The recorder's watch must be past the compaction, or the ground truth would lose events.
  if (!(await recorder.reach(revision, 30_000))) throw new Error(`the recorder is behind revision ${revision}`);
  compactions.push({ revision, at: now() });
  await cluster.ctlAt(urls, ['compact', String(revision)]);
  await cluster.ctlAt(urls, ['defrag', '--command-timeout=60s']);
  await cluster.ctlAt(urls, ['alarm', 'disarm']);
  const left = (await cluster.ctlAt(urls, ['alarm', 'list'])).trim();
  if (left) throw new Error(`alarms still raised after disarming: ${left}`);
  const after = await dbSizeMb(cluster);
  return `freed (compact ${revision}, defrag, disarm) in ${((Date.now() - started) / 1000).toFixed(1)} s: database ${after.toFixed(1)} MiB`;
}

/**
 * The restored-store fault: a snapshot (etcdctl snapshot save), changes after it, then every
 * member restored from it into new data dirs (same names and URLs), so revisions go back.
 * The gateways' links are cut first, so that the recorder holds the old store's last revision
 * (no write lands after its fence), and healed once the recorder watches the restored store.
 */
export async function restoreStore(
  cluster: EtcdCluster,
  recorder: HistoryRecorder,
  gateways: Gateway[],
  clientPipes: NetPipe[],
  changesMs: number,
): Promise<Restore> {
  const dir = mkdtempSync(join(tmpdir(), 'soak-snapshot-'));
  const file = join(dir, 'snapshot.db');
  try {
    await cluster.snapshot(file);
    const { revision } = JSON.parse(await cluster.ctl(['snapshot', 'status', file, '-w', 'json'])) as { revision: number };
    await sleep(changesMs);
    const applied = await Promise.all(gateways.map(async (g) => (await g.health())?.store.appliedRevision ?? 0));
    let stoppedAt: number;
    let head: number;
    try {
      clientPipes.forEach((pipe) => pipe.set({ kind: 'blackhole' }));
      head = await recorder.fence();
      await recorder.pause();
      stoppedAt = now(); // the old store's history ends here: the fence is in it
      await cluster.restoreSnapshot(file);
      await recorder.resume(revision);
    } finally {
      for (const pipe of clientPipes) {
        pipe.set({ kind: 'pass' });
        pipe.reset();
      }
    }
    const restartedAt = now();
    // A gateway has noticed once what it applied went back (only a reload takes it back).
    const detectedAt = await Promise.all(
      gateways.map(async (g, i) => {
        let high = applied[i]!;
        for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(100)) {
          const seen = (await g.health())?.store.appliedRevision;
          if (seen !== undefined && seen < high) return now();
          high = Math.max(high, seen ?? 0);
        }
        return null;
      }),
    );
    return { revision, head, stoppedAt, restartedAt, detectedAt };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
