// The bench's own etcd: one member or a 3-member cluster on free loopback
// ports, data in /dev/shm (memory) unless told otherwise, no pipes (an
// undrained stdout would block etcd), every member killed when the bench
// process exits. Kept apart from test/helpers so the two can change freely.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './procs.ts';

const ETCD = process.env.ETCD_BIN ?? 'etcd';
const HEALTHY_WITHIN_MS = 20_000;

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

interface Member {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc: ChildProcess;
}

export interface BenchEtcd {
  /** Client URLs, one per member, in member order. */
  endpoints: string[];
  /** SIGKILL member i (it stays down). */
  kill(i: number): Promise<void>;
  /** Index of the member that is leader now (asked through etcd's JSON gateway). */
  leaderIndex(): Promise<number>;
  close(): Promise<void>;
}

const exited = async (p: ChildProcess) => {
  if (p.exitCode === null && p.signalCode === null) await once(p, 'exit');
};

/** POST to etcd's JSON gateway; undefined when the member does not answer. */
async function etcdJson(url: string, path: string, body: unknown = {}): Promise<Record<string, unknown> | undefined> {
  try {
    const res = await fetch(`${url}${path}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(1000) });
    return res.ok ? ((await res.json()) as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

async function waitHealthy(m: Member): Promise<void> {
  for (const t0 = Date.now(); ; await sleep(100)) {
    if (m.proc.exitCode !== null || m.proc.signalCode !== null) throw new Error(`etcd member ${m.name} exited at start (port taken?)`);
    try {
      const res = await fetch(`${m.clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
      if (((await res.json()) as { health?: string }).health === 'true') return;
    } catch {
      // not up yet
    }
    if (Date.now() - t0 > HEALTHY_WITHIN_MS) throw new Error(`etcd member ${m.name} not healthy in ${HEALTHY_WITHIN_MS} ms`);
  }
}

async function startOnce(size: number, dataIn: string): Promise<BenchEtcd> {
  const members: Member[] = [];
  for (let i = 0; i < size; i++) {
    members.push({
      name: `b${i}`,
      clientUrl: `http://127.0.0.1:${await freePort()}`,
      peerUrl: `http://127.0.0.1:${await freePort()}`,
      dataDir: await mkdtemp(join(dataIn, 'etcd-bench-')),
      proc: undefined as unknown as ChildProcess,
    });
  }
  const cluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  const token = `bench-${process.pid}-${Date.now()}`;
  for (const m of members) {
    const args = ['--name', m.name, '--data-dir', m.dataDir, '--listen-client-urls', m.clientUrl, '--advertise-client-urls', m.clientUrl];
    args.push('--listen-peer-urls', m.peerUrl, '--initial-advertise-peer-urls', m.peerUrl, '--initial-cluster', cluster);
    args.push('--initial-cluster-token', token, '--initial-cluster-state', 'new', '--log-level', 'error');
    m.proc = spawn(ETCD, args, { stdio: 'ignore' });
    m.proc.on('error', () => {}); // seen as an early exit by waitHealthy
    live.add(m.proc);
    m.proc.once('exit', () => live.delete(m.proc));
  }
  const kill = async (m: Member) => {
    m.proc.kill('SIGKILL');
    await exited(m.proc);
  };
  const close = async () => {
    await Promise.all(members.map(kill));
    await Promise.all(members.map((m) => rm(m.dataDir, { recursive: true, force: true })));
  };
  try {
    await Promise.all(members.map(waitHealthy));
  } catch (err) {
    await close();
    throw err;
  }
  return {
    endpoints: members.map((m) => m.clientUrl),
    kill: (i) => kill(members[i]!),
    async leaderIndex() {
      for (let i = 0; i < members.length; i++) {
        const s = (await etcdJson(members[i]!.clientUrl, '/v3/maintenance/status')) as
          { header?: { member_id?: string }; leader?: string } | undefined;
        if (s?.header?.member_id && s.header.member_id === s.leader) return i;
      }
      throw new Error('no etcd member is leader');
    },
    close,
  };
}

/** Data in `dataIn` (default /dev/shm when it exists, else the temp dir). Retries once on a port race. */
export async function startBenchEtcd(size: 1 | 3, dataIn = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()): Promise<BenchEtcd> {
  const check = spawnSync(ETCD, ['--version'], { stdio: 'ignore' });
  if (check.error || check.status !== 0) throw new Error(`etcd binary "${ETCD}" not runnable: install etcd-server or set ETCD_BIN`);
  try {
    return await startOnce(size, dataIn);
  } catch {
    return await startOnce(size, dataIn);
  }
}
