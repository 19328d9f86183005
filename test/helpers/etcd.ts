// Real etcd processes for tests: free loopback ports, temp data dirs, no pipes
// (an undrained stdout pipe would eventually block etcd). Tests never skip: a
// missing binary is an error with a clear message.

import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import https from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.ts';

/** Client-side TLS of a test cluster (peers stay plain HTTP on loopback). */
export interface EtcdTls {
  /** CA that signed the server certificate (and the client certificates etcd accepts). */
  caFile: string;
  /** The server's certificate and key (its SANs must cover 127.0.0.1). */
  certFile: string;
  keyFile: string;
  /** Require client certificates (--client-cert-auth); the helper's etcdctl and health checks present this one. */
  clientCert?: { certFile: string; keyFile: string };
}

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  /** The peer URL the other members dial: peerUrl, or a proxy in front of it (see partition.ts). */
  advertisedPeerUrl: string;
  dataDir: string;
  /** pid of the current process (changes on restart). */
  pid: number;
  proc: ChildProcess;
}

export interface EtcdCluster {
  endpoints: string[];
  members: EtcdMember[];
  /** Run etcdctl (v3 API) against every endpoint; resolves stdout. */
  ctl(args: string[]): Promise<string>;
  /** Send a signal (default SIGKILL) to member i and wait for it to exit. */
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Respawn member i on the same data dir and ports; waits until healthy. */
  restart(i: number): Promise<void>;
  /**
   * Respawn member i on the same data dir but another client port, which clients
   * configured with `endpoints` cannot reach; resolves that URL. restart(i) brings it back.
   */
  restartElsewhere(i: number): Promise<string>;
  /** Run etcdctl against the given endpoints only. */
  ctlAt(urls: string[], args: string[]): Promise<string>;
  /** Freeze (SIGSTOP) / thaw (SIGCONT) member i. */
  stop(i: number): void;
  cont(i: number): void;
  /** Index in `members` of the current leader. */
  leaderIndex(): Promise<number>;
  compact(revision: number): Promise<void>;
  /**
   * Replace member i: remove it from the cluster (etcdctl member remove; its
   * process is stopped), add a new member at new addresses and start it.
   * `endpoints` keeps the old URL, as a gateway's configuration would; resolves
   * the new member's client URL.
   */
  replaceMember(i: number): Promise<string>;
  /** Save a snapshot of the store into `file` (etcdctl snapshot save). */
  snapshot(file: string): Promise<void>;
  /**
   * Restore every member from a snapshot (etcdctl snapshot restore into new data
   * dirs, each member restarted on its ports): the store goes back to the
   * snapshot's revision; the cluster keeps its name, token and so its id.
   */
  restoreSnapshot(file: string): Promise<void>;
  close(): Promise<void>;
}

const ETCD = process.env.ETCD_BIN ?? 'etcd';
const ETCDCTL = process.env.ETCDCTL_BIN ?? 'etcdctl';
const HEALTH_TIMEOUT_MS = 20_000;

// If the test process dies, do not leave etcd processes behind.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

function checkBinary(): void {
  const r = spawnSync(ETCD, ['--version'], { stdio: 'ignore' });
  if (r.error || r.status !== 0) {
    const where = process.env.CI === 'true' ? ' (CI must have etcd installed: tests never skip)' : '';
    throw new Error(`etcd binary "${ETCD}" not found or not runnable; install etcd 3.4+ or set ETCD_BIN${where}`);
  }
}

/** etcd's /health over https, trusting the test CA (and presenting the client certificate). */
function healthyTls(url: string, tls: EtcdTls): Promise<boolean> {
  return new Promise((ok) => {
    const req = https.get(
      `${url}/health`,
      {
        ca: readFileSync(tls.caFile),
        cert: tls.clientCert && readFileSync(tls.clientCert.certFile),
        key: tls.clientCert && readFileSync(tls.clientCert.keyFile),
        timeout: 1000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => ok(body.includes('"health":"true"')));
      },
    );
    req.on('error', () => ok(false)).on('timeout', () => req.destroy());
  });
}

