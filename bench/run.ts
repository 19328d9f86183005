// npm run bench [-- --only discovery,writes] [--quick] [--rounds N] [--duration S] [--wrk-threads N] [--profile|--cpu-prof] [--md] [--disk]
//
// Runs each scenario against a fresh etcd (one member, or three for the
// cluster scenarios) and gateway child processes on loopback, side by side
// with its baselines, then prints one table per scenario and writes them to
// bench/results/*.json. HTTP load comes from wrk (installed when missing).
// A full (not --quick, all scenarios) run also rewrites the results section
// of BENCHMARKS.md; --md forces that. Every child process is stopped on the
// way out, failures and signals included. etcd keeps its data in /dev/shm
// unless --disk: fsync latency of a shared VM disk would otherwise decide
// every write number (both sides use the same etcd).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import * as prettier from 'prettier';
import { startBenchEtcd, type BenchEtcd } from './lib/etcd.ts';
import { ensureBuilt, logsDir } from './lib/procs.ts';
import { summarizeProfiles } from './lib/profile.ts';
import { markdownTable, targetsSummary, textTable, type Scenario, type ScenarioResult } from './lib/table.ts';
import { ensureHaproxy } from './lib/ceiling.ts';
import { ensureWrk, WRK } from './lib/wrk.ts';
import { apiProperties } from './scenarios/api-properties.ts';
import { discovery } from './scenarios/discovery.ts';
import { dns } from './scenarios/dns.ts';
import { failover } from './scenarios/failover.ts';
import { fanout } from './scenarios/fanout.ts';
import { fleetRestartHerd } from './scenarios/fleet-restart-herd.ts';
import { fleetSnapshots } from './scenarios/fleet-snapshots.ts';
import { fleetSubscribers } from './scenarios/fleet-subscribers.ts';
import { follower } from './scenarios/follower.ts';
import { heartbeats } from './scenarios/heartbeats.ts';
import { hostile } from './scenarios/hostile.ts';
import { sizes } from './scenarios/sizes.ts';
import { writes } from './scenarios/writes.ts';

const SCENARIOS: Scenario[] = [
  discovery,
  sizes,
  writes,
  fanout,
  heartbeats,
  follower,
  failover,
  fleetSubscribers,
  fleetRestartHerd,
  fleetSnapshots,
  dns,
  apiProperties,
  hostile,
];
const RESULTS_DIR = 'bench/results';
const MD_FILE = 'BENCHMARKS.md';
const MD_START = '<!-- results:start -->';
const MD_END = '<!-- results:end -->';

