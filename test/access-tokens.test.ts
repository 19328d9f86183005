// Access control (API.md "Access control") as clients see it: tokens with per-service
// rights on every route and stream, 401 before any validation, AUTH_METRICS, a bad
// tokens file stopping the start, and no token in any log line.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { buildApp } from '../src/app.ts';
import { tokenDigest } from '../src/auth/tokens.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { instancePath, startGateway, type TestGateway } from './helpers/gateway.ts';
import { assertProblem, bearer, body, runMain, SECRET, tokensFixture } from './helpers/security.ts';
import { openSse, toChange } from './helpers/sse.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const tokens = tokensFixture();

describe('access tokens', () => {
  let gw: TestGateway;
  const logs: string[] = [];
  const as = (secret: string | undefined, method: string, path: string, payload?: unknown) =>
    gw.request(method, path, payload, secret ? bearer(secret) : {});

  before(async () => {
    gw = await startGateway({
      env: { AUTH_TOKENS_FILE: tokens.file, LOG_LEVEL: 'info' },
      deps: { logStream: { write: (line: string) => void logs.push(line) } },
    });
  });
  after(() => gw?.close());

  it('a missing token is 401 with WWW-Authenticate: Bearer, before any validation', async () => {
    for (const [method, path, payload] of [
      ['GET', '/services', undefined],
      ['GET', '/services/payments', undefined],
      ['PUT', instancePath('payments', 'a'), { port: 'not a number', extra: true }],
      ['PUT', instancePath('NOT A NAME', 'a'), '{not json'],
      ['POST', '/batch', { register: 'nope' }],
      ['GET', '/sd/prometheus', undefined],
    ] as const) {
      const r = await as(undefined, method, path, payload);
      assertProblem(r, 401, 'unauthorized');
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer\b/, `${method} ${path}`);
    }
  });

  it('an unknown token, or another scheme, is 401 invalid_token', async () => {
    const r = await as('not-a-token', 'GET', '/services');
    assertProblem(r, 401, 'unauthorized');
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer .*error="invalid_token"/);
    assertProblem(
      await gw.request('GET', '/services', undefined, { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }),
      401,
      'unauthorized',
    );
    // A prefix or an extension of a real token is no token.
    assertProblem(await as(SECRET.ops.slice(0, -1), 'GET', '/services'), 401, 'unauthorized');
    assertProblem(await as(`${SECRET.ops}x`, 'GET', '/services'), 401, 'unauthorized');
  });

  it('a read-only token reads but cannot write (403, even with a bad body)', async () => {
    assert.equal((await as(SECRET.dashboard, 'GET', '/services/payments')).status, 200);
    assertProblem(await as(SECRET.dashboard, 'PUT', instancePath('payments', 'a'), body()), 403, 'forbidden');
    assertProblem(await as(SECRET.dashboard, 'PUT', instancePath('payments', 'a'), { port: 'x' }), 403, 'forbidden');
    assertProblem(await as(SECRET.dashboard, 'DELETE', instancePath('payments', 'a')), 403, 'forbidden');
    assertProblem(await as(SECRET.dashboard, 'PUT', `${instancePath('payments', 'a')}/heartbeat`), 403, 'forbidden');
  });

  it('a payments* token uses payments and payments-eu, and gets 403 on orders', async () => {
    assert.equal((await as(SECRET.payments, 'PUT', instancePath('payments', 'p1'), body())).status, 201);
    assert.equal((await as(SECRET.payments, 'POST', '/services/payments-eu/instances', body({ port: 9090 }))).status, 201);
    assert.equal((await as(SECRET.payments, 'GET', '/services/payments-eu')).status, 200);
    assert.equal((await as(SECRET.payments, 'GET', instancePath('payments', 'p1'))).status, 200);
    assertProblem(await as(SECRET.payments, 'GET', '/services/orders'), 403, 'forbidden');
    assertProblem(await as(SECRET.payments, 'GET', instancePath('orders', 'o1')), 403, 'forbidden');
    assertProblem(await as(SECRET.payments, 'GET', '/services/orders/pick'), 403, 'forbidden');
    assertProblem(await as(SECRET.payments, 'PUT', instancePath('orders', 'o1'), body()), 403, 'forbidden');
    assertProblem(await as(SECRET.payments, 'GET', '/sd/prometheus?service=orders'), 403, 'forbidden');
  });

  it('a token stored as its SHA-256 works, with its own rights', async () => {
    assert.equal((await as(SECRET.orders, 'PUT', instancePath('orders', 'o1'), body())).status, 201);
    assert.equal((await as(SECRET.orders, 'GET', '/services/orders')).json.instances.length, 1);
    assertProblem(await as(SECRET.orders, 'GET', '/services/payments'), 403, 'forbidden');
    // The digest itself is not a token.
    assertProblem(await as(tokenDigest(SECRET.orders), 'GET', '/services/orders'), 401, 'unauthorized');
  });

  it('an admin token reads and writes every service', async () => {
    assert.equal((await as(SECRET.ops, 'PUT', instancePath('inventory', 'i1'), body())).status, 201);
    assert.equal((await as(SECRET.ops, 'GET', '/services/payments')).status, 200);
    assert.equal((await as(SECRET.ops, 'DELETE', instancePath('inventory', 'i1'))).status, 204);
  });

  it('GET /services and /sd/prometheus list only the services the token may read', async () => {
    const names = async (secret: string) => (await as(secret, 'GET', '/services')).json.services.map((s: { name: string }) => s.name);
    assert.deepEqual(await names(SECRET.ops), ['orders', 'payments', 'payments-eu']);
    assert.deepEqual(await names(SECRET.dashboard), ['orders', 'payments', 'payments-eu']);
    assert.deepEqual(await names(SECRET.payments), ['payments', 'payments-eu']);
    assert.deepEqual(await names(SECRET.orders), ['orders']);
    const sd = (await as(SECRET.payments, 'GET', '/sd/prometheus')).json as { labels: Record<string, string> }[];
    assert.deepEqual([...new Set(sd.map((t) => t.labels.__meta_discovery_service))].sort(), ['payments', 'payments-eu']);
  });

  it('a batch with one forbidden item is 403 and writes nothing', async () => {
    const register = [
      { service: 'payments', id: 'b1', ...body() },
      { service: 'orders', id: 'b2', ...body() },
    ];
    assertProblem(await as(SECRET.payments, 'POST', '/batch', { register }), 403, 'forbidden');
    assertProblem(
      await as(SECRET.payments, 'POST', '/batch', { register: [register[0]], deregister: [{ service: 'orders', id: 'o1' }] }),
      403,
      'forbidden',
    );
    assert.equal((await as(SECRET.ops, 'GET', instancePath('payments', 'b1'))).status, 404);
    assert.equal((await as(SECRET.ops, 'GET', instancePath('orders', 'o1'))).status, 200);
    assert.equal((await as(SECRET.payments, 'POST', '/batch', { register: [register[0]] })).status, 200);
  });

  it('probes, /metrics and the pages are open; an unknown path is still 404', async () => {
    for (const path of ['/health', '/health/live', '/health/ready', '/metrics', '/', '/openapi.json', '/docs']) {
      const r = await gw.request('GET', path);
      assert.ok(r.status === 200 || r.status === 302, `${path}: ${r.status}`);
    }
    assertProblem(await gw.request('GET', '/no/such/path'), 404, 'not-found');
  });

  it('streams: ?access_token= works, carries only readable services; a forbidden ?service= is 403', async () => {
    const all = await openSse(`${gw.base}/events?access_token=${SECRET.payments}`);
    const byHeader = await openSse(`${gw.base}/services/payments/events`, { headers: bearer(SECRET.payments) });
    try {
      assert.equal(all.status, 200);
      assert.equal(byHeader.status, 200);
      const snapshot = await all.waitFor((e) => e.event === 'snapshot');
      assert.deepEqual(Object.keys(JSON.parse(snapshot.data).services).sort(), ['payments', 'payments-eu']);
      await as(SECRET.ops, 'PUT', instancePath('orders', 'o9'), body());
      await as(SECRET.ops, 'PUT', instancePath('payments', 'p9'), body());
      const change = await all.waitFor((e) => toChange(e) !== undefined);
      assert.equal(toChange(change)!.service, 'payments', 'the orders change is not delivered');
      await byHeader.waitFor((e) => toChange(e)?.instanceId === 'p9');
    } finally {
      all.close();
      byHeader.close();
    }
    for (const url of [
      `/events?service=orders&access_token=${SECRET.payments}`,
      `/services/orders/events?access_token=${SECRET.payments}`,
    ]) {
      const s = await openSse(gw.base + url);
      assert.equal(s.status, 403, url);
      assert.equal(JSON.parse(s.body).code, 'forbidden');
      s.close();
    }
    const none = await openSse(`${gw.base}/events`);
    assert.equal(none.status, 401);
    none.close();
    // access_token is for streams only.
    assertProblem(await gw.request('GET', `/services?access_token=${SECRET.ops}`), 401, 'unauthorized');
  });

  it('logs never contain a token, from the header or from ?access_token=', async () => {
    await sleep(100); // the last request lines are written on response
    const text = logs.join('');
    assert.match(text, /access_token=\[redacted\]/, 'the stream URLs were logged, redacted');
    for (const secret of Object.values(SECRET)) assert.ok(!text.includes(secret), `a token leaked into the logs: ${secret}`);
    assert.doesNotMatch(text, /Bearer /);
  });
});

