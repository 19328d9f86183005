// discovery-agent tests' processes: the real gateway (`node src/main.ts`), the agent,
// and CMD (a tiny HTTP server that records when it got SIGTERM and what the gateway said
// then), plus the gateway's API as the agent's users see it. Every process started here
// is stopped by cleanUp().
import assert from 'node:assert/strict';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Instance } from '../../src/registry/types.ts';
import { freePort } from './ports.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Polls `probe` until it answers a value other than undefined; fails with `what` at the deadline. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
  context?: { stderr(): string },
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${context ? `; its output:\n${context.stderr()}` : ''}`);
    }
    await sleep(100);
  }
}

/** Keeps the last 64 KiB a child wrote, for failure messages; the pipe is always drained. */
export function tail(stream: NodeJS.ReadableStream | null): { text(): string } {
  let text = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    text = (text + chunk).slice(-65_536);
  });
  return { text: () => text };
}

const closed = new WeakMap<ChildProcess, Promise<unknown>>();

/** Spawns and remembers when the child is gone and its pipes are read to the end ('close'). */
export function launch(file: string, args: string[], options: SpawnOptions): ChildProcess {
  const proc = spawn(file, args, options);
  closed.set(
    proc,
    once(proc, 'close').catch(() => undefined),
  ); // a spawn error shows as exit code null
  return proc;
}

export async function exitOf(proc: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      closed.get(proc),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`process ${proc.pid} still running after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
  return { code: proc.exitCode, signal: proc.signalCode };
}

/** Waits for the agent to log a line matching `pattern` (it logs after the gateway has answered). */
export async function logged(agent: AgentProcess, pattern: RegExp): Promise<void> {
  await until(`the agent to log ${pattern}`, () => (pattern.test(agent.stderr()) ? true : undefined), 10_000, agent);
}

export interface Gateway {
  url: string;
  port: number;
  /** Bearer token the test itself reads with, when the gateway has access control on. */
  readToken?: string;
  logs(): string;
  stop(): Promise<void>;
}

const gateways = new Set<Gateway>();

/** The real gateway: `node --import tsx src/main.ts`, ready when GET /health/ready answers 200. */
export async function startGateway(env: Record<string, string> = {}, port?: number): Promise<Gateway> {
  port ??= await freePort();
  const proc = launch(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = tail(proc.stdout);
  const err = tail(proc.stderr);
  const url = `http://127.0.0.1:${port}`;
  const gateway: Gateway = {
    url,
    port,
    logs: () => out.text() + err.text(),
    async stop() {
      gateways.delete(gateway);
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      try {
        await exitOf(proc, 5_000);
      } catch {
        proc.kill('SIGKILL');
        await exitOf(proc, 5_000);
      }
    },
  };
  gateways.add(gateway);
  try {
    await until(
      'the gateway to be ready',
      async () => {
        if (proc.exitCode !== null) throw new Error(`gateway exited with ${proc.exitCode}:\n${gateway.logs()}`);
        try {
          const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(1_000) });
          await res.body?.cancel();
          return res.status === 200 ? true : undefined;
        } catch {
          return undefined;
        }
      },
      45_000,
      { stderr: gateway.logs },
    );
  } catch (e) {
    await gateway.stop();
    throw e;
  }
  return gateway;
}