async function healthy(url: string, tls?: EtcdTls): Promise<boolean> {
  if (tls) return healthyTls(url, tls);
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    return ((await res.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

async function waitHealthy(m: EtcdMember, tls?: EtcdTls): Promise<void> {
  for (const t0 = Date.now(); ; await sleep(100)) {
    if (m.proc.exitCode !== null || m.proc.signalCode !== null) {
      throw new Error(`etcd member ${m.name} exited (port race?)`);
    }
    if (await healthy(m.clientUrl, tls)) return;
    if (Date.now() - t0 > HEALTH_TIMEOUT_MS) throw new Error(`etcd member ${m.name} not healthy in time`);
  }
}

async function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  await once(proc, 'exit');
}

/**
 * SIGSTOP, then wait until every thread of the process has stopped: the signal
 * reaches a Go process's threads a little later, and a call sent in between
 * would still be answered.
 */
function frozen(proc: ChildProcess): void {
  proc.kill('SIGSTOP');
  const tasks = `/proc/${proc.pid}/task`;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (const deadline = Date.now() + 2000; Date.now() < deadline; Atomics.wait(pause, 0, 0, 5)) {
    try {
      const states = readdirSync(tasks).map((t) => /\) (\w)/.exec(readFileSync(`${tasks}/${t}/stat`, 'utf8'))?.[1]);
      if (states.every((state) => state === 'T' || state === 't')) return;
    } catch {
      return; // the process is gone: nothing left to answer
    }
  }
}

/** Given a member's peer URL, the URL the other members should dial instead. */
export type PeerRoute = (peerUrl: string) => Promise<string>;

async function startOnce(size: number, extraArgs: string[], tls?: EtcdTls, routePeer?: PeerRoute): Promise<EtcdCluster> {
  const scheme = tls ? 'https' : 'http';
  const tlsArgs = tls
    ? [
        '--cert-file',
        tls.certFile,
        '--key-file',
        tls.keyFile,
        '--trusted-ca-file',
        tls.caFile,
        ...(tls.clientCert ? ['--client-cert-auth'] : []),
      ]
    : [];
  const ctlTls = tls
    ? [`--cacert=${tls.caFile}`, ...(tls.clientCert ? [`--cert=${tls.clientCert.certFile}`, `--key=${tls.clientCert.keyFile}`] : [])]
    : [];
  const token = `t-${process.pid}-${Date.now()}`;
  const members: EtcdMember[] = [];
  for (let i = 0; i < size; i++) {
    const peerUrl = `http://127.0.0.1:${await freePort()}`;
    members.push({
      name: `m${i}`,
      clientUrl: `${scheme}://127.0.0.1:${await freePort()}`,
      peerUrl,
      advertisedPeerUrl: routePeer ? await routePeer(peerUrl) : peerUrl,
      dataDir: await mkdtemp(join(tmpdir(), 'etcd-test-')),
      pid: 0,
      proc: undefined as unknown as ChildProcess,
    });
  }
  const initialCluster = members.map((m) => `${m.name}=${m.advertisedPeerUrl}`).join(',');
  const endpoints = members.map((m) => m.clientUrl);

  /** `joining`: the --initial-cluster of a member added to a running cluster. */
  const spawnMember = (m: EtcdMember, clientUrl = m.clientUrl, joining?: string) => {
    // On a restart etcd ignores the --initial-* flags: the data dir knows the cluster.
    const args = [
      '--name',
      m.name,
      '--data-dir',
      m.dataDir,
      '--listen-client-urls',
      clientUrl,
      '--advertise-client-urls',
      clientUrl,
      '--listen-peer-urls',
      m.peerUrl,
      '--initial-advertise-peer-urls',
      m.advertisedPeerUrl,
      '--initial-cluster',
      joining ?? initialCluster,
      '--initial-cluster-token',
      token,
      '--initial-cluster-state',
      joining ? 'existing' : 'new',
      '--log-level',
      'error',
      ...tlsArgs,
      ...extraArgs,
    ];
    const proc = spawn(ETCD, args, { stdio: 'ignore' });
    proc.on('error', () => {}); // surfaced through exitCode / health polling
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    m.proc = proc;
    m.pid = proc.pid ?? 0;
  };

  const killMember = async (m: EtcdMember, signal: NodeJS.Signals = 'SIGKILL') => {
    const p = m.proc;
    if (p.exitCode !== null || p.signalCode !== null) return;
    p.kill('SIGCONT'); // a stopped process would not act on SIGTERM
    p.kill(signal);
    await exited(p);
  };

  const ctl = (args: string[], eps = members.map((m) => m.clientUrl)) =>
    new Promise<string>((ok, ko) => {
      execFile(
        ETCDCTL,
        [`--endpoints=${eps.join(',')}`, '--command-timeout=5s', ...ctlTls, ...args],
        { env: { ...process.env, ETCDCTL_API: '3' } },
        (err, stdout, stderr) => (err ? ko(new Error(`etcdctl ${args.join(' ')}: ${stderr || err.message}`)) : ok(stdout)),
      );
    });

  const cleanup = async () => {
    await Promise.all(members.map((m) => (m.proc ? killMember(m) : undefined)));
    await Promise.all(members.map((m) => rm(m.dataDir, { recursive: true, force: true })));
  };

  try {
    members.forEach((m) => spawnMember(m));
    await Promise.all(members.map((m) => waitHealthy(m, tls)));
  } catch (err) {
    await cleanup();
    throw err;
  }

  return {
    endpoints,
    members,
    ctl: (args) => ctl(args),
    kill: (i, signal) => killMember(members[i]!, signal),
    async restart(i) {
      const m = members[i]!;
      await killMember(m);
      spawnMember(m);
      await waitHealthy(m, tls);
    },
    async restartElsewhere(i) {
      const m = members[i]!;
      await killMember(m);
      const url = `${scheme}://127.0.0.1:${await freePort()}`;
      spawnMember(m, url);
      await waitHealthy({ ...m, clientUrl: url }, tls);
      return url;
    },
    ctlAt: (urls, args) => ctl(args, urls),
    stop: (i) => frozen(members[i]!.proc),
    cont: (i) => void members[i]!.proc.kill('SIGCONT'),
    async leaderIndex() {
      // Ask each member alone so a dead one does not fail the whole query.
      for (let i = 0; i < members.length; i++) {
        try {
          const out = JSON.parse(await ctl(['endpoint', 'status', '-w', 'json'], [members[i]!.clientUrl])) as {
            Status: { header: { member_id: number }; leader: number };
          }[];
          const s = out[0]?.Status;
          if (s && s.header.member_id === s.leader) return i;
        } catch {
          // member down: try the next one
        }
      }
      throw new Error('no etcd leader found');
    },
    async compact(revision) {
      await ctl(['compact', String(revision)]);
    },
    async replaceMember(i) {
      const old = members[i]!;
      const others = members.filter((m) => m !== old).map((m) => m.clientUrl);
      // `member list` prints "<hex id>, started, <name>, …": member ids exceed 2^53, so not from JSON.
      const line = (await ctl(['member', 'list'], others)).split('\n').find((l) => l.split(', ')[2] === old.name);
      if (!line) throw new Error(`member ${old.name} not in the member list`);
      // etcd refuses a removal until every member has been connected for a few seconds.
      for (const deadline = Date.now() + HEALTH_TIMEOUT_MS; ; await sleep(500)) {
        try {
          await ctl(['member', 'remove', line.split(',')[0]!], others);
          break;
        } catch (err) {
          if (!String(err).includes('unhealthy cluster') || Date.now() > deadline) throw err;
        }
      }
      await killMember(old);
      const peerUrl = `http://127.0.0.1:${await freePort()}`;
      const fresh: EtcdMember = {
        name: `${old.name}r${Date.now() % 100000}`,
        clientUrl: `${scheme}://127.0.0.1:${await freePort()}`,
        peerUrl,
        advertisedPeerUrl: peerUrl,
        dataDir: await mkdtemp(join(tmpdir(), 'etcd-test-')),
        pid: 0,
        proc: undefined as unknown as ChildProcess,
      };
      // Right after a removal the cluster may be electing a leader: ask again (a lost answer shows as "already exists").
      for (const deadline = Date.now() + HEALTH_TIMEOUT_MS; ; await sleep(500)) {
        try {
          await ctl(['member', 'add', fresh.name, `--peer-urls=${peerUrl}`], others);
          break;
        } catch (err) {
          if (String(err).includes('already exists')) break;
          if (Date.now() > deadline) throw err;
        }
      }
      members[i] = fresh;
      spawnMember(fresh, fresh.clientUrl, members.map((m) => `${m.name}=${m.advertisedPeerUrl}`).join(','));
      await rm(old.dataDir, { recursive: true, force: true });
      await waitHealthy(fresh, tls);
      return fresh.clientUrl;
    },
    async snapshot(file) {
      await ctl(['snapshot', 'save', file], [endpoints[0]!]);
    },
    async restoreSnapshot(file) {
      await Promise.all(members.map((m) => killMember(m)));
      for (const m of members) {
        const old = m.dataDir;
        m.dataDir = join(tmpdir(), `etcd-test-restored-${process.pid}-${Date.now()}-${m.name}`); // must not exist yet
        await ctl([
          'snapshot',
          'restore',
          file,
          `--name=${m.name}`,
          `--data-dir=${m.dataDir}`,
          `--initial-cluster=${initialCluster}`,
          `--initial-cluster-token=${token}`,
          `--initial-advertise-peer-urls=${m.advertisedPeerUrl}`,
        ]);
        await rm(old, { recursive: true, force: true });
      }
      members.forEach((m) => spawnMember(m));
      await Promise.all(members.map((m) => waitHealthy(m, tls)));
    },
    close: cleanup,
  };
}

export async function startEtcd(
  opts: {
    size?: 1 | 3;
    extraArgs?: string[];
    tls?: EtcdTls;
    routePeer?: PeerRoute;
    /** etcd's space quota (--quota-backend-bytes): past it etcd raises NOSPACE and refuses new data. */
    quotaBackendBytes?: number;
  } = {},
): Promise<EtcdCluster> {
  checkBinary();
  const size = opts.size ?? 1;
  const args = [...(opts.extraArgs ?? []), ...(opts.quotaBackendBytes ? [`--quota-backend-bytes=${opts.quotaBackendBytes}`] : [])];
  try {
    return await startOnce(size, args, opts.tls, opts.routePeer);
  } catch {
    // Another process may have taken a port between freePort() and etcd's bind: retry once.
    return await startOnce(size, args, opts.tls, opts.routePeer);
  }
}

/** etcd's current revision, asked of etcd itself. */
export async function storeRevision(etcd: EtcdCluster): Promise<number> {
  const out = JSON.parse(await etcd.ctl(['endpoint', 'status', '-w', 'json'])) as { Status: { header: { revision: number } } }[];
  return out[0]!.Status.header.revision;
}
