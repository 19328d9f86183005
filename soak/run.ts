// npm run soak -- [--minutes N] [--seed S] [--replicas 3] [--out DIR] [--profile full|smoke] [--faults kind,kind]
// npm run soak -- --recheck DIR     (check a saved run log again, rewrite its report)
//
// Starts a 3-member etcd cluster and N gateway replicas, drives churn,
// heartbeats, subscribers and readers at them while injecting faults on a
// seeded schedule, records etcd's own history under the prefix, then checks
// every client observation against it and writes the report.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { check, type CheckResult } from './checker.ts';
import { FaultInjector, planFaults } from './faults.ts';
import { gatewayLagSampler } from './gateway-lag.ts';
import { HistoryRecorder } from './history.ts';
import { closeClients, now, restartClock } from './http.ts';
import {
  EVENT_RING,
  FAULT_KINDS,
  type Compaction,
  type FaultKind,
  type Restore,
  type RssSample,
  type RunLog,
  type Scope,
} from './observations.ts';
import { Random } from './random.ts';
import { writeReport, type Machine, type Summary } from './report.ts';
import { Subscriber } from './subscriber.ts';
import { Partitioner } from '../test/helpers/partition.ts';
import { NetPipe } from './net-pipe.ts';
import { compactionWatcher, Gateway, loopDelaySampler, memorySampler, startCluster } from './system.ts';
import { Workload, type WorkloadLog, type WorkloadOptions } from './workload.ts';

export interface SoakOptions {
  minutes: number;
  seed: number;
  replicas: number;
  out: string;
  profile: 'full' | 'smoke';
  /** Only these fault kinds (each once first, in a seeded order, then drawn among them); default: the profile's. */
  faultKinds?: readonly FaultKind[];
  /** Options for the gateways' node, space-separated (a heap limit, --trace-gc). */
  gatewayNodeOptions?: string;
  /** Progress lines go here (stderr for the CLI). */
  say?: (line: string) => void;
  /** Aborting it ends the run early: faults heal, the quiet phase and the checks run as usual. */
  stopEarly?: AbortSignal;
}

interface Profile {
  workload: Omit<WorkloadOptions, 'services'>;
  services: number;
  subscribers: { perService: number; narrowed: number; all: number };
  moveEverySeconds: number;
  agents: number;
  agentTtl: number;
  burstTtl: number;
  compactionRetention: string;
  /** etcd's space quota: room for the workload, small enough for the store-full fault to fill in seconds. */
  quotaBackendBytes: number;
  rssWarmupMs: number;
  faultsFromMs: number;
  /** No fault starts this close to the end, so the system has healed before the quiet phase. */
  faultsStopBeforeEndMs: number;
  settleTimeoutMs: number;
}

const QUOTA = 128 * 2 ** 20;

const PROFILES: Record<SoakOptions['profile'], Profile> = {
  full: {
    workload: { instances: 2000, ttl: 30, churnPerSecond: 8, abandonedTtl: 6, pairChance: 0.5, pollers: 20, pollWaitSeconds: 10 },
    services: 20,
    subscribers: { perService: 150, narrowed: 35, all: 15 },
    moveEverySeconds: 120,
    agents: 5,
    // Above the longest partition of one gateway (long-partition) plus a heartbeat interval: an agent talks to one gateway only.
    agentTtl: 90,
    burstTtl: 20,
    compactionRetention: '1m',
    quotaBackendBytes: QUOTA,
    rssWarmupMs: 180_000,
    faultsFromMs: 60_000,
    faultsStopBeforeEndMs: 60_000,
    settleTimeoutMs: 45_000,
  },
  smoke: {
    workload: { instances: 150, ttl: 20, churnPerSecond: 5, abandonedTtl: 3, pairChance: 0.5, pollers: 4, pollWaitSeconds: 3 },
    services: 6,
    subscribers: { perService: 18, narrowed: 8, all: 4 },
    moveEverySeconds: 15,
    agents: 2,
    agentTtl: 30,
    burstTtl: 6,
    compactionRetention: '1m',
    quotaBackendBytes: QUOTA,
    rssWarmupMs: 20_000,
    faultsFromMs: 4_000,
    faultsStopBeforeEndMs: 12_000,
    settleTimeoutMs: 20_000,
  },
};