describe('tokens file and AUTH_METRICS', () => {
  it('AUTH_METRICS=true: /metrics needs a valid token (any), probes stay open', async () => {
    const gw = await startGateway({ env: { AUTH_TOKENS_FILE: tokens.file, AUTH_METRICS: 'true' } });
    try {
      assertProblem(await gw.request('GET', '/metrics'), 401, 'unauthorized');
      assert.equal((await gw.request('GET', '/metrics', undefined, bearer(SECRET.orders))).status, 200);
      assert.equal((await gw.request('GET', '/health/ready')).status, 200);
    } finally {
      await gw.close();
    }
  });

  it('a bad tokens file stops the start with a message naming AUTH_TOKENS_FILE', async () => {
    const bad: [string, string | undefined][] = [
      ['missing', undefined],
      ['invalid JSON', '{"tokens": ['],
      ['bad pattern', JSON.stringify({ tokens: [{ name: 'x', token: 't', read: ['pay*ments'] }] })],
      ['upper-case pattern', JSON.stringify({ tokens: [{ name: 'x', token: 't', write: ['Payments'] }] })],
      ['no secret', JSON.stringify({ tokens: [{ name: 'x', read: ['*'] }] })],
      ['bad digest', JSON.stringify({ tokens: [{ name: 'x', sha256: 'abc' }] })],
      ['unknown field', JSON.stringify({ tokens: [{ name: 'x', token: 't', reads: ['*'] }] })],
    ];
    for (const [what, text] of bad) {
      const file = join(tokens.dir, `bad-${what.replace(/\W/g, '-')}.json`);
      if (text !== undefined) await writeFile(file, text);
      await assert.rejects(
        buildApp(loadConfig({ AUTH_TOKENS_FILE: file, LOG_LEVEL: 'silent' })),
        (err: Error) => err instanceof ConfigError && /AUTH_TOKENS_FILE/.test(err.message),
        what,
      );
    }
    const r = await runMain({ AUTH_TOKENS_FILE: join(tokens.dir, 'bad-bad-pattern.json') });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /AUTH_TOKENS_FILE.*pay\*ments/);
  });

  it('without a tokens file the gateway is open and says so at start', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    try {
      for (const t0 = Date.now(); !/no AUTH_TOKENS_FILE/.test(out); await sleep(50)) {
        assert.ok(Date.now() - t0 < 20_000, `no open-gateway warning in: ${out}`);
      }
    } finally {
      child.kill('SIGTERM');
    }
  });
});