export interface AgentProcess {
  proc: ChildProcess;
  stderr(): string;
  exit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const agents = new Set<ChildProcess>();

export function startAgent(args: string[], env: Record<string, string> = {}): AgentProcess {
  const proc = launch(process.execPath, ['--import', 'tsx', 'src/agent/main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, DISCOVERY_GATEWAY: '', DISCOVERY_TOKEN: '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  agents.add(proc);
  proc.once('exit', () => agents.delete(proc));
  const err = tail(proc.stderr);
  return { proc, stderr: err.text, exit: (timeoutMs = 15_000) => exitOf(proc, timeoutMs) };
}

// CMD: an HTTP server whose /health fails while the file `fail` exists, that exits with the code
// written to the file `exit`, and on SIGTERM records {at, probe} in `sigterm` (probe: the status
// of GET CMD_PROBE at that moment), then exits with CMD_TERM_EXIT unless CMD_IGNORE_TERM is set.
const CMD_SOURCE = `
import http from 'node:http';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const dir = process.env.CMD_DIR;
writeFileSync(join(dir, 'started'), String(Date.now()));
const server = http.createServer((req, res) => {
  const failing = existsSync(join(dir, 'fail'));
  res.writeHead(failing ? 503 : 200).end(failing ? 'failing' : 'ok');
});
setTimeout(() => server.listen(Number(process.env.CMD_PORT), '127.0.0.1', () => {
  writeFileSync(join(dir, 'listening'), String(Date.now()));
}), Number(process.env.CMD_LISTEN_AFTER_MS ?? 0));
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(99); // the agent died (a test that failed): do not linger
  // The file may exist before its content is written: exit only once there is a code.
  const code = existsSync(join(dir, 'exit')) ? readFileSync(join(dir, 'exit'), 'utf8') : '';
  if (code !== '') process.exit(Number(code));
}, 50);
process.on('SIGTERM', async () => {
  const at = Date.now();
  let probe = null;
  if (process.env.CMD_PROBE) {
    try { probe = (await fetch(process.env.CMD_PROBE)).status; } catch (err) { probe = String(err); }
  }
  writeFileSync(join(dir, 'sigterm'), JSON.stringify({ at, probe }));
  if (process.env.CMD_IGNORE_TERM) return;
  process.exit(Number(process.env.CMD_TERM_EXIT ?? 0));
});
`;

export interface Cmd {
  dir: string;
  port: number;
  /** The agent's `-- CMD ARGS` part. */
  argv: string[];
  env: Record<string, string>;
  file(name: string): string;
  sigterm(): Promise<{ at: number; probe: number | string | null }>;
}

let tmp: string | undefined;

/** A temporary directory for this file's CMDs and token files, removed by cleanUp(). */
export async function tempDir(): Promise<string> {
  tmp ??= await mkdtemp(join(tmpdir(), 'agent-test-'));
  return tmp;
}

/** Kill every agent still running, stop every gateway started, remove the temporary directory. */
export async function cleanUp(): Promise<void> {
  for (const proc of agents) proc.kill('SIGKILL');
  await Promise.all([...gateways].map((g) => g.stop()));
  if (tmp) await rm(tmp, { recursive: true, force: true });
  tmp = undefined;
}

export async function makeCmd(env: Record<string, string> = {}): Promise<Cmd> {
  const dir = await mkdtemp(join(await tempDir(), 'cmd-'));
  const port = await freePort();
  const script = join(dir, 'cmd.mjs');
  await writeFile(script, CMD_SOURCE);
  return {
    dir,
    port,
    argv: ['--', process.execPath, script],
    env: { CMD_DIR: dir, CMD_PORT: String(port), ...env },
    file: (name) => join(dir, name),
    sigterm: async () => JSON.parse(await readFile(join(dir, 'sigterm'), 'utf8')) as { at: number; probe: number | string | null },
  };
}

// The gateway's API as a client sees it

export async function instances(gateway: Gateway, service: string): Promise<Instance[]> {
  const headers: Record<string, string> = gateway.readToken === undefined ? {} : { authorization: `Bearer ${gateway.readToken}` };
  const res = await fetch(`${gateway.url}/services/${service}`, { headers });
  assert.equal(res.status, 200);
  return ((await res.json()) as { instances: Instance[] }).instances;
}

export async function instance(gateway: Gateway, service: string, id: string): Promise<Instance | undefined> {
  return (await instances(gateway, service)).find((i) => i.id === id);
}

interface ChangeEvent {
  event: string;
  data: { type?: string; id?: string; instance?: Instance };
  receivedAt: number;
}

/** Subscribes to /services/{name}/events and collects every change event with its arrival time. */
export async function subscribe(gateway: Gateway, service: string): Promise<{ events: ChangeEvent[]; close(): void }> {
  const controller = new AbortController();
  const res = await fetch(`${gateway.url}/services/${service}/events`, { signal: controller.signal });
  assert.equal(res.status, 200);
  const events: ChangeEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  void (async () => {
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trim();
          }
          if (data !== '') events.push({ event, data: JSON.parse(data) as ChangeEvent['data'], receivedAt: Date.now() });
        }
      }
    } catch {
      // aborted by close()
    }
  })();
  return { events, close: () => controller.abort() };
}

let serial = 0;
export const serviceName = (what: string) => `agent-${what}-${process.pid}-${++serial}`;

type FlagValue = string | number | readonly string[];

/**
 * `discovery-agent run` arguments from named flags, in order: { service: 's', tag: ['a', 'b'] }
 * gives --service s --tag a --tag b; `cmd` (the `-- CMD ARGS` part) comes last.
 */
export function runArgs(flags: Record<string, FlagValue>, cmd: readonly string[] = []): string[] {
  const args = ['run'];
  for (const [flag, value] of Object.entries(flags)) {
    for (const v of Array.isArray(value) ? value : [value]) args.push(`--${flag}`, String(v));
  }
  return [...args, ...cmd];
}
