// TRUST_PROXY: behind a trusted proxy the rate limit keys on the client address it
// reports in X-Forwarded-For; otherwise on the socket address, whatever the header says.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';
import { startGateway } from './helpers/gateway.ts';

/** A gateway on the embedded store allowing two requests a minute per client (this test's requests come from 127.0.0.1). */
const limited = (env: Record<string, string> = {}) => startGateway({ env: { RATE_LIMIT_MAX: '2', ...env } });
const from = (chain: string) => ({ 'x-forwarded-for': chain });

describe('TRUST_PROXY', () => {
  for (const trust of ['127.0.0.0/8, ::1', '1', 'true']) {
    test(`TRUST_PROXY=${trust}: two clients behind the proxy get a bucket each`, async () => {
      const gw = await limited({ TRUST_PROXY: trust });
      try {
        const statuses = async (chain: string, n: number) => {
          const out: number[] = [];
          for (let i = 0; i < n; i++) out.push((await gw.request('GET', '/services', undefined, from(chain))).status);
          return out;
        };
        assert.deepEqual(await statuses('203.0.113.1', 3), [200, 200, 429]);
        assert.deepEqual(await statuses('203.0.113.2', 2), [200, 200], 'another client, another bucket');
        // A client that sends its own X-Forwarded-For cannot pose as another: the proxy
        // appends the address it saw, and that one counts (true believes every hop: docs/security.md).
        if (trust !== 'true') assert.deepEqual(await statuses('198.51.100.7, 203.0.113.1', 1), [429]);
      } finally {
        await gw.close();
      }
    });
  }

  test('without TRUST_PROXY, X-Forwarded-For is ignored: the socket address is the key', async () => {
    for (const env of [{}, { TRUST_PROXY: '10.0.0.0/8' }] as Record<string, string>[]) {
      const gw = await limited(env);
      try {
        assert.equal((await gw.request('GET', '/services', undefined, from('203.0.113.1'))).status, 200);
        assert.equal((await gw.request('GET', '/services', undefined, from('203.0.113.2'))).status, 200);
        const third = await gw.request('GET', '/services', undefined, from('203.0.113.3'));
        assert.equal(third.status, 429, `${JSON.stringify(env)}: a fresh header bought a fresh allowance`);
      } finally {
        await gw.close();
      }
    }
  });

  test('a bad TRUST_PROXY stops the start, naming the variable', () => {
    for (const bad of ['maybe', '10.0.0.0/33', '300.1.1.1', '10.0.0.1,,10.0.0.2', '10.0.0.1/8/8', 'proxy.example', '100']) {
      assert.throws(
        () => loadConfig({ TRUST_PROXY: bad }),
        (err: Error) => err instanceof ConfigError && /TRUST_PROXY/.test(err.message),
        bad,
      );
    }
    assert.equal(loadConfig({}).trustProxy, false);
    assert.equal(loadConfig({ TRUST_PROXY: 'true' }).trustProxy, true);
    assert.equal(loadConfig({ TRUST_PROXY: '2' }).trustProxy, 2);
    assert.deepEqual(loadConfig({ TRUST_PROXY: '10.0.0.0/8, fd00::/8,loopback' }).trustProxy, ['10.0.0.0/8', 'fd00::/8', 'loopback']);
  });
});
