// SIGTERM while a write waits on a slow store: the write's answer is delivered, the
// process exits 0, and the drain does not pass for a lagging store watch. The gateway
// runs as `npm start` does (src/main.ts, its own process), on a real etcd.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import { type EtcdCluster, startEtcd } from './helpers/etcd.ts';
import { call, eventually, instanceBody as instance, uniquePrefix } from './helpers/gateway.ts';
import { freePort } from './helpers/ports.ts';
import { ConfigError, loadConfig } from '../src/config.ts';

/** Longer than the old fixed 3 s drain, shorter than one store call deadline (ETCD_TIMEOUT_MS 5 s). */
const FREEZE_MS = 4000;

let etcd: EtcdCluster;
let gateway: ChildProcess | undefined;
before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  etcd?.cont(0);
  gateway?.kill('SIGKILL');
  await etcd?.close();
});

test('a write in flight when SIGTERM arrives is answered, and the gateway exits 0 without restarting its watch', async () => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: String(port),
      ETCD_ENDPOINTS: etcd.endpoints.join(','),
      ETCD_PREFIX: uniquePrefix('drain'),
      ETCD_TIMEOUT_MS: '5000',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  gateway = proc;
  let log = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (log += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d));
  const exited = new Promise<number | null>((ok) => proc.once('exit', (code) => ok(code)));
  await eventually(
    async () => {
      if (proc.exitCode !== null) throw new Error(`gateway exited with ${proc.exitCode}: ${log}`);
      return (await call(base, 'GET', '/health/ready').catch(() => undefined))?.status === 200;
    },
    30_000,
    'the gateway to be ready',
  );
  assert.equal((await call(base, 'PUT', '/services/drain/instances/warm', instance('10.4.0.1', 1, { ttl: 0 }))).status, 201);

  etcd.stop(0);
  let thawed = false;
  const thaw = setTimeout(() => {
    etcd.cont(0);
    thawed = true;
  }, FREEZE_MS);
  try {
    const write = call(base, 'PUT', '/services/drain/instances/late', instance('10.4.0.2', 2, { ttl: 0 }));
    // Another request answered after the write was sent: the gateway has taken the write in.
    assert.equal((await call(base, 'GET', '/health/live')).status, 200);
    proc.kill('SIGTERM');

    const answer = await write;
    assert.ok(thawed, 'the write waited for the frozen store');
    assert.equal(answer.status, 201, answer.text);
    assert.equal(answer.json.id, 'late');
    let noExit: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      new Promise((_, ko) => (noExit = setTimeout(() => ko(new Error(`no exit: ${log}`)), 20_000))),
    ]);
    clearTimeout(noExit);
    assert.equal(code, 0, log);
  } finally {
    clearTimeout(thaw);
    etcd.cont(0);
  }
  assert.match(log, /draining/);
  assert.doesNotMatch(log, /restarting the store watch|reloading the cache/, 'shutting down is not a lagging watch');
  const stored = await etcd.ctl(['get', '--prefix', '--keys-only', '/']);
  assert.match(stored, /\/drain\/late/);
});

test("the drain covers a registration's two store calls and the wait for the watch, and SHUTDOWN_GRACE_SECONDS must outlast it", () => {
  const etcdEnv = { ETCD_ENDPOINTS: 'http://127.0.0.1:2379' };
  assert.equal(loadConfig(etcdEnv).drainMs, 14_000);
  assert.equal(loadConfig({ ...etcdEnv, ETCD_TIMEOUT_MS: '4000' }).drainMs, 12_000);
  assert.equal(loadConfig(etcdEnv).shutdownGraceSeconds, 15);
  assert.equal(loadConfig({ ...etcdEnv, SHUTDOWN_GRACE_SECONDS: '20' }).shutdownGraceSeconds, 20);
  for (const env of [
    { ...etcdEnv, SHUTDOWN_GRACE_SECONDS: '14' },
    { ...etcdEnv, ETCD_TIMEOUT_MS: '20000' },
  ]) {
    assert.throws(
      () => loadConfig(env),
      (err: Error) => err instanceof ConfigError && /SHUTDOWN_GRACE_SECONDS/.test(err.message),
    );
  }
});
