// Child processes of the benchmark (gateway, fastify baseline, SSE subscribers):
// spawned on loopback, logs to a temp file (never an undrained pipe), and killed
// on every way out of the bench process, including failures and signals.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

let logDir: string | undefined;
/** Where child logs go (printed on failure). */
export async function logsDir(): Promise<string> {
  logDir ??= await mkdtemp(join(tmpdir(), 'bench-logs-'));
  return logDir;
}

export const freePort = () =>
  new Promise<number>((ok, ko) => {
    const s = net.createServer().once('error', ko);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => ok(port));
    });
  });

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  url: string;
  log: string;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** The last lines of the child's log (for error messages). */
  tail(lines?: number): string;
}

/** A Node child process (`node ...args`). */
export function spawnChild(
  name: string,
  args: string[],
  env: Record<string, string>,
  port: number,
  extra: SpawnOptions = {},
): Promise<Child> {
  return spawnCommand(name, process.execPath, args, env, port, extra);
}

export async function spawnCommand(
  name: string,
  command: string,
  args: string[],
  env: Record<string, string>,
  port: number,
  extra: SpawnOptions = {},
): Promise<Child> {
  const log = join(await logsDir(), `${name}-${Date.now()}.log`);
  const fd = openSync(log, 'a');
  const stdio = extra.stdio ?? ['ignore', fd, fd];
  const proc = spawn(command, args, { ...extra, env: { ...process.env, ...env }, stdio });
  closeSync(fd);
  proc.on('error', () => {});
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  const child: Child = {
    name,
    proc,
    pid: proc.pid ?? 0,
    url: `http://127.0.0.1:${port}`,
    log,
    async stop(graceMs = 5000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, 'exit');
      proc.kill('SIGTERM');
      const killer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(killer);
    },
    tail(lines = 20) {
      try {
        return readFileSync(log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    },
  };
  return child;
}

/** Poll `path` until it answers 200; resolves the milliseconds it took from `since`. */
export async function waitFor200(child: Child, path: string, since: number, timeoutMs = 30_000): Promise<number> {
  for (;;) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
      throw new Error(`${child.name} exited (${child.proc.exitCode ?? child.proc.signalCode}):\n${child.tail()}`);
    }
    try {
      const res = await fetch(`${child.url}${path}`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return performance.now() - since;
    } catch {
      // not listening yet
    }
    if (performance.now() - since > timeoutMs) throw new Error(`${child.name} not ready in ${timeoutMs} ms:\n${child.tail()}`);
    await sleep(20);
  }
}

/** dist/ is compiled when missing or older than src/ (the same check as `npm start`). */
export function ensureBuilt(): void {
  execFileSync(process.execPath, ['scripts/build-if-stale.mjs'], { stdio: 'inherit' });
}

export interface GatewayOptions {
  etcd: string;
  env?: Record<string, string>;
  /** Write a V8 CPU profile of the gateway into this directory when it exits. */
  cpuProfDir?: string;
}

export interface Gateway extends Child {
  /** Milliseconds from spawn to /health/ready = 200. */
  readyMs: number;
}

/** The gateway as a production process: `node dist/main.js`, request logs off. */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const port = await freePort();
  const args = [...(opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`] : []), 'dist/main.js'];
  const t0 = performance.now();
  const child = await spawnChild(
    'gateway',
    args,
    {
      PORT: String(port),
      HOST: '127.0.0.1',
      ETCD_ENDPOINTS: opts.etcd,
      LOG_LEVEL: 'warn',
      REQUEST_LOG: 'false',
      ...opts.env,
    },
    port,
  );
  try {
    const readyMs = await waitFor200(child, '/health/ready', t0);
    return { ...child, readyMs };
  } catch (err) {
    await child.stop(1000);
    throw err;
  }
}

/** An answer as captured from the gateway: its body (in a file) and the headers a baseline repeats. */
export interface CapturedAnswer {
  bodyFile: string;
  headers: Record<string, string>;
}

/** The headers a baseline repeats, as the gateway sent them. */
const REPEATED_HEADERS = ['content-type', 'etag', 'x-registry-revision'];

/** Fetch one answer of the gateway (as `curl -D` would) and keep its body in a file and its headers. */
export async function captureAnswer(url: string, init: RequestInit, name: string): Promise<CapturedAnswer> {
  const res = await fetch(url, init);
  const body = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${url}: ${res.status} ${body}`);
  const bodyFile = join(await logsDir(), `${name}-body`);
  await writeFile(bodyFile, body);
  const headers: Record<string, string> = {};
  for (const h of REPEATED_HEADERS) {
    const v = res.headers.get(h);
    if (v !== null) headers[h] = v;
  }
  return { bodyFile, headers };
}

/** The plain fastify route of the same version, logger off, answering the captured bytes and headers. */
export async function startBaseline(answer: CapturedAnswer): Promise<Child> {
  const port = await freePort();
  const t0 = performance.now();
  const child = await spawnChild(
    'baseline',
    ['--import', 'tsx', 'bench/baseline-server.ts'],
    { PORT: String(port), BODY_FILE: answer.bodyFile, HEADERS_JSON: JSON.stringify(answer.headers) },
    port,
  );
  try {
    await waitFor200(child, '/health', t0);
    return child;
  } catch (err) {
    await child.stop(1000);
    throw err;
  }
}

/** Clock ticks per second, the unit of the CPU times in /proc/<pid>/stat. */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Resident set size of a process, in MB (/proc/<pid>/status VmRSS). */
export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** CPU seconds (user + system) a process has used (/proc/<pid>/stat utime + stime). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from #3 (state) on
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // #14 utime, #15 stime
}
