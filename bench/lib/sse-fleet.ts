// The fleet scenarios' tools: thousands of change streams held by child
// processes (sse-fleet-child.ts, ~2,000 per child), a gateway on a port of our
// choosing (so a restart comes back on the same one) with a raised descriptor
// limit, paced writes that record each answer's revision, and etcd's own view
// (revision, watcher gauge) for counting what the gateway costs the store.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { instanceInput } from './fixtures.ts';
import { spawnChild, waitFor200, type Child } from './procs.ts';

export interface OpenGroup {
  type: 'open';
  group: number;
  port: number;
  paths: string[];
  /** Reconnect after `retry:` with Last-Event-ID, as EventSource does. */
  reconnect: boolean;
  /** Read at most this many bytes per second (the socket is paused in between). */
  throttleBytesPerS?: number;
  /** Keep the first snapshot's data and count its instances. */
  keepSnapshot?: boolean;
}

export type ToChild = OpenGroup | { type: 'status'; want?: Record<string, number> } | { type: 'collect' };

export interface CollectedStream {
  path: string;
  /** Ids (store revisions) of the change events received, in order, and when each arrived (ms, timeOrigin + now). */
  ids: number[];
  times: number[];
  connects: number;
  non200: number;
  /** Connections answered 200. */
  ok200: number;
  /** Bytes received on every connection, headers included. */
  bytesRead: number;
  snapshots: number;
  /** Snapshots received on a resume (a reset instead of a replay). */
  snapshotsOnResume: number;
  /** NaN (here and below) when no snapshot arrived. */
  snapshotId: number;
  snapshotAt: number;
  snapshotBytes: number;
  snapshotInstances: number;
  /** When the latest reconnect was answered 200 (the resume that held, if the stream is open). */
  resumedAt: number;
  /** Still connected when collected. */
  open: boolean;
}

interface FleetStatus {
  connected: number;
  resumed: number;
  caughtUp: number;
}

export const clock = () => performance.timeOrigin + performance.now();

/** The streams each child process holds at most. */
const PER_CHILD = 2000;

/** Child processes holding the streams; paths are spread over them in order. */
export class SubscriberFleet {
  private groups = 0;

  private constructor(private readonly children: Child[]) {}

  static async start(streams: number): Promise<SubscriberFleet> {
    const children: Child[] = [];
    for (let i = 0; i < Math.max(1, Math.ceil(streams / PER_CHILD)); i++) {
      children.push(
        await spawnChild(`sse-fleet-${i}`, ['--import', 'tsx', 'bench/lib/sse-fleet-child.ts'], {}, 0, {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        }),
      );
    }
    return new SubscriberFleet(children);
  }

  /** Open one stream per path; resolves when each has its first snapshot (or failed, without reconnect). */
  async open(port: number, paths: string[], options: Omit<OpenGroup, 'type' | 'group' | 'port' | 'paths'>, timeoutMs: number) {
    const group = this.groups++;
    const per = Math.ceil(paths.length / this.children.length);
    const answers = this.children.map((child, i) => {
      const mine = paths.slice(i * per, (i + 1) * per);
      if (!mine.length) return Promise.resolve({ ok: 0, failed: 0 });
      const answer = this.reply<{ ok: number; failed: number }>(child, 'opened', timeoutMs, (m) => m.group === group);
      child.proc.send({ type: 'open', group, port, paths: mine, ...options } satisfies OpenGroup);
      return answer;
    });
    const all = await Promise.all(answers);
    return { ok: all.reduce((n, a) => n + a.ok, 0), failed: all.reduce((n, a) => n + a.failed, 0) };
  }

  async status(want?: Record<string, number>): Promise<FleetStatus> {
    const all = await Promise.all(
      this.children.map((child) => {
        const answer = this.reply<FleetStatus>(child, 'status', 30_000);
        child.proc.send({ type: 'status', want } satisfies ToChild);
        return answer;
      }),
    );
    return {
      connected: all.reduce((n, s) => n + s.connected, 0),
      resumed: all.reduce((n, s) => n + s.resumed, 0),
      caughtUp: all.reduce((n, s) => n + s.caughtUp, 0),
    };
  }

  /** Poll the children until `done(status)` or the timeout; resolves the last status. */
  async until(done: (s: FleetStatus) => boolean, timeoutMs: number, want?: Record<string, number>): Promise<FleetStatus> {
    const t0 = performance.now();
    for (;;) {
      const s = await this.status(want);
      if (done(s) || performance.now() - t0 > timeoutMs) return s;
      await sleep(200);
    }
  }

