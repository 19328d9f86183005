// DNS: dnsperf against the gateway's DNS interface and, in the same run, against
// dnsmasq serving the same records from a static file (the floor for answering
// from memory). Each server is pinned to one core (taskset), dnsperf to the
// other. Reports answers per second at full load and the ratio (rounds
// alternating between the two servers, medians), p99 latency at half the
// gateway's rate (both servers at that rate in alternating rounds, dnsperf -v
// timing each query, the median round's p99), the
// CPU time each server spent per answer at full load (from /proc: steadier than
// answers per second on a shared machine, where a pinned server still shares its
// core), and the gateway's answers per second while 1,000 instances churn (status
// flips up/draining through the HTTP API as fast as four writers go).
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, spawnCommand, startGateway, type Child } from '../lib/procs.ts';
import { CLIENT_CORE, pinTo, SERVER_CORE } from '../lib/shared-core.ts';
import { ratioRow, underRow, type Row, type Scenario } from '../lib/table.ts';

const SERVICES = 200;
const PER_SERVICE = 5;
const CHURN_WRITERS = 4;
const DOMAIN = 'discovery';

const address = (s: number, i: number) => `10.${Math.floor(s / 250)}.${s % 250}.${i + 1}`;
const hex = (ip: string) => Buffer.from(ip.split('.').map(Number)).toString('hex');

interface PerfResult {
  qps: number;
  /** CPU time (user and system) the server spent per answer, in µs, when measured. */
  cpuPerAnswer?: number;
  lost: number;
  completed: number;
  /** From -v output (per-query latency), when asked. */
  p99?: number;
  p50?: number;
}

