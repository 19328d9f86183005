// The fault schedule (drawn from the seed before the run) and its injection.
// A full run has one fault every 1–5 minutes (every kind once before any
// repeats), and now and then a second one a few seconds after the first so
// that faults pile up; the smoke run packs one of each kind into its minute.
import { setTimeout as sleep } from 'node:timers/promises';
import type { EtcdCluster } from '../test/helpers/etcd.ts';
import type { Partitioner } from '../test/helpers/partition.ts';
import type { HistoryRecorder } from './history.ts';
import type { NetPipe } from './net-pipe.ts';
import { now } from './http.ts';
import { FAULT_KINDS, SMOKE_FAULT_KINDS, type Compaction, type FaultKind, type FaultRecord, type Restore } from './observations.ts';
import { Random } from './random.ts';
import type { Gateway } from './system.ts';
import { fillStore, freeStore, heldFull, restoreStore } from './store-faults.ts';
import type { Workload, WorkloadLog } from './workload.ts';

export interface PlannedFault {
  at: number;
  kind: FaultKind;
  /** Seed of the fault's own choices (target, durations). */
  seed: number;
}

/** Faults start between `startMs` and `endMs` (a compressed plan: one of each kind from `startMs`). */
export function planFaults(
  random: Random,
  startMs: number,
  endMs: number,
  compressed: boolean,
  kinds: readonly FaultKind[] = compressed ? SMOKE_FAULT_KINDS : FAULT_KINDS,
): PlannedFault[] {
  const plan: PlannedFault[] = [];
  const firsts = [...kinds];
  for (let i = firsts.length - 1; i > 0; i--) {
    const j = random.int(0, i);
    [firsts[i], firsts[j]] = [firsts[j]!, firsts[i]!];
  }
  if (compressed) firsts.sort((a, b) => Number(b === 'member-freeze') - Number(a === 'member-freeze'));
  if (compressed) {
    // One of each kind, the freeze (the longest) first and the rest after it has thawed.
    let at = startMs;
    for (const kind of firsts) {
      plan.push({ at, kind, seed: random.int(1, 2 ** 31) });
      at += kind === 'member-freeze' ? 11_000 : random.between(5, 6) * 1000;
    }
    return plan;
  }
  for (let at = startMs; at < endMs;) {
    const kind = firsts.shift() ?? random.pick(kinds);
    plan.push({ at, kind, seed: random.int(1, 2 ** 31) });
    at += random.chance(0.25) ? random.between(3, 20) * 1000 : random.between(60, 300) * 1000;
  }
  return plan;
}

export interface FaultTargets {
  cluster: EtcdCluster;
  /** The pipes each gateway reaches each member's client port through: [gateway][member]. */
  clientPipes: NetPipe[][];
  /** Cuts peer links (startCluster routes them through it). */
  peers: Partitioner;
  gateways: Gateway[];
  recorder: HistoryRecorder;
  workload: Workload;
  /** What the workload's clients got (the store-full fault reports the answers during its hold). */
  log: WorkloadLog;
  compactions: Compaction[];
  /** Revisions written outside the prefix (the store-full fault's filler). */
  foreignRevisions: number[];
  /** Where the history restarts (the store-restore fault). */
  restores: Restore[];
  compressed: boolean;
  burstTtl: number;
  /** The fleet's TTL: a long partition outlasts it. */
  instanceTtl: number;
  /** The longest freeze of a leader: below the kept instances' TTL minus their heartbeat interval, with a margin. */
  leaderFreezeMaxSeconds: number;
}

/** Runs planned faults at their times; `records` gets one entry per fault (skipped ones say why). */
export class FaultInjector {
  readonly records: FaultRecord[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly running = new Set<Promise<void>>();
  /** Members and gateways under a fault right now: no second fault picks them. */
  private readonly busyMembers = new Set<number>();
  private readonly busyGateways = new Set<number>();
  /** A member was replaced: its successor's peer links bypass the partitioner, and the gateways can reach one member fewer. */
  private replaced: string | undefined;

  constructor(private readonly t: FaultTargets) {}

  start(plan: PlannedFault[]): void {
    for (const f of plan) {
      this.timers.push(
        setTimeout(
          () => {
            const p = this.inject(f).catch((err: Error) => {
              this.records.push({ kind: f.kind, target: '-', start: now(), end: now(), detail: `failed: ${err.message}` });
            });
            this.running.add(p);
            void p.finally(() => this.running.delete(p));
          },
          Math.max(0, f.at - now()),
        ),
      );
    }
  }

  /** Cancels faults not yet started and waits for the running ones to end (every fault heals itself). */
  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    while (this.running.size) await Promise.allSettled([...this.running]);
  }

