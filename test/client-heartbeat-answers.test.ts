// How the client and the agent treat what a gateway answers to a registration and its
// heartbeats: the first heartbeat comes after the registration's `interval` (not a guess from
// the TTL), and a heartbeat refused 401 or 403 stops them with a clear reason (the agent exits
// 1) instead of being retried for ever. The gateway here is a stub that answers as told.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DiscoveryClient, type RegistrationEvent } from '../src/client/index.ts';
import { ROOT, exitOf, launch, tail } from './helpers/agents.ts';
import { eventually } from './helpers/gateway.ts';

/** A gateway stub: registrations answer `interval: 0.3` with ttl 30; heartbeats answer `heartbeatStatus`. */
class StubGateway {
  readonly calls: { method: string; path: string; at: number }[] = [];
  heartbeatStatus = 403;
  #server: Server | undefined;
  base = '';

  async start(): Promise<void> {
    this.#server = createServer((req, res) => {
      this.calls.push({ method: req.method!, path: req.url!, at: Date.now() });
      req.resume();
      const [, , service, , id, beat] = req.url!.split('/');
      if (req.method === 'PUT' && beat === undefined) {
        const instance = { service, id, address: '127.0.0.1', port: 1, tags: [], metadata: {}, weight: 100, status: 'up', ttl: 30 };
        res.writeHead(201, { 'content-type': 'application/json', 'x-registry-revision': '7' });
        res.end(JSON.stringify({ ...instance, registeredAt: new Date().toISOString(), revision: 7, interval: 0.3 }));
      } else if (req.method === 'PUT') {
        const code = this.heartbeatStatus === 401 ? 'unauthorized' : 'forbidden';
        res.writeHead(this.heartbeatStatus, { 'content-type': 'application/problem+json' });
        res.end(JSON.stringify({ type: 'about:blank', title: code, status: this.heartbeatStatus, detail: 'token revoked', code }));
      } else {
        res.writeHead(204).end();
      }
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  heartbeats(): { at: number }[] {
    return this.calls.filter((c) => c.path.endsWith('/heartbeat'));
  }

  registeredAt(): number {
    return this.calls.find((c) => c.method === 'PUT' && !c.path.endsWith('/heartbeat'))!.at;
  }

  close(): Promise<void> {
    this.#server?.closeAllConnections();
    return new Promise((resolve) => this.#server?.close(() => resolve()) ?? resolve());
  }
}

describe('answers to registrations and heartbeats', { timeout: 60_000 }, () => {
  let stub: StubGateway;
  before(async () => {
    stub = new StubGateway();
    await stub.start();
  });
  after(() => stub.close());

  it("the client's first heartbeat follows the registration's interval, and a 403 heartbeat stops the registration", async () => {
    stub.calls.length = 0;
    const events: RegistrationEvent[] = [];
    const client = new DiscoveryClient({ gateways: stub.base });
    const registration = client.register(
      { service: 'pay', id: 'p-1', address: '127.0.0.1', port: 1, ttl: 30 },
      { onEvent: (e) => events.push(e) },
    );
    await registration.registered();
    await eventually(async () => registration.state === 'refused', 10_000, `the registration to stop: ${JSON.stringify(events)}`);
    const [first] = stub.heartbeats();
    assert.ok(first!.at - stub.registeredAt() < 5_000, 'the first heartbeat came after about 0.3 s, not after a third of the TTL (10 s)');
    const refused = events.find((e) => e.type === 'refused');
    assert.ok(refused?.type === 'refused' && refused.during === 'heartbeat' && refused.error.status === 403, JSON.stringify(events));
    assert.equal(stub.heartbeats().length, 1, 'no retry of a refused heartbeat');
    assert.equal(await registration.close(), false, 'nothing to deregister with a refused token');
  });

  it('the agent exits 1 and says why when a heartbeat is refused 401, after stopping CMD', async () => {
    stub.calls.length = 0;
    stub.heartbeatStatus = 401;
    const cmd = "process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1000);";
    const agent = launch(
      join(ROOT, 'bin', 'discovery-agent'),
      [
        'run',
        '--gateway',
        stub.base,
        '--service',
        'pay',
        '--id',
        'p-2',
        '--address',
        '127.0.0.1',
        '--port',
        '1',
        '--ttl',
        '30',
        '--',
        process.execPath,
        '-e',
        cmd,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const stderr = tail(agent.stderr);
    try {
      assert.deepEqual(await exitOf(agent, 30_000), { code: 1, signal: null }, stderr.text());
      assert.match(stderr.text(), /refused a heartbeat of pay\/p-2 \(HTTP 401 unauthorized: token revoked\): stopping/);
      assert.ok(stub.heartbeats()[0]!.at - stub.registeredAt() < 5_000, 'first heartbeat at the registration interval');
    } finally {
      agent.kill('SIGKILL');
    }
  });
});
