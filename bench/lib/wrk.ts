// HTTP load from wrk, a separate native process (so the load generator never
// shares an event loop, and costs a fraction of the CPU per request that a
// Node generator would). Each run uses a script of bench/wrk/ whose done()
// prints one JSON line; answers with an unexpected status are errors. Measured
// runs leave statuses to wrk itself (no Lua per answer, see bench/wrk/report.lua);
// `checkedLoad` verifies them in a short checking pass first.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { LoadStats } from './load.ts';
import { CLK_TCK } from './procs.ts';

export const WRK = process.env.WRK_BIN ?? 'wrk';
const SCRIPTS = new URL('../wrk/', import.meta.url).pathname;

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) {
    try {
      if (p.pid) process.kill(-p.pid, 'SIGKILL'); // sh and wrk: the group spawn() made (detached)
    } catch {
      // already gone
    }
  }
});

const runnable = (bin: string) => spawnSync(bin, ['--version'], { stdio: 'ignore' }).error === undefined; // `wrk --version` exits 1

/** Install Debian's wrk when it is missing (as scripts/test.sh installs the test tools: as root, else through sudo). */
export function ensureWrk(): void {
  if (runnable(WRK)) return;
  if (process.env.WRK_BIN) throw new Error(`WRK_BIN=${WRK} is not runnable`);
  console.log('bench: wrk is missing; installing it with apt');
  const asRoot = (args: string[]) => {
    const [cmd, ...rest] = process.getuid?.() === 0 ? args : ['sudo', ...args];
    const r = spawnSync(cmd!, rest, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.error || r.status !== 0) throw new Error(`${[cmd, ...rest].join(' ')} failed: install wrk (Debian package "wrk") or set WRK_BIN`);
  };
  asRoot(['apt-get', 'update', '-qq']);
  asRoot(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'wrk']);
  if (!runnable(WRK)) throw new Error('wrk still not runnable after apt-get install wrk');
}

export interface WrkOptions {
  url: string;
  /** A file of bench/wrk/, e.g. 'heartbeat.lua'. */
  script: string;
  /** key=value arguments of the script. */
  args?: Record<string, string | number>;
  connections: number;
  threads: number;
  durationS: number;
  /** Count every answer's status in Lua (a response() callback): for checking passes and paced runs only. */
  countStatuses?: boolean;
}

/** ok: answers with the expected status; errors: the other answers + socket errors; latency in ms (wrk measures µs). */
export interface WrkStats extends LoadStats {
  /** Answers by status, when counted (countStatuses); otherwise empty. */
  statuses: Record<string, number>;
  /** Bytes read per answer: constant for a fixed request whose answers do not change. */
  bytesPerAnswer: number;
  /** CPU seconds wrk itself used (user + system), to show what the generator cost. */
  wrkCpuS: number;
}

interface WrkJson {
  requests: number;
  durationUs: number;
  bytes: number;
  unexpected: number;
  statuses: Record<string, number>;
  socket: { connect: number; read: number; write: number; timeout: number };
  latencyUs: { p50: number; p90: number; p99: number; max: number };
}

/**
 * One wrk run. It runs under `sh`, which after wrk exits prints its own
 * /proc stat: wrk's CPU time is then in the shell's cutime/cstime.
 */