  private async inject(f: PlannedFault): Promise<void> {
    const r = new Random(f.seed);
    const start = now();
    const record = (target: string, detail?: string): void => {
      this.records.push({ kind: f.kind, target, start, end: now(), detail });
    };
    const { cluster, gateways } = this.t;
    switch (f.kind) {
      case 'leader-kill': {
        const i = await cluster.leaderIndex();
        if (this.busyMembers.size) return record(`m${i}`, 'skipped: another member is down or frozen');
        this.busyMembers.add(i);
        try {
          await cluster.kill(i, 'SIGKILL');
          await sleep(r.between(1, this.t.compressed ? 3 : 8) * 1000);
          await cluster.restart(i);
        } finally {
          this.busyMembers.delete(i);
        }
        return record(`m${i}`);
      }
      case 'member-freeze': {
        const free = [0, 1, 2].filter((i) => !this.busyMembers.has(i));
        if (free.length < 3) return record('-', 'skipped: another member is down or frozen');
        const i = r.pick(free);
        this.busyMembers.add(i);
        const role = await cluster
          .leaderIndex()
          .then((l) => (l === i ? 'leader' : 'follower'))
          .catch(() => 'role unknown');
        // See longestLeaderFreeze (run.ts): an etcd with etcd-io/etcd#15247 revokes live leases after a long leader freeze.
        const longest = role === 'follower' ? 30 : this.t.leaderFreezeMaxSeconds;
        const seconds = this.t.compressed ? 10 : r.between(10, longest);
        cluster.stop(i);
        try {
          await sleep(seconds * 1000);
        } finally {
          cluster.cont(i);
          this.busyMembers.delete(i);
        }
        return record(`m${i}`, `${role}, ${seconds.toFixed(0)} s`);
      }
      case 'gateway-kill':
      case 'gateway-term': {
        const free = gateways.filter((g) => !this.busyGateways.has(g.index) && g.running);
        if (free.length < 2) return record('-', 'skipped: keep one gateway up');
        const g = r.pick(free);
        this.busyGateways.add(g.index);
        try {
          const code = await g.stop(f.kind === 'gateway-kill' ? 'SIGKILL' : 'SIGTERM');
          if (f.kind === 'gateway-kill') await sleep(r.between(0.5, 3) * 1000);
          // Like a supervisor: a gateway that cannot start (the store unreadable in time) is started again.
          const failures = await startUntilReady(g);
          const notes = [
            f.kind === 'gateway-term' ? `exit code ${code}` : '',
            failures.length ? `${failures.length} failed starts: ${failures[0]}` : '',
          ];
          return record(`g${g.index}`, notes.filter(Boolean).join('; ') || undefined);
        } finally {
          this.busyGateways.delete(g.index);
        }
      }
      case 'compaction': {
        const revision = await this.t.recorder.currentRevision();
        // Our own watch must be past it, or the ground truth would lose events.
        if (!(await this.t.recorder.reach(revision, 15_000))) return record('etcd', `skipped: the recorder is behind ${revision}`);
        this.t.compactions.push({ revision, at: now() });
        await this.t.recorder.compact(revision);
        return record('etcd', `at revision ${revision}`);
      }
      case 'burst':
        return record('gateways', await this.t.workload.burst(1000, this.t.burstTtl));
      case 'client-partition':
      case 'link-delay':
      case 'packet-loss': {
        // The member stays healthy in its cluster; only the gateways' link to it goes bad.
        const free = [0, 1, 2].filter((i) => !this.busyMembers.has(i));
        if (free.length < 3) return record('-', 'skipped: another member is down or frozen');
        const i = r.pick(free);
        const pipes = this.t.clientPipes.map((toMembers) => toMembers[i]!);
        const seconds = this.t.compressed ? 5 : r.between(5, 60);
        const delayMs = Math.round(r.between(200, 2000));
        this.busyMembers.add(i);
        try {
          if (f.kind === 'client-partition') pipes.forEach((pipe) => pipe.set({ kind: 'blackhole' }));
          if (f.kind === 'link-delay') pipes.forEach((pipe) => pipe.set({ kind: 'latency', ms: delayMs }));
          for (const end = Date.now() + seconds * 1000; Date.now() < end;) {
            if (f.kind === 'packet-loss') pipes.forEach((pipe) => pipe.reset());
            await sleep(f.kind === 'packet-loss' ? r.between(1, 3) * 1000 : end - Date.now());
          }
        } finally {
          for (const pipe of pipes) {
            pipe.set({ kind: 'pass' });
            if (f.kind === 'client-partition') pipe.reset(); // a partition's stalled connections do not come back
          }
          this.busyMembers.delete(i);
        }
        const what = f.kind === 'link-delay' ? `${delayMs} ms each way, ` : '';
        return record(`gateways-m${i}`, `${what}${seconds.toFixed(0)} s`);
      }
      case 'minority-leader': {
        if (this.busyMembers.size) return record('-', 'skipped: another member is down or frozen');
        if (this.replaced) return record('-', `skipped: ${this.replaced} replaced a member, and its peer links bypass the partitioner`);
        const i = await cluster.leaderIndex();
        // Bounded like a leader freeze: an etcd with etcd-io/etcd#15247 may revoke live leases when a stale leader rejoins.
        const seconds = this.t.compressed ? 5 : r.between(5, this.t.leaderFreezeMaxSeconds);
        this.busyMembers.add(i);
        try {
          this.t.peers.isolate(i);
          await sleep(seconds * 1000);
        } finally {
          this.t.peers.heal();
          this.busyMembers.delete(i);
        }
        return record(`m${i}`, `leader cut from its followers, ${seconds.toFixed(0)} s`);
      }
      case 'asymmetric-cut': {
        // One direction of the gateways' link to a member goes silent: requests arrive and their answers are
        // lost (`down`: writes land unacknowledged), or requests are lost while the member's own frames still arrive (`up`).
        const free = [0, 1, 2].filter((i) => !this.busyMembers.has(i));
        if (free.length < 3) return record('-', 'skipped: another member is down or frozen');
        const i = r.pick(free);
        const direction = r.pick(['up', 'down'] as const);
        const seconds = this.t.compressed ? 5 : r.between(5, 60);
        const pipes = this.t.clientPipes.map((toMembers) => toMembers[i]!);
        this.busyMembers.add(i);
        try {
          pipes.forEach((pipe) => pipe.set({ kind: 'blackhole' }, direction));
          await sleep(seconds * 1000);
        } finally {
          for (const pipe of pipes) {
            pipe.set({ kind: 'pass' });
            pipe.reset();
          }
          this.busyMembers.delete(i);
        }
        const what = direction === 'up' ? 'gateways → member dropped' : 'member → gateways dropped';
        return record(`gateways-m${i}`, `${what}, ${seconds.toFixed(0)} s`);
      }
      case 'long-partition': {
        // One gateway cut from every member for longer than the fleet's TTL: leases expire in etcd meanwhile,
        // and once healed the gateway must catch up and its streams deliver each expiry once.
        const free = gateways.filter((g) => !this.busyGateways.has(g.index) && g.running);
        if (free.length < 2) return record('-', 'skipped: keep one gateway up');
        const g = r.pick(free);
        const seconds = this.t.instanceTtl + (this.t.compressed ? 5 : r.between(5, 15));
        const pipes = this.t.clientPipes[g.index]!;
        this.busyGateways.add(g.index);
        try {
          pipes.forEach((pipe) => pipe.set({ kind: 'blackhole' }));
          await sleep(seconds * 1000);
        } finally {
          for (const pipe of pipes) {
            pipe.set({ kind: 'pass' });
            pipe.reset();
          }
          this.busyGateways.delete(g.index);
        }
        const healedAt = now();
        const target = await this.t.recorder.currentRevision();
        const caughtUp = await caughtUpTo(g, target, 60_000);
        return record(
          `g${g.index}`,
          `cut from every member ${seconds.toFixed(0)} s (TTL ${this.t.instanceTtl} s); ${caughtUp ? `in sync past revision ${target} ${((now() - healedAt) / 1000).toFixed(1)} s after the heal` : `not in sync with revision ${target} 60 s after the heal`}`,
        );
      }
      case 'store-full': {
        if (this.busyMembers.size) return record('-', 'skipped: another member is down or frozen');
        [0, 1, 2].forEach((i) => this.busyMembers.add(i));
        try {
          const filled = await fillStore(cluster, this.t.foreignRevisions);
          const fullAt = now();
          const seconds = this.t.compressed ? 10 : 60;
          const seen = await heldFull(gateways, seconds * 1000);
          const held = describeHold(this.t.log, fullAt, now(), seen);
          const freed = await freeStore(cluster, this.t.recorder, this.t.compactions);
          return record('etcd', `${filled}; ${held}; ${freed}`);
        } finally {
          [0, 1, 2].forEach((i) => this.busyMembers.delete(i));
        }
      }
      case 'store-restore': {
        if (this.replaced) return record('-', `skipped: ${this.replaced} replaced a member (a restore recreates the first members)`);
        if (this.busyMembers.size) return record('-', 'skipped: another member is down or frozen');
        [0, 1, 2].forEach((i) => this.busyMembers.add(i));
        try {
          const changesMs = (this.t.compressed ? 5 : r.between(10, 30)) * 1000;
          const restore = await restoreStore(cluster, this.t.recorder, gateways, this.t.clientPipes.flat(), changesMs);
          this.t.restores.push(restore);
          this.t.workload.storeRestored();
          const noticed = restore.detectedAt.map(
            (at, g) => `g${g} ${at === null ? 'never' : `${((at - restore.restartedAt) / 1000).toFixed(1)} s`}`,
          );
          return record(
            'etcd',
            `snapshot at revision ${restore.revision}, restored from ${restore.head} (gateways cut off ${((restore.restartedAt - restore.stoppedAt) / 1000).toFixed(1)} s while the members were restored); gateways went back after: ${noticed.join(', ')}`,
          );
        } finally {
          [0, 1, 2].forEach((i) => this.busyMembers.delete(i));
        }
      }
      case 'member-replace': {
        if (this.replaced)
          return record('-', `skipped: ${this.replaced} replaced a member already (the gateways' endpoint lists would run out)`);
        if (this.busyMembers.size) return record('-', 'skipped: another member is down or frozen');
        const i = r.pick([0, 1, 2]);
        [0, 1, 2].forEach((j) => this.busyMembers.add(j));
        try {
          const old = cluster.members[i]!.name;
          const url = await cluster.replaceMember(i);
          this.replaced = `${old} → ${cluster.members[i]!.name}`;
          // Each gateway still lists the pipe to the removed member: its /health must name that endpoint.
          const named = await Promise.all(gateways.map((g) => namesGone(g, this.t.clientPipes[g.index]![i]!.url, 30_000)));
          return record(
            `m${i}`,
            `${this.replaced} at ${url}; /health names the gone endpoint on ${named.filter(Boolean).length}/${gateways.length} gateways`,
          );
        } finally {
          [0, 1, 2].forEach((j) => this.busyMembers.delete(j));
        }
      }
    }
  }
}