export interface SoakOutcome {
  dir: string;
  log: RunLog;
  result: CheckResult;
  summary: Summary;
}

export async function runSoak(opts: SoakOptions): Promise<SoakOutcome> {
  const say = opts.say ?? (() => {});
  const p = PROFILES[opts.profile];
  const random = new Random(opts.seed);
  const planRandom = random.fork();
  const workRandom = random.fork();
  const subRandom = random.fork();
  mkdirSync(opts.out, { recursive: true });
  const logDir = mkdtempSync(join(os.tmpdir(), 'soak-logs-'));
  const machine = machineInfo();
  const startedAt = new Date().toISOString();
  const durationMs = opts.minutes * 60_000;
  const services = Array.from({ length: p.services }, (_, i) => `svc-${String(i).padStart(2, '0')}`);

  say(`starting etcd (3 members) and ${opts.replicas} gateways; logs in ${logDir}`);
  const peers = new Partitioner();
  const cluster = await startCluster(p.compactionRetention, p.quotaBackendBytes, peers);
  // Each gateway reaches each member through a pipe of its own, which the network faults control; the recorder (ground truth) does not.
  const clientPipes = await Promise.all(
    Array.from({ length: opts.replicas }, () => Promise.all(cluster.endpoints.map((e) => NetPipe.start(e)))),
  );
  const compactions: Compaction[] = [];
  const foreignRevisions: number[] = [];
  const restores: Restore[] = [];
  const rss: RssSample[] = [];
  const prefix = '/soak';
  const recorder = new HistoryRecorder(cluster.endpoints, prefix, now);
  const gateways: Gateway[] = [];
  const agents: ChildProcess[] = [];
  const subscribers: Subscriber[] = [];
  const loopDelay: RunLog['loopDelay'] = [];
  const gatewayLag: NonNullable<RunLog['gatewayLag']> = { bounds: [], samples: [] };
  const samplers = [
    compactionWatcher(cluster, now, compactions),
    memorySampler(gateways, now, rss),
    loopDelaySampler(now, loopDelay),
    gatewayLagSampler(gateways, now, gatewayLag),
  ];
  let injector: FaultInjector | undefined;
  try {
    await recorder.start();
    const env = (i: number) => ({
      ETCD_ENDPOINTS: clientPipes[i]!.map((pipe) => pipe.url).join(','),
      ETCD_PREFIX: prefix,
      LOG_LEVEL: 'warn',
      REQUEST_LOG: 'false',
      SSE_KEEPALIVE_SECONDS: '5',
      EVENT_HISTORY: String(EVENT_RING),
    });
    for (let i = 0; i < opts.replicas; i++)
      gateways.push(await Gateway.create(i, env(i), logDir, opts.gatewayNodeOptions?.split(/\s+/).filter(Boolean)));
    await Promise.all(gateways.map((g) => g.start()));
    const bases = () => gateways.map((g) => g.url);

    restartClock();
    samplers.forEach((s) => s.start());
    const log: WorkloadLog = {
      writes: [],
      renewals: [],
      notFound: [],
      failedHeartbeats: [],
      unansweredDeregistrations: [],
      storeFull: [],
      abandoned: [],
      reads: [],
      heartbeats: [],
    };
    const workload = new Workload({ ...p.workload, services }, bases, workRandom, log);

    // Subscribers first, so that they see the fleet arrive.
    const add = (name: string, path: string, scope: Scope) =>
      subscribers.push(new Subscriber(name, path, scope, bases, subRandom.fork(), p.moveEverySeconds));
    for (let i = 0; i < p.subscribers.perService; i++) {
      const s = services[i % services.length]!;
      add(`svc-${i}`, `/services/${s}/events`, { services: [s] });
    }
    for (let i = 0; i < p.subscribers.narrowed; i++) {
      const picked = [...new Set([subRandom.pick(services), subRandom.pick(services), subRandom.pick(services)])];
      add(`narrow-${i}`, `/events?${picked.map((s) => `service=${s}`).join('&')}`, { services: picked });
    }
    for (let i = 0; i < p.subscribers.all; i++) add(`all-${i}`, '/events', { all: true });
    subscribers.forEach((s) => s.start());

    const agentKeys: string[] = [];
    for (let i = 0; i < p.agents; i++) {
      const port = 9000 + i;
      const fd = openSync(join(logDir, `agent-${i}.log`), 'a');
      const proc = spawn(
        process.execPath,
        [
          'bin/discovery-agent',
          'run',
          '--gateway',
          gateways[i % gateways.length]!.url,
          '--service',
          'agents',
          '--address',
          '127.0.0.1',
          '--port',
          String(port),
          '--ttl',
          String(p.agentTtl),
        ],
        { stdio: ['ignore', fd, fd] },
      );
      closeSync(fd);
      proc.on('error', () => {});
      agents.push(proc);
      agentKeys.push(`agents/127.0.0.1:${port}`);
    }

    say(`workload: ${p.workload.instances} instances, ${subscribers.length} subscribers, ${p.agents} agents; ${opts.minutes} min`);
    await workload.start();
    const leaderFreezeMaxSeconds = longestLeaderFreeze(p, machine.etcd);
    const plan = planFaults(planRandom, p.faultsFromMs, durationMs - p.faultsStopBeforeEndMs, opts.profile === 'smoke', opts.faultKinds);
    injector = new FaultInjector({
      cluster,
      clientPipes,
      peers,
      gateways,
      recorder,
      workload,
      log,
      compactions,
      foreignRevisions,
      restores,
      compressed: opts.profile === 'smoke',
      burstTtl: p.burstTtl,
      instanceTtl: p.workload.ttl,
      leaderFreezeMaxSeconds,
    });
    injector.start(plan);
    say(`${plan.length} faults planned: ${plan.map((f) => `${(f.at / 1000).toFixed(0)}s ${f.kind}`).join(', ')}`);

    for (let lastSay = 0; now() < durationMs && !opts.stopEarly?.aborted;) {
      await sleep(Math.min(1000, Math.max(10, durationMs - now())));
      if (now() - lastSay > 60_000) {
        lastSay = now();
        say(
          `t=${(now() / 60_000).toFixed(1)} min: revision ${recorder.revision}, ${log.writes.length} writes, ${injector.records.length} faults done`,
        );
      }
    }

    // The quiet phase: faults heal, writes stop, and every subscriber must catch up.
    await injector.stop();
    await workload.quiesce();
    const settleRevision = await recorder.fence();
    const caughtUp = await settle(subscribers, recorder, restores.at(-1)?.restartedAt ?? 0, settleRevision, p.settleTimeoutMs);
    // Where each replica stood when the wait ended: one whose store watch had not come back could not deliver the rest.
    const settledApplied = await Promise.all(gateways.map(async (g) => (await g.health())?.store.appliedRevision ?? null));
    say(
      `quiet at revision ${settleRevision}: ${caughtUp}/${subscribers.length} subscribers caught up; replicas applied ${settledApplied.join(', ')}`,
    );
    const ranMs = now();
    subscribers.forEach((s) => s.stop());
    workload.stopHeartbeats();
    await Promise.all(agents.map(stopAgent));
    samplers.forEach((s) => s.stop());
    await Promise.all(gateways.map((g) => g.stop('SIGTERM')));
    await recorder.fence();

    const runLog: RunLog = {
      seed: opts.seed,
      minutes: opts.minutes,
      replicas: opts.replicas,
      startedAt,
      durationMs: ranMs,
      history: recorder.snapshot(),
      settleRevision,
      settledApplied,
      compactions,
      foreignRevisions,
      restores,
      subscribers: subscribers.map((s) => s.log),
      ...log,
      agentKeys,
      faults: injector.records.sort((a, b) => a.start - b.start),
      rss,
      majorGcs: gateways.flatMap((g) => g.majorGcs()),
      gatewayNodeOptions: opts.gatewayNodeOptions,
      loopDelay,
      gatewayLag,
    };
    // The raw log (kept out of git: large) lets the checker be run again: npm run soak -- --recheck DIR.
    const workloadSummary = {
      ...workloadSummaryOf(p, services, subscribers.length, runLog, compactions.length),
      'longest leader freeze (s)': leaderFreezeMaxSeconds,
    };
    saveRunLog(opts.out, runLog, machine, workloadSummary, p.rssWarmupMs);
    const result = check(runLog);
    const summary = writeReport(opts.out, runLog, result, machine, workloadSummary, p.rssWarmupMs);
    say(
      `report in ${opts.out}: ${result.violations.length ? `${Object.values(result.counts).reduce((a, b) => a + b, 0)} violations` : 'no violations'}`,
    );
    return { dir: opts.out, log: runLog, result, summary };
  } finally {
    await injector?.stop().catch(() => {});
    subscribers.forEach((s) => s.stop());
    samplers.forEach((s) => s.stop());
    for (const a of agents) a.kill('SIGKILL');
    await Promise.all(gateways.map((g) => g.stop('SIGKILL', 1000)));
    closeClients();
    await recorder.stop().catch(() => {});
    await Promise.all(clientPipes.flat().map((pipe) => pipe.close()));
    await cluster.close();
    await peers.close();
  }
}

