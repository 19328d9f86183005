// The client through gateway restarts, as a service sees them: a process that only watches
// stays alive through a rolling restart of two gateways and sees every change once, in order,
// then exits by itself when its loop ends; an instance with `ttl: 10` outlives a 4 s restart of
// its only gateway without expiring.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { DiscoveryClient, type RegistrationEvent } from '../src/client/index.ts';
import { ROOT, cleanUp, exitOf, launch, tail, tempDir } from './helpers/agents.ts';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { call, eventually, uniquePrefix } from './helpers/gateway.ts';
import { freePort } from './helpers/ports.ts';

/** A gateway on a port of our choosing, so that a restart comes back at the same URL. */
class RestartableGateway {
  #app: FastifyInstance | undefined;
  private constructor(
    readonly base: string,
    private readonly port: number,
    private readonly env: Record<string, string>,
  ) {}

  static async start(etcd: EtcdCluster, prefix: string): Promise<RestartableGateway> {
    const port = await freePort();
    const env = { LOG_LEVEL: 'silent', ETCD_ENDPOINTS: etcd.endpoints.join(','), ETCD_PREFIX: prefix };
    const gateway = new RestartableGateway(`http://127.0.0.1:${port}`, port, env);
    await gateway.up();
    return gateway;
  }

  async up(): Promise<void> {
    this.#app = await buildApp(loadConfig(this.env));
    await this.#app.listen({ port: this.port, host: '127.0.0.1' });
  }

  /** As on SIGTERM: stop accepting, end the change streams, close. */
  async down(): Promise<void> {
    await this.#app?.close();
    this.#app = undefined;
  }

  put(service: string, id: string, body: Record<string, unknown> = {}) {
    return call(this.base, 'PUT', `/services/${service}/instances/${id}`, { address: '10.0.0.1', port: 80, ...body });
  }
}

describe('the client through gateway restarts', { timeout: 150_000 }, () => {
  let etcd: EtcdCluster;
  let a: RestartableGateway;
  let b: RestartableGateway;

  before(async () => {
    etcd = await startEtcd();
    const prefix = uniquePrefix('restarts');
    a = await RestartableGateway.start(etcd, prefix);
    b = await RestartableGateway.start(etcd, prefix);
  });
  after(async () => {
    await a?.down();
    await b?.down();
    await etcd?.close();
    await cleanUp();
  });

  it('a process that only iterates a watch survives a rolling restart, sees each change once in order, then exits when its loop ends', async () => {
    const dir = await tempDir();
    const script = join(dir, 'watch-only.mts');
    await writeFile(
      script,
      `import { DiscoveryClient } from ${JSON.stringify(join(ROOT, 'src/client/index.ts'))};
const client = new DiscoveryClient({ gateways: process.env.GATEWAYS!.split(',') });
for await (const event of client.watch('hello', { backoffMaxMs: 1000 })) {
  console.log(event.type === 'snapshot' ? 'snapshot' : \`\${event.type} \${event.id}\`);
  if (event.type === 'register' && event.id === 'last') break;
}
console.log('done');
`,
    );
    const child = launch(process.execPath, ['--import', 'tsx', script], {
      cwd: ROOT,
      env: { ...process.env, GATEWAYS: `${a.base},${b.base}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = tail(child.stdout);
    const err = tail(child.stderr);
    const lines = () => out.text().split('\n').filter(Boolean);
    const seen = (line: string) => eventually(async () => lines().includes(line), 30_000, `${line}; output: ${out.text()}${err.text()}`);
    try {
      await seen('snapshot');
      await a.put('hello', 'one');
      await seen('register one');
      await a.down(); // the watch's stream ends; it resumes on b
      await b.put('hello', 'two');
      await seen('register two');
      await a.up();
      await b.down(); // and back to a
      await a.put('hello', 'three');
      await seen('register three');
      await b.up();
      await a.put('hello', 'last');
      assert.deepEqual(await exitOf(child, 20_000), { code: 0, signal: null }, out.text() + err.text());
      assert.deepEqual(lines(), ['snapshot', 'register one', 'register two', 'register three', 'register last', 'done']);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('an instance with ttl 10 outlives a 4 s restart of its only gateway: no expiry, no second registration', async () => {
    const client = new DiscoveryClient({ gateways: a.base });
    const events: RegistrationEvent[] = [];
    const registration = client.register(
      { service: 'steady', address: '10.0.0.2', port: 8080, ttl: 10 },
      { onEvent: (e) => events.push(e) },
    );
    const first = await registration.registered();
    try {
      // The worst moment: just before the next heartbeat is due (about 2.8-3.3 s after the last).
      const beats = async () =>
        Number(/^discovery_heartbeats_total\{[^}]*result="ok"[^}]*\} (\d+)/m.exec((await call(a.base, 'GET', '/metrics')).text)?.[1] ?? 0);
      const before = await beats();
      await eventually(async () => (await beats()) > before, 15_000, 'a heartbeat');
      await sleep(2_500);
      await a.down();
      await sleep(4_000); // the restart
      await a.up();
      await eventually(
        async () => events.some((e) => e.type === 'reachable'),
        15_000,
        `the registration to reach the gateway again: ${JSON.stringify(events)}`,
      );
      assert.ok(!events.some((e) => e.type === 'registered' && e.again), `registered again: ${JSON.stringify(events)}`);
      const now = (await call(a.base, 'GET', '/services/steady/instances/10.0.0.2:8080')).json;
      assert.equal(now.registeredAt, first.registeredAt, 'the same registration, never expired');
    } finally {
      await registration.close();
    }
  });
});
