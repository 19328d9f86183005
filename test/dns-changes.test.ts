// DNS answers are encoded once and kept until their service changes: every kind
// of change (a registration, a status change, a tag or port change, a
// deregistration) must show in the very next answer, for each name of the service
// asked before it (A and SRV, without and with a tag), as Node's resolver sees it.
import assert from 'node:assert/strict';
import { promises as dnsPromises } from 'node:dns';
import { after, before, test } from 'node:test';
import { startGateway, type TestGateway } from './helpers/gateway.ts';
import { dnsPort } from './helpers/dns.ts';

let gw: TestGateway;
let resolver: dnsPromises.Resolver;
before(async () => {
  gw = await startGateway({ env: { DNS_PORT: '0' } });
  resolver = new dnsPromises.Resolver({ timeout: 10_000, tries: 2 });
  resolver.setServers([`127.0.0.1:${await dnsPort(gw)}`]);
});
after(() => gw?.close());

/** The sorted answers, or the resolver's error code (ENOTFOUND for NXDOMAIN, ENODATA for no records). */
async function ask(lookup: () => Promise<string[]>): Promise<string[] | string> {
  try {
    return (await lookup()).sort();
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

/** Every name of the service `pay`, asked once each. */
async function names() {
  const srv = (name: string) => async () => (await resolver.resolveSrv(name)).map((r) => `${r.name}:${r.port}`);
  return {
    a: await ask(() => resolver.resolve4('pay.service.discovery')),
    srv: await ask(srv('_pay._tcp.service.discovery')),
    blueA: await ask(() => resolver.resolve4('blue.pay.service.discovery')),
    blueSrv: await ask(srv('_pay._blue.service.discovery')),
  };
}

async function change(method: string, path: string, body?: unknown): Promise<void> {
  const res = await gw.request(method, `/services/pay/instances/${path}`, body);
  assert.ok(res.status < 300, res.text);
}

const P1 = '0a060001.addr.discovery';
const P2 = '0a060002.addr.discovery';

test('each change to a service shows in the next answer of every name asked before it', async () => {
  await change('PUT', 'p1', { address: '10.6.0.1', port: 7001, tags: ['blue'] });
  assert.deepEqual(await names(), { a: ['10.6.0.1'], srv: [`${P1}:7001`], blueA: ['10.6.0.1'], blueSrv: [`${P1}:7001`] });

  await change('PUT', 'p2', { address: '10.6.0.2', port: 7002 });
  assert.deepEqual(await names(), {
    a: ['10.6.0.1', '10.6.0.2'],
    srv: [`${P1}:7001`, `${P2}:7002`],
    blueA: ['10.6.0.1'],
    blueSrv: [`${P1}:7001`],
  });

  // Draining: left out; the tag's name still exists, with no records.
  await change('PUT', 'p1/heartbeat', { status: 'draining' });
  assert.deepEqual(await names(), { a: ['10.6.0.2'], srv: [`${P2}:7002`], blueA: 'ENODATA', blueSrv: 'ENODATA' });

  await change('PUT', 'p1/heartbeat', { status: 'up' });
  assert.deepEqual((await names()).blueA, ['10.6.0.1']);

  // A tag given to p2, and p1 registered again without its tag and on another port.
  await change('PUT', 'p2', { address: '10.6.0.2', port: 7002, tags: ['Blue'] });
  assert.deepEqual((await names()).blueA, ['10.6.0.1', '10.6.0.2']);
  await change('PUT', 'p1', { address: '10.6.0.1', port: 7101 });
  assert.deepEqual(await names(), {
    a: ['10.6.0.1', '10.6.0.2'],
    srv: [`${P1}:7101`, `${P2}:7002`],
    blueA: ['10.6.0.2'],
    blueSrv: [`${P2}:7002`],
  });

  await change('DELETE', 'p2');
  assert.deepEqual(await names(), { a: ['10.6.0.1'], srv: [`${P1}:7101`], blueA: 'ENOTFOUND', blueSrv: 'ENOTFOUND' });

  await change('DELETE', 'p1');
  assert.deepEqual(await names(), { a: 'ENOTFOUND', srv: 'ENOTFOUND', blueA: 'ENOTFOUND', blueSrv: 'ENOTFOUND' });
});