/** Waits until every subscriber holds every change of its scope up to `revision` (of the store restored last, recorded from `since`); resolves how many did. */
async function settle(
  subscribers: Subscriber[],
  recorder: HistoryRecorder,
  since: number,
  revision: number,
  timeoutMs: number,
): Promise<number> {
  const lastOf = new Map<string, number>();
  let last = 0;
  for (const e of recorder.events) {
    if (e.revision > revision || e.key.startsWith('_/') || e.at < since) continue;
    const service = e.key.slice(0, e.key.indexOf('/'));
    lastOf.set(service, Math.max(lastOf.get(service) ?? 0, e.revision));
    last = Math.max(last, e.revision);
  }
  const target = (s: Subscriber) => ('all' in s.log.scope ? last : Math.max(0, ...s.log.scope.services.map((x) => lastOf.get(x) ?? 0)));
  subscribers.forEach((s) => s.stay());
  const done = () => subscribers.filter((s) => s.position >= target(s)).length;
  const deadline = Date.now() + timeoutMs;
  while (done() < subscribers.length && Date.now() < deadline) await sleep(200);
  return done();
}

async function stopAgent(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const killer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(killer);
}

/**
 * etcd before 3.4.31 and 3.5.13 (etcd-io/etcd#15247): a leader frozen longer than a lease's TTL minus its
 * renewal interval revokes that lease when it thaws, although the new leader renewed it
 * (soak/stale-leader.ts shows it without the gateway). On such an etcd, leaders freeze shorter than that
 * window for the kept instances (TTL 30 s, heartbeats about every 10 s: 15 s); followers always 10–30 s.
 * The version rule repeats src/registry/store/etcd-versions.ts on purpose: the soak imports no gateway code.
 */
