// HTTP load from wrk, a separate native process (so the load generator never
// shares an event loop, and costs a fraction of the CPU per request that a
// Node generator would). Each run uses a script of bench/wrk/ whose done()
// prints one JSON line; answers with an unexpected status are errors.
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
}

/** ok: answers with the expected status; errors: the other answers + socket errors; latency in ms (wrk measures µs). */
export interface WrkStats extends LoadStats {
  statuses: Record<string, number>;
  /** CPU seconds wrk itself used (user + system), to show what the generator cost. */
  wrkCpuS: number;
}

interface WrkJson {
  requests: number;
  durationUs: number;
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
  const args = Object.entries({ threads: o.threads, ...o.args }).map(([k, v]) => `${k}=${v}`);
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
  const proc = spawn('sh', ['-c', sh, 'sh', WRK, ...wrkArgs], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(proc);
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const [code] = (await once(proc, 'exit')) as [number | null];
  live.delete(proc);
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
    p50: ms(r.latencyUs.p50),
    p90: ms(r.latencyUs.p90),
    p99: ms(r.latencyUs.p99),
    max: ms(r.latencyUs.max),
    seconds,
    wrkCpuS,
  };
}
