// The system under test: a 3-member etcd cluster with periodic auto-compaction
// and N gateway replicas as real processes (`node --import tsx src/main.ts`),
// each a black box over HTTP. Also what the run samples from outside: etcd's
// compaction revision (its metrics) and each gateway's memory (/proc and its /metrics).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEtcd, type EtcdCluster } from '../test/helpers/etcd.ts';
import type { Partitioner } from '../test/helpers/partition.ts';
import { now } from './http.ts';
import type { Compaction, MajorGc, RssSample, RunLog } from './observations.ts';

/** The cluster with its peer links routed through `peers` (which can then cut them). */
export async function startCluster(compactionRetention: string, quotaBackendBytes: number, peers: Partitioner): Promise<EtcdCluster> {
  const cluster = await startEtcd({
    size: 3,
    quotaBackendBytes,
    extraArgs: ['--auto-compaction-mode', 'periodic', '--auto-compaction-retention', compactionRetention],
    routePeer: peers.route,
  });
  await peers.learnIds(cluster);
  return cluster;
}

const freePort = () =>
  new Promise<number>((ok, ko) => {
    const s = net.createServer().once('error', ko);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => ok(port));
    });
  });

/** The part of a gateway's /health the faults look at. */
interface GatewayHealth {
  store: { inSync: boolean; appliedRevision: number; alarms?: string[]; details?: { goneEndpoints?: unknown } };
}

/** One gateway replica: a fixed port and log file across restarts. */
export class Gateway {
  proc: ChildProcess | undefined;
  /** Each process started: its pid and when (epoch ms: the run's clock restarts after the first start), so its log's timings can be placed. */
  private readonly launches: { pid: number; epochMs: number }[] = [];

  private constructor(
    readonly index: number,
    readonly port: number,
    private readonly env: Record<string, string>,
    private readonly logFile: string,
    /** Options for node itself (a heap limit, --trace-gc), before the script. */
    private readonly nodeArgs: string[],
  ) {}

  static async create(index: number, env: Record<string, string>, logDir: string, nodeArgs: string[] = []): Promise<Gateway> {
    return new Gateway(index, await freePort(), env, join(logDir, `gateway-${index}.log`), nodeArgs);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.running ? this.proc?.pid : undefined;
  }

  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Spawns the process and waits until /health/ready answers 200. */
  async start(timeoutMs = 60_000): Promise<void> {
    const fd = openSync(this.logFile, 'a');
    const proc = spawn(process.execPath, [...this.nodeArgs, '--import', 'tsx', 'src/main.ts'], {
      env: { ...process.env, ...this.env, PORT: String(this.port), HOST: '127.0.0.1' },
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    if (proc.pid) this.launches.push({ pid: proc.pid, epochMs: Date.now() });
    proc.on('error', () => {});
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    this.proc = proc;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(`gateway ${this.index} exited at start:\n${this.tail()}`);
      try {
        const res = await fetch(`${this.url}/health/ready`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {}
      if (Date.now() > deadline) throw new Error(`gateway ${this.index} not ready in ${timeoutMs} ms:\n${this.tail()}`);
      await sleep(100);
    }
  }

  /** Sends `signal` and waits for the exit (SIGKILL after `graceMs`). */
  async stop(signal: NodeJS.Signals, graceMs = 15_000): Promise<number | null> {
    const proc = this.proc;
    if (!proc || !this.running) return proc?.exitCode ?? null;
    const exited = once(proc, 'exit');
    proc.kill(signal);
    const killer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(killer);
    return proc.exitCode;
  }

  /** What /health says of the store (undefined when it does not answer). */
  async health(): Promise<GatewayHealth | undefined> {
    try {
      const res = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(3000) });
      return (await res.json()) as GatewayHealth;
    } catch {
      return undefined;
    }
  }

  /**
   * The full (mark-compact) collections V8 logged when the gateway ran with
   * `--trace-gc`: what the heap held right after each, the live size.
   */
  majorGcs(): MajorGc[] {
    let text: string;
    try {
      text = readFileSync(this.logFile, 'utf8');
    } catch {
      return [];
    }
    const out: MajorGc[] = [];
    for (const m of text.matchAll(/^\[(\d+):0x[0-9a-f]+\]\s+(\d+) ms: Mark-Compact [\d.]+ \([\d.]+\) -> ([\d.]+) \(([\d.]+)\) MB/gm)) {
      const pid = Number(m[1]);
      const launch = this.launches.find((l) => l.pid === pid);
      if (!launch) continue;
      const at = now() - (Date.now() - launch.epochMs - Number(m[2]));
      out.push({ replica: this.index, pid, at, liveMb: Number(m[3]), reservedMb: Number(m[4]) });
    }
    return out;
  }

  tail(lines = 20): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}

// If the driver dies, leave no gateway behind (the etcd helper does the same for etcd).
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/** Samples a value on an interval until stopped. */
export class Sampler {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  constructor(
    private readonly everyMs: number,
    private readonly sample: () => Promise<void> | void,
  ) {}

  start(): this {
    this.timer = setInterval(async () => {
      if (this.busy) return;
      this.busy = true;
      try {
        await this.sample();
      } catch {
      } finally {
        this.busy = false;
      }
    }, this.everyMs);
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Polls etcd's `etcd_debugging_mvcc_compact_revision` on every member; records each change (a restored store's goes back). */
export function compactionWatcher(cluster: EtcdCluster, now: () => number, into: Compaction[]): Sampler {
  let highest = 0;
  return new Sampler(1000, async () => {
    const revs = await Promise.all(
      cluster.members.map(async (m) => {
        try {
          const res = await fetch(`${m.clientUrl}/metrics`, { signal: AbortSignal.timeout(800) });
          const m2 = /^etcd_debugging_mvcc_compact_revision (\d+)/m.exec(await res.text());
          return m2 ? Number(m2[1]) : 0;
        } catch {
          return 0;
        }
      }),
    );
    const r = Math.max(...revs);
    if (r && r !== highest) {
      highest = r;
      into.push({ revision: r, at: now() });
    }
  });
}

/** Each gateway's RSS (/proc) and, from its /metrics, where the memory is: V8 heap used and reserved, external. */
export function memorySampler(gateways: Gateway[], now: () => number, into: RssSample[]): Sampler {
  return new Sampler(5000, async () => {
    await Promise.all(
      gateways.map(async (g) => {
        const pid = g.pid;
        if (!pid) return;
        let rss: RegExpExecArray | null;
        try {
          rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        } catch {
          return;
        }
        if (!rss) return;
        const sample: RssSample = { replica: g.index, pid, at: now(), mb: Number(rss[1]) / 1024 };
        try {
          const res = await fetch(`${g.url}/metrics`, { signal: AbortSignal.timeout(2000) });
          const text = await res.text();
          if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
          const mb = (name: string) => {
            const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text);
            return m ? Number(m[1]) / 2 ** 20 : undefined;
          };
          sample.heapUsedMb = mb('nodejs_heap_size_used_bytes');
          sample.heapTotalMb = mb('nodejs_heap_size_total_bytes');
          sample.externalMb = mb('nodejs_external_memory_bytes');
        } catch {}
        into.push(sample);
      }),
    );
  });
}

/** The driver's event-loop delay: how late the driver itself notices what arrives. */
export function loopDelaySampler(now: () => number, into: RunLog['loopDelay']): Sampler {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  return new Sampler(5000, () => {
    into.push({ at: now(), p99: h.percentile(99) / 1e6 });
    h.reset();
  });
}
