// The DNS settings: off unless DNS_PORT is set, loopback and `discovery` by
// default, and a bad value stops the start naming its variable.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';

test('DNS is off without DNS_PORT', () => {
  assert.equal(loadConfig({}).dns, undefined);
});

test('DNS_PORT alone: loopback, the domain `discovery`, records of 5 s', () => {
  assert.deepEqual(loadConfig({ DNS_PORT: '8600' }).dns, {
    port: 8600,
    host: '127.0.0.1',
    domain: 'discovery',
    ttlSeconds: 5,
    token: undefined,
  });
});

test('the domain is taken in lowercase, without a final dot', () => {
  assert.equal(loadConfig({ DNS_PORT: '53', DNS_DOMAIN: 'SD.Example.com.' }).dns?.domain, 'sd.example.com');
});

test('a bad DNS setting names its variable', () => {
  for (const [variable, value] of [
    ['DNS_PORT', '70000'],
    ['DNS_HOST', 'localhost'],
    ['DNS_DOMAIN', 'bad_domain'],
    ['DNS_DOMAIN', 'a..b'],
    ['DNS_TTL_SECONDS', '-1'],
  ] as const) {
    assert.throws(
      () => loadConfig({ DNS_PORT: '8600', [variable]: value }),
      (err: unknown) => err instanceof ConfigError && err.message.includes(variable),
      `${variable}=${value}`,
    );
  }
});
