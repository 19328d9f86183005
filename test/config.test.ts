// A bad setting stops the start with a message naming the variable, and a non-zero exit.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';

describe('configuration', () => {
  it('defaults: port 8080 on 0.0.0.0, embedded store, prefix /services, ttl 30', () => {
    const c = loadConfig({});
    assert.equal(c.port, 8080);
    assert.equal(c.host, '0.0.0.0');
    assert.deepEqual(c.store, { kind: 'memory' });
    assert.equal(c.prefix, '/services');
    assert.equal(c.defaultTtlSeconds, 30);
    assert.equal(c.sseKeepAliveSeconds, 15);
    assert.equal(c.rateLimitMax, undefined);
  });

  it('ETCD_ENDPOINTS selects etcd with every endpoint', () => {
    const c = loadConfig({ ETCD_ENDPOINTS: 'http://10.0.0.1:2379, http://10.0.0.2:2379', ETCD_USERNAME: 'gw', ETCD_PASSWORD: 'pw' });
    assert.equal(c.store.kind, 'etcd');
    assert.deepEqual(c.store.kind === 'etcd' && c.store.endpoints, ['http://10.0.0.1:2379', 'http://10.0.0.2:2379']);
  });

  for (const [name, value] of [
    ['PORT', '70000'],
    ['PORT', 'eighty'],
    ['ETCD_ENDPOINTS', 'localhost:2379'],
    ['ETCD_PREFIX', 'services/'],
    ['LOG_LEVEL', 'loud'],
    ['DEFAULT_TTL_SECONDS', '90000'],
    ['SSE_KEEPALIVE_SECONDS', '0'],
    ['RATE_LIMIT_MAX', '-5'],
    ['AUTH_METRICS', 'yes'],
    ['CACHE_MAX_BYTES', '100'],
    ['CACHE_MAX_SERVICES', '10000'], // replaced by CACHE_MAX_BYTES: never silently ignored
  ] as const) {
    it(`${name}=${value} is refused, naming ${name}`, () => {
      assert.throws(
        () => loadConfig({ [name]: value }),
        (err: Error) => err instanceof ConfigError && err.message.includes(name),
      );
    });
  }

  it('every bad variable is named at once', () => {
    assert.throws(
      () => loadConfig({ PORT: 'x', LOG_LEVEL: 'y' }),
      (err: Error) => /PORT/.test(err.message) && /LOG_LEVEL/.test(err.message),
    );
  });

  for (const [name, value] of [
    ['PORT', 'not-a-port'],
    ['ETCD_ENDPOINTS', 'ftp://nowhere'],
  ] as const) {
    it(`the process exits non-zero naming ${name} when ${name}=${value}`, () => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        env: { ...process.env, [name]: value },
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(name));
    });
  }
});