function longestLeaderFreeze(p: Pick<Profile, 'workload'>, etcdVersion: string): number {
  const m = /^3\.(\d+)\.(\d+)/.exec(etcdVersion);
  const fixed = m !== null && (Number(m[1]) > 5 || (m[1] === '5' && Number(m[2]) >= 13) || (m[1] === '4' && Number(m[2]) >= 31));
  return fixed ? 30 : Math.max(10, p.workload.ttl - p.workload.ttl / 3 - 5);
}

function machineInfo() {
  let etcd = 'unknown';
  try {
    etcd = /etcd Version: (\S+)/.exec(execFileSync(process.env.ETCD_BIN ?? 'etcd', ['--version'], { encoding: 'utf8' }))?.[1] ?? etcd;
  } catch {}
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    etcd,
    load: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
  };
}

function workloadSummaryOf(
  p: Profile,
  services: string[],
  subscribers: number,
  runLog: RunLog,
  compactions: number,
): Record<string, number> {
  return {
    'fleet instances (heartbeating)': p.workload.instances,
    services: services.length,
    subscribers,
    'discovery-agent processes': p.agents,
    'blocking-query pollers': p.workload.pollers,
    'churn operations per second': p.workload.churnPerSecond,
    'instances left to expire': runLog.abandoned.length,
    'minRevision reads': runLog.reads.filter((r) => r.kind === 'minRevision').length,
    'blocking queries answered': runLog.reads.filter((r) => r.kind === 'blocking').length,
    'compactions seen': compactions,
    'writes answered 507 store-full': runLog.storeFull?.length ?? 0,
  };
}