  /** Close every stream and gather what each received. */
  async collect(): Promise<CollectedStream[]> {
    const all = await Promise.all(
      this.children.map((child) => {
        const answer = this.reply<{ streams: CollectedStream[] }>(child, 'collected', 60_000);
        child.proc.send({ type: 'collect' } satisfies ToChild);
        return answer;
      }),
    );
    // NaN crossed IPC (JSON) as null.
    return all
      .flatMap((a) => a.streams)
      .map((s) => {
        for (const [k, v] of Object.entries(s)) if (v === null) (s as unknown as Record<string, number>)[k] = NaN;
        return s;
      });
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(async (child) => {
        if (child.proc.connected) child.proc.disconnect();
        await child.stop(2000);
      }),
    );
  }

  private reply<T>(child: Child, type: string, timeoutMs: number, match: (m: Record<string, unknown>) => boolean = () => true): Promise<T> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: Record<string, unknown>) => {
        if (m.type !== type || !match(m)) return;
        done();
        resolve(m as T);
      };
      const onExit = () => {
        done();
        reject(new Error(`${child.name} exited before answering ${type}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${child.name}: no ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        child.proc.off('message', onMessage);
        child.proc.off('exit', onExit);
      };
      child.proc.on('message', onMessage);
      child.proc.once('exit', onExit);
    });
  }
}

export interface FleetGateway extends Child {
  port: number;
  /** When /health/ready first answered 200 (timeOrigin + now). */
  readyAt: number;
}

/**
 * `node dist/main.js` on `port`, its descriptor limit raised right after spawn
 * (before it opens sockets): 10,000 streams need more than a usual soft
 * limit. Throws when the limit stays below `streams` plus a margin.
 */
export async function startFleetGateway(
  etcd: string,
  port: number,
  streams: number,
  env: Record<string, string> = {},
): Promise<FleetGateway> {
  const t0 = performance.now();
  const child = await spawnChild(
    'gateway',
    ['dist/main.js'],
    {
      PORT: String(port),
      HOST: '127.0.0.1',
      ETCD_ENDPOINTS: etcd,
      LOG_LEVEL: 'warn',
      REQUEST_LOG: 'false',
      SSE_MAX_STREAMS: String(Math.max(streams * 2, 1000)),
      ...env,
    },
    port,
  );
  try {
    raiseFdLimit(child.pid);
    const limit = fdLimit(child.pid);
    if (limit < streams + FD_MARGIN)
      throw new Error(`the gateway may open ${limit} descriptors, ${streams} streams need ${streams + FD_MARGIN}`);
    await waitFor200(child, '/health/ready', t0, 60_000);
    return { ...child, port, readyAt: clock() };
  } catch (err) {
    await child.stop(1000);
    throw err;
  }
}

const FD_LIMIT = 65_536;
/** Descriptors the gateway needs besides its streams (etcd, listener, files, health checks). */
const FD_MARGIN = 1000;

/**
 * prlimit on the running process: soft and hard to FD_LIMIT where allowed
 * (root with CAP_SYS_RESOURCE), else the soft limit up to the hard one.
 */
function raiseFdLimit(pid: number): void {
  const hard = Number(/Max open files\s+\d+\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1] ?? 0);
  for (const limit of [`${FD_LIMIT}:${FD_LIMIT}`, `${Math.min(FD_LIMIT, hard)}:`]) {
    try {
      execFileSync('prlimit', ['--pid', String(pid), `--nofile=${limit}`], { stdio: 'ignore' });
      return;
    } catch {
      // not permitted: the next, smaller step
    }
  }
}

/** The soft descriptor limit of a process (/proc/<pid>/limits). */
export function fdLimit(pid: number): number {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  return Number(/Max open files\s+(\d+)/.exec(limits)?.[1] ?? NaN);
}

/** The store revision (etcd's JSON gateway). */
export async function etcdRevision(etcd: string): Promise<number> {
  const res = await fetch(`${etcd}/v3/maintenance/status`, { method: 'POST', body: '{}' });
  const body = (await res.json()) as { header: { revision: string } };
  return Number(body.header.revision);
}

/** A gauge or counter from etcd's own /metrics (summed over label sets). */
export async function etcdMetric(etcd: string, name: string): Promise<number> {
  const text = await (await fetch(`${etcd}/metrics`)).text();
  let sum = NaN;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum = (Number.isNaN(sum) ? 0 : sum) + Number(line.split(' ').pop());
  }
  return sum;
}

export interface Write {
  service: string;
  revision: number;
  sent: number;
  answered: number;
}

/**
 * PUT one new instance (ttl 0) per slot, `rate` per second, into the services
 * `pick(n)` names, until `stop()` is true or `count` writes were sent; at most
 * `inFlight` unanswered. A write that is not answered 201 counts as failed.
 */
export async function pacedWrites(
  gateway: string,
  opts: { rate: number; count?: number; stop?: () => boolean; pick: (n: number) => string; inFlight?: number; idPrefix: string },
): Promise<{ writes: Write[]; failed: number }> {
  const writes: Write[] = [];
  let failed = 0;
  const pending = new Set<Promise<void>>();
  const t0 = performance.now();
  for (let n = 0; n < (opts.count ?? Infinity) && !opts.stop?.(); n++) {
    const due = t0 + (n * 1000) / opts.rate;
    if (due > performance.now()) await sleep(due - performance.now());
    while (pending.size >= (opts.inFlight ?? 20)) await Promise.race(pending);
    const service = opts.pick(n);
    const write = (async () => {
      const sent = clock();
      try {
        const res = await fetch(`${gateway}/services/${service}/instances/${opts.idPrefix}-${n}`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(instanceInput(n, 0)),
          signal: AbortSignal.timeout(10_000),
        });
        const answered = clock();
        await res.arrayBuffer();
        const revision = Number(res.headers.get('x-registry-revision'));
        if (res.status === 201 && revision > 0) writes.push({ service, revision, sent, answered });
        else failed++;
      } catch {
        failed++;
      }
    })();
    pending.add(write);
    void write.finally(() => pending.delete(write));
  }
  await Promise.all(pending);
  writes.sort((a, b) => a.revision - b.revision);
  return { writes, failed };
}

/** Samples `read()` every `everyMs` until stopped; keeps the largest value. */
export function sampleMax(read: () => number | Promise<number>, everyMs: number): { stop(): Promise<number> } {
  let max = -Infinity;
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        max = Math.max(max, await read());
      } catch {
        // a sample that failed (process gone) is skipped
      }
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return max;
    },
  };
}