export async function wrk(o: WrkOptions): Promise<WrkStats> {
  const args = Object.entries({ threads: o.threads, ...(o.countStatuses ? { count_statuses: 1 } : {}), ...o.args }).map(
    ([k, v]) => `${k}=${v}`,
  );
  const wrkArgs = [
    '-t',
    String(o.threads),
    '-c',
    String(o.connections),
    '-d',
    `${o.durationS}s`,
    '--timeout',
    '10s',
    '-s',
    SCRIPTS + o.script,
    o.url,
    '--',
    ...args,
  ];
  const sh = 'wrk_bin="$1"; shift; "$wrk_bin" "$@"; rc=$?; printf "SH_STAT %s\\n" "$(cat /proc/$$/stat)"; exit $rc';
  const { code, out } = await runCollecting('sh', ['-c', sh, 'sh', WRK, ...wrkArgs]);
  const line = /^WRK_JSON (.*)$/m.exec(out)?.[1];
  if (code !== 0 || !line) throw new Error(`wrk ${o.script} ${o.url} failed (exit ${code}):\n${out.slice(-2000)}`);
  const r = JSON.parse(line) as WrkJson;
  const stat = /^SH_STAT .*\) (.*)$/m.exec(out)?.[1]?.split(' ') ?? [];
  // Fields from #3 (state) on: #16 cutime and #17 cstime are indexes 13 and 14.
  const wrkCpuS = (Number(stat[13]) + Number(stat[14])) / CLK_TCK;
  const socket = r.socket.connect + r.socket.read + r.socket.write + r.socket.timeout;
  const seconds = r.durationUs / 1e6;
  const ok = r.requests - r.unexpected;
  const ms = (us: number) => us / 1000;
  return {
    rps: ok / seconds,
    ok,
    errors: r.unexpected + socket,
    statuses: r.statuses,
    bytesPerAnswer: r.requests ? r.bytes / r.requests : 0,
    p50: ms(r.latencyUs.p50),
    p90: ms(r.latencyUs.p90),
    p99: ms(r.latencyUs.p99),
    max: ms(r.latencyUs.max),
    seconds,
    wrkCpuS,
  };
}

/**
 * A fixed request as a bench contender: the warm-up is a checking pass that counts
 * every status (any other than the expected one fails the scenario) and notes the
 * bytes per answer; each measured run, without Lua per answer, must read the same
 * bytes per answer (within 1%: a 304 instead of a 200, or an error page, would
 * not), else all its answers count as errors.
 */
export function checkedLoad(o: Omit<WrkOptions, 'durationS' | 'countStatuses'>, warmS: number, durationS: number) {
  let checked: number | undefined;
  return {
    warm: async () => {
      const s = await wrk({ ...o, durationS: warmS, countStatuses: true });
      if (s.errors || !s.ok)
        throw new Error(`checking pass of ${o.url}: ${s.errors} unexpected answers of ${s.ok + s.errors} (${JSON.stringify(s.statuses)})`);
      checked = s.bytesPerAnswer;
      return s;
    },
    run: async () => {
      const s = await wrk({ ...o, durationS });
      if (checked === undefined) throw new Error(`${o.url}: a measured run before its checking pass`);
      return Math.abs(s.bytesPerAnswer / checked - 1) > 0.01 ? { ...s, errors: s.errors + s.ok, ok: 0, rps: 0 } : s;
    },
  };
}

/**
 * Plain `wrk -t<threads> -c<connections> -d<s>s <url>`, no Lua at all, read from
 * its text output, as anyone would measure from outside. Latency percentiles are
 * not printed without --latency, so only the rate and failures are reported (the rest NaN).
 */
export async function plainWrk(
  url: string,
  o: { threads: number; connections: number; durationS: number; /** Run wrk on this core only. */ core?: number },
): Promise<WrkStats> {
  const args = ['-t', String(o.threads), '-c', String(o.connections), '-d', `${o.durationS}s`, url];
  const { code, out } = await (o.core === undefined
    ? runCollecting(WRK, args)
    : runCollecting('taskset', ['-c', String(o.core), WRK, ...args]));
  const rate = /^Requests\/sec:\s+([\d.]+)/m.exec(out)?.[1];
  const total = /^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)\b/m.exec(out);
  if (code !== 0 || !rate || !total) throw new Error(`wrk ${url} failed (exit ${code}):\n${out.slice(-2000)}`);
  const non2xx3xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socket = sock ? sock.slice(1).reduce((n, v) => n + Number(v), 0) : 0;
  const requests = Number(total[1]);
  // wrk counts every answer in Requests/sec, failed ones too: the rate of good answers is its share.
  const okShare = requests ? (requests - non2xx3xx) / requests : 0;
  return {
    rps: Number(rate) * okShare,
    ok: requests - non2xx3xx,
    errors: non2xx3xx + socket,
    statuses: {},
    bytesPerAnswer: NaN,
    wrkCpuS: NaN,
    p50: NaN,
    p90: NaN,
    p99: NaN,
    max: NaN,
    seconds: o.durationS,
  };
}

/** Run a load process (killed with the others if the bench stops) and collect its stdout and stderr together. */
async function runCollecting(command: string, args: string[]): Promise<{ code: number | null; out: string }> {
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(proc);
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const [code] = (await once(proc, 'exit')) as [number | null];
  live.delete(proc);
  return { code, out };
}
