// A gateway served over HTTPS with a certificate from a private CA: the client trusts it with
// `ca` (and refuses it without), and discovery-agent with `--ca-file`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DiscoveryClient, GatewayUnreachableError } from '../src/client/index.ts';
import { ROOT, exitOf, launch, tail } from './helpers/agents.ts';
import { makeCerts, type TestCerts } from './helpers/certs.ts';
import { eventually, startGateway, type TestGateway } from './helpers/gateway.ts';

describe('a gateway with a certificate from a private CA', { timeout: 60_000 }, () => {
  let certs: TestCerts;
  let gw: TestGateway;
  let ca: string;

  before(async () => {
    certs = await makeCerts();
    ca = await readFile(certs.ca.certFile, 'utf8');
    gw = await startGateway({ env: { TLS_CERT_FILE: certs.server.certFile, TLS_KEY_FILE: certs.server.keyFile } });
  });
  after(async () => {
    await gw?.close();
    await certs?.remove();
  });

  const instances = async (service: string) => {
    const client = new DiscoveryClient({ gateways: gw.base, ca });
    return (await client.discover(service)).instances.map((i) => i.id);
  };

  it('the client with `ca` registers, reads and watches; without it the certificate is refused', async () => {
    const client = new DiscoveryClient({ gateways: gw.base, ca });
    const watch = client.watch('tls');
    const registration = client.register({ service: 'tls', id: 't-1', address: '10.0.0.1', port: 443, ttl: 10 });
    try {
      await registration.registered();
      assert.deepEqual(await instances('tls'), ['t-1']);
      await eventually(async () => watch.instances('tls').length === 1, 10_000, 'the watch over HTTPS');
      const untrusting = new DiscoveryClient({ gateways: gw.base, timeoutMs: 2_000 });
      await assert.rejects(untrusting.discover('tls'), GatewayUnreachableError);
    } finally {
      watch.close();
      await registration.close();
    }
  });

  it('discovery-agent with --ca-file registers over HTTPS and deregisters on SIGTERM', async () => {
    const agent = launch(
      join(ROOT, 'bin', 'discovery-agent'),
      ['run', '--gateway', gw.base, '--ca-file', certs.ca.certFile, '--service', 'tls-agent', '--address', '10.0.0.2', '--port', '443'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const stderr = tail(agent.stderr);
    try {
      await eventually(async () => (await instances('tls-agent')).length === 1, 20_000, 'the agent to register');
      agent.kill('SIGTERM');
      assert.deepEqual(await exitOf(agent, 15_000), { code: 0, signal: null }, stderr.text());
      assert.deepEqual(await instances('tls-agent'), []);
    } finally {
      agent.kill('SIGKILL');
    }
  });
});
