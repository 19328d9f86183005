// A real HAProxy load-balancing HTTP by the gateway's SRV records (resolvers +
// server-template): an instance registered starts getting traffic, one set to
// draining or deregistered stops, each within the record TTL plus HAProxy's
// `hold valid`, and no request fails while instances come and go.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { eventually, startGateway, type TestGateway } from './helpers/gateway.ts';
import { dnsPort } from './helpers/dns.ts';
import { freePort } from './helpers/ports.ts';

const HAPROXY = existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy';
const TTL_S = 1;
const HOLD_VALID_S = 1;
/** What the contract allows (TTL + hold valid), plus room for a CPU-starved machine to schedule HAProxy, the gateway and this test. */
const FOLLOW_BUDGET_MS = (TTL_S + HOLD_VALID_S) * 1000 + 8000;

let etcd: EtcdCluster;
let gw: TestGateway;
let haproxy: ChildProcess;
let frontend: string;
let haproxyLog = '';
const backends = new Map<string, http.Server>();

/** An HTTP server that answers its own name. */
async function backend(name: string): Promise<number> {
  const server = http.createServer((_req, res) => res.end(name));
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  backends.set(name, server);
  return (server.address() as AddressInfo).port;
}

const ports = new Map<string, number>();
const register = (name: string, status = 'up') =>
  gw.request('PUT', `/services/web/instances/${name}`, { address: '127.0.0.1', port: ports.get(name), status, ttl: 0 });

/** Requests one after the other through HAProxy, remembering who answered when, and every failure. */
class Traffic {
  readonly hits: { server: string; at: number }[] = [];
  readonly failures: string[] = [];
  private running = true;
  private readonly done: Promise<void>;

  constructor(url: string) {
    this.done = this.loop(url);
  }

  private async loop(url: string): Promise<void> {
    while (this.running) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(20_000) });
        const body = await res.text();
        if (res.status === 200) this.hits.push({ server: body, at: Date.now() });
        else this.failures.push(`${res.status} ${body.slice(0, 100)}`);
      } catch (err) {
        this.failures.push(String(err));
      }
    }
  }

  /** Servers that answered since `t`. */
  seenSince(t: number): Set<string> {
    return new Set(this.hits.filter((h) => h.at >= t).map((h) => h.server));
  }

  lastHit(server: string): number {
    for (let i = this.hits.length - 1; i >= 0; i--) if (this.hits[i]!.server === server) return this.hits[i]!.at;
    return 0;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

before(async () => {
  etcd = await startEtcd();
  gw = await startGateway({ etcd, env: { DNS_PORT: '0', DNS_TTL_SECONDS: String(TTL_S) } });
  for (const name of ['a', 'b', 'c']) ports.set(name, await backend(name));
  for (const name of ['a', 'b']) assert.ok((await register(name)).status < 300);

  const dir = mkdtempSync(join(tmpdir(), 'haproxy-'));
  const port = await freePort();
  frontend = `http://127.0.0.1:${port}/`;
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    `
global
  maxconn 100

defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch

resolvers gateway
  nameserver gw 127.0.0.1:${await dnsPort(gw)}
  accepted_payload_size 1232
  resolve_retries 3
  timeout resolve 200ms
  timeout retry 200ms
  hold valid ${HOLD_VALID_S}s
  hold obsolete 0s
  hold nx ${HOLD_VALID_S}s
  hold other ${HOLD_VALID_S}s

frontend web
  bind 127.0.0.1:${port}
  default_backend web

backend web
  balance roundrobin
  server-template web 5 _web._tcp.service.discovery resolvers gateway init-addr none
`,
  );
  haproxy = spawn(HAPROXY, ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'pipe'] });
  haproxy.stderr!.setEncoding('utf8').on('data', (text: string) => (haproxyLog += text)); // read, so the pipe never fills
  await eventually(
    async () => {
      if (haproxy.exitCode !== null) throw new Error(`haproxy exited with ${haproxy.exitCode}: ${haproxyLog}`);
      return fetch(frontend).then(
        (r) => r.status === 200 && r.text().then((t) => t === 'a' || t === 'b'),
        () => false,
      );
    },
    60_000,
    'HAProxy to route to a registered instance',
  );
});

after(async () => {
  haproxy?.kill('SIGTERM');
  if (haproxy && haproxy.exitCode === null) await once(haproxy, 'exit');
  for (const server of backends.values()) {
    server.closeAllConnections();
    server.close();
  }
  await gw?.close();
  await etcd?.close();
});

test('HAProxy follows registrations, draining and deregistrations from SRV records, with no failed request', async (t) => {
  const traffic = new Traffic(frontend);
  try {
    await eventually(async () => traffic.seenSince(0).size === 2, 60_000, 'traffic to both a and b');

    // A new instance gets traffic.
    const registered = Date.now();
    await register('c');
    await eventually(async () => traffic.seenSince(registered).has('c'), FOLLOW_BUDGET_MS, 'traffic to c after its registration');
    const started = traffic.hits.find((h) => h.server === 'c' && h.at >= registered)!.at - registered;

    // A draining instance stops getting traffic (its server still answers: nothing fails meanwhile).
    const drained = Date.now();
    await register('b', 'draining');
    await eventually(
      async () => traffic.seenSince(traffic.lastHit('b') + 1).size >= 2 && Date.now() - traffic.lastHit('b') > 2000,
      60_000,
      'b to leave',
    );
    const bStopped = traffic.lastHit('b') - drained;

    // A deregistered instance stops too.
    const deregistered = Date.now();
    assert.equal((await gw.request('DELETE', '/services/web/instances/a')).status, 204);
    await eventually(
      async () => Date.now() - traffic.lastHit('a') > 2000 && traffic.seenSince(traffic.lastHit('a') + 1).has('c'),
      60_000,
      'a to leave',
    );
    const aStopped = traffic.lastHit('a') - deregistered;

    // Only c is left, and it takes everything.
    const settled = Date.now();
    await eventually(async () => traffic.hits.filter((h) => h.at >= settled).length >= 20, 60_000, 'twenty more requests');
    assert.deepEqual([...traffic.seenSince(settled)], ['c']);

    for (const [what, ms] of [
      ['registered c got traffic after', started],
      ['draining b got its last request', bStopped],
      ['deregistered a got its last request', aStopped],
    ] as const) {
      t.diagnostic(`${what} ${ms} ms`);
      assert.ok(ms <= FOLLOW_BUDGET_MS, `${what} ${ms} ms (budget ${FOLLOW_BUDGET_MS} ms); HAProxy said: ${haproxyLog}`);
    }
  } finally {
    await traffic.stop();
  }
  assert.deepEqual(traffic.failures, [], 'every request through HAProxy succeeded');
  assert.ok(traffic.hits.length > 50, `${traffic.hits.length} requests`);
});