/** Starts `g` until it is ready (at most 5 tries); resolves the last log line of each failed start. */
async function startUntilReady(g: Gateway): Promise<string[]> {
  const failures: string[] = [];
  for (;;) {
    try {
      await g.start();
      return failures;
    } catch (err) {
      failures.push((err as Error).message.trim().split('\n').at(-1) ?? 'exited');
      if (failures.length >= 5) throw err;
      await sleep(2000);
    }
  }
}

/** Waits until `g` says it is in sync with the store at `revision` or later. */
async function caughtUpTo(g: Gateway, revision: number, timeoutMs: number): Promise<boolean> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(500)) {
    const store = (await g.health())?.store;
    if (store?.inSync && store.appliedRevision >= revision) return true;
  }
  return false;
}

/** Waits until `g`'s /health lists `endpoint` among the endpoints no member advertises any more. */
async function namesGone(g: Gateway, endpoint: string, timeoutMs: number): Promise<boolean> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(500)) {
    const gone = (await g.health())?.store.details?.goneEndpoints;
    if (Array.isArray(gone) && gone.includes(endpoint)) return true;
  }
  return false;
}

/** What the workload's clients got while the store was full: the 507s, heartbeats and deregistrations. */
function describeHold(log: WorkloadLog, from: number, to: number, alarmSeen: string): string {
  const during = (t: number) => t >= from && t <= to;
  const refused = (log.storeFull ?? []).filter((x) => during(x.sentAt)).length;
  const beats = log.heartbeats.filter((b) => during(b.at));
  const sum = (k: 'ok' | 'failed') => beats.reduce((n, b) => n + b[k], 0);
  const deregistered = log.writes.filter((w) => w.op === 'deregister' && during(w.sentAt)).length;
  const written = log.writes.filter((w) => w.op !== 'deregister' && during(w.sentAt)).length;
  return `held ${((to - from) / 1000).toFixed(0)} s: ${refused} writes answered 507, ${written} other writes acknowledged, heartbeats ${sum('ok')} ok / ${sum('failed')} failed, ${deregistered} deregistrations acknowledged; ${alarmSeen}`;
}
