// RATE_LIMIT_MAX (API.md "Running"): per token, per address without one, probes never
// counted, and failed token guesses counted against the address.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway, type TestGateway } from './helpers/gateway.ts';
import { assertProblem, bearer, SECRET, tokensFixture } from './helpers/security.ts';

const tokens = tokensFixture();

describe('rate limits', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ env: { AUTH_TOKENS_FILE: tokens.file, RATE_LIMIT_MAX: '3' }, deps: { rateLimitWindowMs: 1500 } });
  });
  after(() => gw?.close());

  it('past the limit a token gets 429 problem+json with Retry-After; other tokens and probes do not', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await gw.request('GET', '/services', undefined, bearer(SECRET.ops))).status, 200);
    const limited = await gw.request('GET', '/services', undefined, bearer(SECRET.ops));
    assertProblem(limited, 429, 'too-many-requests');
    const retryAfter = Number(limited.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 2, `Retry-After: ${limited.headers.get('retry-after')}`);
    assert.equal((await gw.request('GET', '/services', undefined, bearer(SECRET.dashboard))).status, 200, 'per token');
    for (let i = 0; i < 10; i++) {
      assert.equal((await gw.request('GET', '/health/ready')).status, 200);
      assert.equal((await gw.request('GET', '/metrics')).status, 200);
    }
    await sleep(retryAfter * 1000 + 100);
    assert.equal((await gw.request('GET', '/services', undefined, bearer(SECRET.ops))).status, 200, 'recovered after the window');
  });

  it('failed token guesses count against the client address', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 5; i++) codes.push((await gw.request('GET', '/services', undefined, bearer(`guess-${i}`))).status);
    assert.deepEqual(codes, [401, 401, 401, 429, 429]);
  });
});