function saveRunLog(dir: string, log: RunLog, machine: Machine, workload: Record<string, number>, rssWarmupMs: number): void {
  writeFileSync(join(dir, 'run-log.json.gz'), gzipSync(JSON.stringify({ log, machine, workload, rssWarmupMs })));
}

/** Checks a saved run log again and rewrites its report (after a checker fix, say). */
function recheck(dir: string): number {
  const saved = JSON.parse(gunzipSync(readFileSync(join(dir, 'run-log.json.gz'))).toString()) as {
    log: RunLog;
    machine: Machine;
    workload: Record<string, number>;
    rssWarmupMs: number;
  };
  const result = check(saved.log);
  writeReport(dir, saved.log, result, saved.machine, saved.workload, saved.rssWarmupMs);
  return Object.values(result.counts).reduce((a, b) => a + b, 0);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      seed: { type: 'string', default: String(Date.now() % 100_000) },
      replicas: { type: 'string', default: '3' },
      out: { type: 'string' },
      profile: { type: 'string', default: 'full' },
      recheck: { type: 'string' },
      'gateway-node-options': { type: 'string' },
      faults: { type: 'string' },
    },
  });
  if (values.recheck) {
    const violations = recheck(resolve(values.recheck));
    process.stderr.write(`${violations} violations; report rewritten in ${values.recheck}\n`);
    process.exitCode = violations ? 1 : 0;
    return;
  }
  const minutes = Number(values.minutes);
  const seed = Number(values.seed);
  const replicas = Number(values.replicas);
  const faultKinds = values.faults?.split(',') as FaultKind[] | undefined;
  if (
    !(minutes > 0) ||
    !Number.isInteger(seed) ||
    !(replicas >= 2) ||
    !['full', 'smoke'].includes(values.profile!) ||
    faultKinds?.some((k) => !FAULT_KINDS.includes(k))
  ) {
    process.stderr.write(
      'usage: npm run soak -- [--minutes N] [--seed S] [--replicas N>=2] [--out DIR] [--profile full|smoke] [--faults kind,kind] [--gateway-node-options OPTIONS]\n' +
        `fault kinds: ${FAULT_KINDS.join(', ')}\n`,
    );
    process.exit(2);
  }
  const out = resolve(values.out ?? join('soak', 'results', new Date().toISOString().replace(/[:.]/g, '-')));
  // The first SIGINT/SIGTERM ends the run early but still checks and reports; a second one exits at once.
  const stop = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (stop.signal.aborted) process.exit(130);
      process.stderr.write(`[soak] ${signal}: ending the run early; checking and reporting what ran\n`);
      stop.abort();
    });
  }
  const outcome = await runSoak({
    stopEarly: stop.signal,
    minutes,
    seed,
    replicas,
    out,
    profile: values.profile as SoakOptions['profile'],
    faultKinds,
    gatewayNodeOptions: values['gateway-node-options'],
    say: (l) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${l}\n`),
  });
  const total = Object.values(outcome.result.counts).reduce((a, b) => a + b, 0);
  process.exitCode = total ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