interface Args {
  only: string[];
  quick: boolean;
  rounds: number;
  durationS: number | undefined;
  wrkThreads: number;
  profile: boolean;
  md: boolean;
  disk: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { only: [], quick: false, rounds: 0, durationS: undefined, wrkThreads: 1, profile: false, md: false, disk: false };
  const count = (a: string, v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${a} needs a whole number ≥ 1`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') args.quick = true;
    else if (a === '--rounds') args.rounds = count(a, argv[++i]);
    else if (a === '--wrk-threads') args.wrkThreads = count(a, argv[++i]);
    else if (a === '--profile' || a === '--cpu-prof') args.profile = true;
    else if (a === '--duration') args.durationS = count(a, argv[++i]);
    else if (a === '--md') args.md = true;
    else if (a === '--disk') args.disk = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const list = a === '--only' ? argv[++i] : a.slice('--only='.length);
      args.only.push(
        ...(list ?? '')
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      );
    } else if (a === '--help' || a === '-h') {
      console.log(
        `usage: npm run bench -- [--only ${SCENARIOS.map((s) => s.name).join(',')}] [--quick] [--rounds N] [--duration S] [--wrk-threads N] [--profile|--cpu-prof] [--md] [--disk]`,
      );
      process.exit(0);
    } else {
      throw new Error(`unknown argument ${a} (try --help)`);
    }
  }
  // Three rounds (median) for a full run; one for --quick.
  args.rounds ||= args.quick ? 1 : 3;
  const unknown = args.only.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  return args;
}

function machine() {
  // Read stdout and stderr whatever the exit status: `wrk --version` exits 1.
  const version = (cmd: string, args: string[], re: RegExp) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return re.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1] ?? 'unknown';
  };
  const model = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  const pkg = (name: string) => (JSON.parse(readFileSync(`node_modules/${name}/package.json`, 'utf8')) as { version: string }).version;
  return {
    nproc: cpus().length,
    cpu: model,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    etcd: version(process.env.ETCD_BIN ?? 'etcd', ['--version'], /etcd Version:\s*(\S+)/),
    fastify: pkg('fastify'),
    wrk: version(WRK, ['--version'], /wrk (\S+)/),
    loadAvgAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

async function runScenario(s: Scenario, args: Args, profDir: string | undefined): Promise<ScenarioResult> {
  const t0 = performance.now();
  const result: ScenarioResult = { name: s.name, title: s.title, rows: [], seconds: 0, notes: [] };
  const log = (m: string) => console.log(`[${s.name} ${((performance.now() - t0) / 1000).toFixed(1)}s] ${m}`);
  const etcd = await startBenchEtcd(s.members ?? 1, args.disk ? tmpdir() : undefined);
  currentEtcd = etcd;
  try {
    log(`etcd at ${etcd.endpoints.join(', ')}`);
    const ctx = {
      quick: args.quick,
      durationS: args.durationS,
      rounds: args.rounds,
      wrkThreads: args.wrkThreads,
      etcd: etcd.endpoints[0]!,
      cluster: etcd,
      cpuProfDir: profDir,
    };
    result.rows = await s.run({ ...ctx, log, note: (m) => result.notes.push(m) });
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
    log(`failed: ${result.error}`);
  } finally {
    currentEtcd = undefined;
    await etcd.close();
  }
  result.seconds = (performance.now() - t0) / 1000;
  return result;
}

async function writeMarkdown(results: ScenarioResult[], info: ReturnType<typeof machine>, args: Args, busy: boolean): Promise<void> {
  const md = readFileSync(MD_FILE, 'utf8');
  const from = md.indexOf(MD_START);
  const to = md.indexOf(MD_END);
  if (from < 0 || to < from) throw new Error(`${MD_FILE} has no ${MD_START} … ${MD_END} section`);
  const block = [
    MD_START,
    '',
    `Run of ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC${args.quick ? ' (--quick: short durations)' : ''}: ` +
      `${info.nproc} × ${info.cpu}, ${info.memoryGb} GB, Node ${info.node}, etcd ${info.etcd} (data ${args.disk ? 'on disk' : 'in /dev/shm'}), fastify ${info.fastify}, wrk ${info.wrk} (${args.wrkThreads} thread(s)), ${args.rounds} round(s); ` +
      `load average at start ${info.loadAvgAtStart.join(' / ')}.`,
    ...(busy
      ? ['', '**Measured under load**: the machine was busy with other work during this run; absolute numbers are noisy, ratios less so.']
      : []),
    '',
    [targetsSummary(results), ...results].map(markdownTable).join('\n\n'),
    '',
    MD_END,
  ].join('\n');
  // Formatted as CI's prettier check wants it (tables aligned).
  const text = md.slice(0, from) + block + md.slice(to + MD_END.length);
  writeFileSync(MD_FILE, await prettier.format(text, { ...(await prettier.resolveConfig(MD_FILE)), filepath: MD_FILE }));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const chosen = args.only.length ? SCENARIOS.filter((s) => args.only.includes(s.name)) : SCENARIOS;
  ensureBuilt();
  ensureWrk();
  ensureHaproxy();
  mkdirSync(RESULTS_DIR, { recursive: true });
  const profDir = args.profile ? join(await logsDir(), 'profiles') : undefined;
  const info = machine();
  const busy = info.loadAvgAtStart[0]! > info.nproc * 0.25;
  console.log(
    `bench: ${chosen.map((s) => s.name).join(', ')}${args.quick ? ' (quick)' : ''}, ${args.rounds} round(s), wrk ${args.wrkThreads} thread(s), on ${info.nproc} × ${info.cpu}, Node ${info.node}, etcd ${info.etcd}`,
  );
  if (busy) console.log(`bench: load average ${info.loadAvgAtStart[0]} at start: the machine is busy, numbers will be noisy`);
  console.log(`bench: child logs in ${await logsDir()}`);

  const results: ScenarioResult[] = [];
  for (const s of chosen) results.push(await runScenario(s, args, profDir));

  console.log(`\n${[...results, targetsSummary(results)].map(textTable).join('\n\n')}\n`);
  const failed = results.flatMap((r) => r.rows.filter((row) => row.pass === false).map((row) => `${r.name}: ${row.metric.trim()}`));
  const errors = results.filter((r) => r.error).map((r) => r.name);
  console.log(
    `targets: ${results.flatMap((r) => r.rows).filter((r) => r.pass).length} met, ${failed.length} missed${errors.length ? `; scenarios failed: ${errors.join(', ')}` : ''}`,
  );

  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const json = JSON.stringify(
    { at: new Date().toISOString(), args, machine: { ...info, loadAvgAtEnd: loadavg() }, busy, results },
    null,
    2,
  );
  writeFileSync(join(RESULTS_DIR, `bench-${stamp}.json`), json);
  writeFileSync(join(RESULTS_DIR, 'latest.json'), json);
  console.log(`results: ${RESULTS_DIR}/bench-${stamp}.json${profDir ? `; CPU profiles of the gateway: ${profDir}` : ''}`);
  if (profDir) console.log(`\n${summarizeProfiles(profDir)}`);
  if (args.md || (!args.quick && !args.only.length)) {
    await writeMarkdown(results, info, args, busy);
    console.log(`results section of ${MD_FILE} updated`);
  }
  process.exitCode = errors.length ? 1 : 0;
}

/** The running scenario's etcd: on a signal its data dir (in /dev/shm: memory) must be removed too. */
let currentEtcd: BenchEtcd | undefined;

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`bench: ${signal}, stopping child processes`);
    // The 'exit' handlers of procs.ts, wrk.ts and etcd.ts kill every child that is left.
    const exit = () => process.exit(130);
    setTimeout(exit, 5000).unref();
    void (currentEtcd?.close() ?? Promise.resolve()).catch(() => {}).finally(exit);
  });
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