/** One dnsperf run pinned to the client core; `rate` caps queries per second (and turns on per-query timing). */
async function dnsperf(port: number, queries: string, seconds: number, rate?: number): Promise<PerfResult> {
  const args = [
    '-c',
    String(CLIENT_CORE),
    'dnsperf',
    '-s',
    '127.0.0.1',
    '-p',
    String(port),
    '-d',
    queries,
    '-l',
    String(seconds),
    '-c',
    '8',
    '-q',
    '200',
    '-t',
    '2',
  ];
  if (rate) args.push('-Q', String(Math.round(rate)), '-v');
  // Into a file, not a pipe: with -v, reading a line per query would put this process on the cores being measured.
  const outFile = join(await mkdtemp(join(tmpdir(), 'dnsperf-')), 'out');
  const fd = openSync(outFile, 'w');
  const proc = spawn('taskset', args, { stdio: ['ignore', fd, 'ignore'] });
  closeSync(fd);
  const [code] = await once(proc, 'exit');
  const out = readFileSync(outFile, 'utf8');
  if (code !== 0) throw new Error(`dnsperf exited with ${code}: ${out.slice(-500)}`);
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const result: PerfResult = {
    qps: num(/Queries per second:\s+([\d.]+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
  };
  if (rate) {
    // -v: "> NOERROR name type 0.000123" per answered query.
    const latencies = [...out.matchAll(/^> \w+ \S+ \S+ ([\d.]+)$/gm)].map((m) => Number(m[1]) * 1000).sort((a, b) => a - b);
    if (latencies.length === 0) throw new Error(`dnsperf -v timed no query: ${out.slice(-500)}`);
    result.p50 = latencies[Math.floor(latencies.length * 0.5)];
    result.p99 = latencies[Math.floor(latencies.length * 0.99)];
  }
  return result;
}

/** Clock ticks per second of /proc/{pid}/stat times. */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** CPU time (user and system) a process has used so far, in µs. */
function cpuMicros(pid: number): number {
  // Fields after the command name: utime and stime are the 12th and 13th.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS;
}

/** A full-load dnsperf run, with the CPU time the server (process `pid`) spent per answer. */
async function measuredRun(pid: number, port: number, queries: string, seconds: number): Promise<PerfResult> {
  const before = cpuMicros(pid);
  const result = await dnsperf(port, queries, seconds);
  return { ...result, cpuPerAnswer: (cpuMicros(pid) - before) / result.completed };
}

const medianOf = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** The run with the median value of `key`. */
function medianBy(runs: PerfResult[], key: (r: PerfResult) => number): PerfResult {
  return [...runs].sort((a, b) => key(a) - key(b))[Math.floor(runs.length / 2)]!;
}

const pin = (pid: number) => pinTo(pid, SERVER_CORE);

/** dnsmasq with the same names, records and TTL, from a static configuration. */
async function startDnsmasq(dir: string): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  const lines = [
    `port=${port}`,
    'listen-address=127.0.0.1',
    'bind-interfaces',
    'no-resolv',
    'no-hosts',
    `local=/${DOMAIN}/`,
    'local-ttl=5',
    'cache-size=10000',
  ];
  for (let s = 0; s < SERVICES; s++) {
    for (let i = 0; i < PER_SERVICE; i++) {
      const ip = address(s, i);
      lines.push(`host-record=svc${s}.service.${DOMAIN},${ip}`, `host-record=${hex(ip)}.addr.${DOMAIN},${ip}`);
      lines.push(`srv-host=_svc${s}._tcp.service.${DOMAIN},${hex(ip)}.addr.${DOMAIN},${8000 + i},1,100`);
    }
  }
  const conf = join(dir, 'dnsmasq.conf');
  await writeFile(conf, lines.join('\n') + '\n');
  const child = await spawnCommand('dnsmasq', 'dnsmasq', ['-k', `--conf-file=${conf}`, '--user=root', '--pid-file='], {}, port);
  await sleep(500);
  pin(child.pid);
  return { child, port };
}

async function registerAll(gateway: string): Promise<void> {
  for (let s = 0; s < SERVICES; s++) {
    const register = Array.from({ length: PER_SERVICE }, (_, i) => ({
      service: `svc${s}`,
      id: `i${i}`,
      address: address(s, i),
      port: 8000 + i,
      ttl: 0,
    }));
    const res = await fetch(`${gateway}/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ register }),
    });
    if (res.status !== 200) throw new Error(`batch: ${res.status} ${await res.text()}`);
  }
}

/** Flip instances between up and draining until `stop` resolves; resolves the changes made. */
async function churn(gateway: string, stop: Promise<unknown>): Promise<number> {
  let running = true;
  void stop.then(() => (running = false));
  let changes = 0;
  const ids = Array.from({ length: SERVICES * PER_SERVICE }, (_, n) => [Math.floor(n / PER_SERVICE), n % PER_SERVICE] as const);
  await Promise.all(
    Array.from({ length: CHURN_WRITERS }, async (_, w) => {
      for (let round = 0; running; round++) {
        for (let n = w; n < ids.length && running; n += CHURN_WRITERS) {
          const [s, i] = ids[n]!;
          const status = round % 2 === 0 ? 'draining' : 'up';
          const res = await fetch(`${gateway}/services/svc${s}/instances/i${i}/heartbeat`, {
            method: 'PUT',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ status }),
          });
          await res.arrayBuffer();
          if (res.status === 200) changes++;
        }
      }
    }),
  );
  return changes;
}

export const dns: Scenario = {
  name: 'dns',
  title: `DNS interface: dnsperf against the gateway and dnsmasq (${SERVICES} services × ${PER_SERVICE} instances, A and SRV, server on one core)`,
  async run(ctx) {
    const seconds = ctx.durationS ?? (ctx.quick ? 5 : 15);
    const dir = await mkdtemp(join(tmpdir(), 'bench-dns-'));
    const queries = join(dir, 'queries.txt');
    const lines: string[] = [];
    for (let s = 0; s < SERVICES; s++) lines.push(`svc${s}.service.${DOMAIN} A`, `_svc${s}._tcp.service.${DOMAIN} SRV`);
    await writeFile(queries, lines.join('\n') + '\n');

    const dnsPort = await freePort();
    const gw = await startGateway({ etcd: ctx.etcd, cpuProfDir: ctx.cpuProfDir, env: { DNS_PORT: String(dnsPort), DNS_TTL_SECONDS: '5' } });
    const floor = await startDnsmasq(dir);
    try {
      pin(gw.pid);
      await registerAll(gw.url);
      ctx.log(`${SERVICES * PER_SERVICE} instances registered`);
      await dnsperf(dnsPort, queries, 2); // warm-up (JIT)

      // Rounds alternate the two servers, so that both meet the same background load; medians are reported.
      const oursRounds: PerfResult[] = [];
      const theirsRounds: PerfResult[] = [];
      for (let round = 0; round < ctx.rounds; round++) {
        oursRounds.push(await measuredRun(gw.pid, dnsPort, queries, seconds));
        theirsRounds.push(await measuredRun(floor.child.pid, floor.port, queries, seconds));
        ctx.log(
          `full load, round ${round + 1}: gateway ${oursRounds[round]!.qps.toFixed(0)}/s (${oursRounds[round]!.cpuPerAnswer!.toFixed(1)} µs CPU each), ` +
            `dnsmasq ${theirsRounds[round]!.qps.toFixed(0)}/s (${theirsRounds[round]!.cpuPerAnswer!.toFixed(1)} µs)`,
        );
      }
      const ours = medianBy(oursRounds, (r) => r.qps);
      const theirs = medianBy(theirsRounds, (r) => r.qps);
      const oursCpu = medianOf(oursRounds.map((r) => r.cpuPerAnswer!));
      const theirsCpu = medianOf(theirsRounds.map((r) => r.cpuPerAnswer!));
      // Latency at half the gateway's rate, also in alternating rounds: one 15 s run's p99 is
      // decided by whatever else woke on the machine in it, so each server's median run is reported.
      const half = ours.qps / 2;
      const oursHalfRounds: PerfResult[] = [];
      const theirsHalfRounds: PerfResult[] = [];
      for (let round = 0; round < ctx.rounds; round++) {
        oursHalfRounds.push(await dnsperf(dnsPort, queries, seconds, half));
        theirsHalfRounds.push(await dnsperf(floor.port, queries, seconds, half));
        ctx.log(
          `half rate, round ${round + 1}: p99 gateway ${oursHalfRounds[round]!.p99!.toFixed(2)} ms, dnsmasq ${theirsHalfRounds[round]!.p99!.toFixed(2)} ms`,
        );
      }
      const oursHalf = medianBy(oursHalfRounds, (r) => r.p99!);
      const theirsHalf = medianBy(theirsHalfRounds, (r) => r.p99!);

      const stop = sleep(seconds * 1000 + 500);
      const [changes, churned] = await Promise.all([churn(gw.url, stop), dnsperf(dnsPort, queries, seconds)]);

      ctx.note(
        `dnsperf: 8 clients, 200 queries outstanding, half A and half SRV (5 records, SRV with 5 additional A); server pinned to core ${SERVER_CORE}, dnsperf to core ${CLIENT_CORE}. ` +
          `Lost queries: gateway ${ours.lost}, dnsmasq ${theirs.lost} at full load; ${churned.lost} under churn. ` +
          `p99 of each half-rate round: gateway ${oursHalfRounds.map((r) => r.p99!.toFixed(2)).join(', ')} ms; dnsmasq ${theirsHalfRounds.map((r) => r.p99!.toFixed(2)).join(', ')} ms.`,
      );
      const rows: Row[] = [
        ratioRow('answers/s at full load', ours.qps, theirs.qps, 'dnsmasq', '/s', 0.3),
        // Inverted: dnsmasq's CPU per answer over ours is the share of dnsmasq's rate one core would give.
        ratioRow('CPU per answer at full load', oursCpu, theirsCpu, 'dnsmasq', 'µs', undefined, theirsCpu / oursCpu),
        {
          ...underRow(`p99 at half the gateway's rate (${half.toFixed(0)}/s, median of ${ctx.rounds})`, oursHalf.p99!, 'ms', 5),
          baseline: theirsHalf.p99,
          against: 'dnsmasq p99',
        },
        { metric: 'p50 at half rate', ours: oursHalf.p50!, baseline: theirsHalf.p50, against: 'dnsmasq p50', unit: 'ms' },
        ratioRow('answers/s while 1,000 instances churn', churned.qps, ours.qps, 'without churn', '/s'),
        { metric: 'status changes applied during the churn run', ours: changes / seconds, unit: '/s' },
      ];
      return rows;
    } finally {
      await floor.child.stop();
      await gw.stop();
    }
  },
};
