// Security (API.md "Access control" and "Running"), as clients and operators see
// it, on real etcd processes: tokens with per-service rights, HTTPS serving, etcd
// over TLS with client certificates, etcd auth with a least-privilege user, rate
// limits, request timeouts that spare streams and blocking queries, security
// headers, and no secrets in logs. Certificates are made with openssl per run.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { buildApp } from '../src/app.ts';
import { tokenDigest } from '../src/auth/tokens.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { makeCerts, type TestCerts } from './helpers/certs.ts';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { startGateway, uniquePrefix, type Answer, type TestGateway } from './helpers/gateway.ts';
import { openSse, toChange } from './helpers/sse.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const SECRET = {
  ops: 'ops-secret-0f5b9c',
  dashboard: 'dashboard-secret-77e1',
  payments: 'payments-secret-a41d',
  orders: 'orders-secret-5c2e', // stored only as its SHA-256
};
const TOKENS_FILE = {
  tokens: [
    { name: 'ops', token: SECRET.ops, admin: true },
    { name: 'dashboard', token: SECRET.dashboard, read: ['*'], write: [] },
    { name: 'payments-ci', token: SECRET.payments, read: ['payments*'], write: ['payments*'] },
    { name: 'orders-agent', sha256: tokenDigest(SECRET.orders), read: ['orders'], write: ['orders'] },
  ],
};
const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });
const inst = (svc: string, id: string) => `/services/${svc}/instances/${id}`;
const body = (extra: Record<string, unknown> = {}) => ({ address: '10.0.0.1', port: 8080, ttl: 0, ...extra });

function assertProblem(r: Answer, status: number, code: string): void {
  assert.equal(r.status, status, r.text);
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(r.json.code, code, r.text);
  assert.doesNotMatch(r.text, /\n\s+at |node_modules|127\.0\.0\.1:\d+/, 'no stack trace or internal address in an answer');
}

/** GET over https trusting `ca` (fetch cannot take a CA on Node 20). */
function httpsGet(url: string, ca: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((ok, ko) => {
    https
      .get(url, { ca, timeout: 5000 }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => ok({ status: res.statusCode ?? 0, text }));
      })
      .on('error', ko);
  });
}

/** `node --import tsx src/main.ts` with these settings: how it ended, and what it said. */
function runMain(
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<{ code: number | null; stderr: string; stdout: string; ms: number }> {
  const t0 = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((ok) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      ok({ code, stderr, stdout, ms: Date.now() - t0 });
    }),
  );
}

let certs: TestCerts;
let etcd: EtcdCluster;
let dir: string;
let tokensFile: string;

before(async () => {
  [certs, etcd, dir] = await Promise.all([makeCerts(), startEtcd(), mkdtemp(join(tmpdir(), 'gw-sec-'))]);
  tokensFile = join(dir, 'tokens.json');
  await writeFile(tokensFile, JSON.stringify(TOKENS_FILE));
});
after(async () => {
  await etcd?.close();
  await certs?.remove();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('access tokens', () => {
  let gw: TestGateway;
  const logs: string[] = [];
  const as = (secret: string | undefined, method: string, path: string, payload?: unknown) =>
    gw.request(method, path, payload, secret ? bearer(secret) : {});

  before(async () => {
    gw = await startGateway({
      etcd,
      env: { AUTH_TOKENS_FILE: tokensFile, LOG_LEVEL: 'info' },
      deps: { logStream: { write: (line: string) => void logs.push(line) } },
    });
  });
  after(() => gw?.close());

  it('a missing token is 401 with WWW-Authenticate: Bearer, before any validation', async () => {
    for (const [method, path, payload] of [
      ['GET', '/services', undefined],
      ['GET', '/services/payments', undefined],
      ['PUT', inst('payments', 'a'), { port: 'not a number', extra: true }],
      ['PUT', inst('NOT A NAME', 'a'), '{not json'],
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
    assertProblem(await as(SECRET.dashboard, 'PUT', inst('payments', 'a'), body()), 403, 'forbidden');
    assertProblem(await as(SECRET.dashboard, 'PUT', inst('payments', 'a'), { port: 'x' }), 403, 'forbidden');
    assertProblem(await as(SECRET.dashboard, 'DELETE', inst('payments', 'a')), 403, 'forbidden');
    assertProblem(await as(SECRET.dashboard, 'PUT', `${inst('payments', 'a')}/heartbeat`), 403, 'forbidden');
  });

  it('a payments* token uses payments and payments-eu, and gets 403 on orders', async () => {
    assert.equal((await as(SECRET.payments, 'PUT', inst('payments', 'p1'), body())).status, 201);
    assert.equal((await as(SECRET.payments, 'POST', '/services/payments-eu/instances', body({ port: 9090 }))).status, 201);
    assert.equal((await as(SECRET.payments, 'GET', '/services/payments-eu')).status, 200);
    assert.equal((await as(SECRET.payments, 'GET', inst('payments', 'p1'))).status, 200);
    assertProblem(await as(SECRET.payments, 'GET', '/services/orders'), 403, 'forbidden');
    assertProblem(await as(SECRET.payments, 'GET', inst('orders', 'o1')), 403, 'forbidden');
    assertProblem(await as(SECRET.payments, 'GET', '/services/orders/pick'), 403, 'forbidden');
    assertProblem(await as(SECRET.payments, 'PUT', inst('orders', 'o1'), body()), 403, 'forbidden');
    assertProblem(await as(SECRET.payments, 'GET', '/sd/prometheus?service=orders'), 403, 'forbidden');
  });

  it('a token stored as its SHA-256 works, with its own rights', async () => {
    assert.equal((await as(SECRET.orders, 'PUT', inst('orders', 'o1'), body())).status, 201);
    assert.equal((await as(SECRET.orders, 'GET', '/services/orders')).json.instances.length, 1);
    assertProblem(await as(SECRET.orders, 'GET', '/services/payments'), 403, 'forbidden');
    // The digest itself is not a token.
    assertProblem(await as(tokenDigest(SECRET.orders), 'GET', '/services/orders'), 401, 'unauthorized');
  });

  it('an admin token reads and writes every service', async () => {
    assert.equal((await as(SECRET.ops, 'PUT', inst('inventory', 'i1'), body())).status, 201);
    assert.equal((await as(SECRET.ops, 'GET', '/services/payments')).status, 200);
    assert.equal((await as(SECRET.ops, 'DELETE', inst('inventory', 'i1'))).status, 204);
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
    assert.equal((await as(SECRET.ops, 'GET', inst('payments', 'b1'))).status, 404);
    assert.equal((await as(SECRET.ops, 'GET', inst('orders', 'o1'))).status, 200);
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
      await as(SECRET.ops, 'PUT', inst('orders', 'o9'), body());
      await as(SECRET.ops, 'PUT', inst('payments', 'p9'), body());
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
    const gw = await startGateway({ etcd, env: { AUTH_TOKENS_FILE: tokensFile, AUTH_METRICS: 'true' } });
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
      const file = join(dir, `bad-${what.replace(/\W/g, '-')}.json`);
      if (text !== undefined) await writeFile(file, text);
      await assert.rejects(
        buildApp(loadConfig({ AUTH_TOKENS_FILE: file, LOG_LEVEL: 'silent' })),
        (err: Error) => err instanceof ConfigError && /AUTH_TOKENS_FILE/.test(err.message),
        what,
      );
    }
    const r = await runMain({ AUTH_TOKENS_FILE: join(dir, 'bad-bad-pattern.json') });
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

describe('HTTPS serving', () => {
  it('TLS_CERT_FILE/TLS_KEY_FILE serve the API over https', async () => {
    const gw = await startGateway({ etcd, env: { TLS_CERT_FILE: certs.server.certFile, TLS_KEY_FILE: certs.server.keyFile } });
    try {
      assert.match(gw.base, /^https:/);
      const r = await httpsGet(`${gw.base}/health/ready`, readFileSync(certs.ca.certFile));
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.text).status, 'ok');
      await assert.rejects(httpsGet(`${gw.base}/health/ready`, readFileSync(certs.otherCa.certFile)), /certificate/);
      await assert.rejects(fetch(gw.base.replace('https:', 'http:') + '/health/ready', { signal: AbortSignal.timeout(3000) }));
    } finally {
      await gw.close();
    }
  });
});

describe('etcd over TLS with client certificates', () => {
  let secure: EtcdCluster;
  before(async () => {
    secure = await startEtcd({
      tls: { caFile: certs.ca.certFile, certFile: certs.server.certFile, keyFile: certs.server.keyFile, clientCert: certs.client },
    });
  });
  after(() => secure?.close());

  it('the gateway works with the right CA, certificate and key', async () => {
    assert.match(secure.endpoints[0]!, /^https:/);
    const gw = await startGateway({
      etcd: secure,
      env: { ETCD_CA_FILE: certs.ca.certFile, ETCD_CERT_FILE: certs.client.certFile, ETCD_KEY_FILE: certs.client.keyFile },
    });
    try {
      assert.equal((await gw.request('PUT', inst('payments', 'tls1'), body())).status, 201);
      assert.equal((await gw.request('GET', '/services/payments')).json.instances.length, 1);
      assert.equal((await gw.request('GET', '/health/ready')).status, 200);
      assert.match(await secure.ctl(['get', `${gw.prefix}/payments/tls1`]), /tls1/);
    } finally {
      await gw.close();
    }
  });

  it('a wrong CA, or no client certificate, fails the start at once with a clear message', async () => {
    const common = { ETCD_ENDPOINTS: secure.endpoints.join(','), ETCD_PREFIX: uniquePrefix('tls') };
    const [wrongCa, noCert] = await Promise.all([
      runMain({
        ...common,
        ETCD_CA_FILE: certs.otherCa.certFile,
        ETCD_CERT_FILE: certs.client.certFile,
        ETCD_KEY_FILE: certs.client.keyFile,
      }),
      runMain({ ...common, ETCD_CA_FILE: certs.ca.certFile }),
    ]);
    assert.equal(wrongCa.code, 1, wrongCa.stderr);
    assert.match(wrongCa.stderr, /cannot start: .*certificate is not trusted.*ETCD_CA_FILE/);
    assert.ok(wrongCa.ms < 15_000, `took ${wrongCa.ms} ms`);
    assert.equal(noCert.code, 1, noCert.stderr);
    assert.match(noCert.stderr, /cannot start: .*client certificate.*ETCD_CERT_FILE/);
    assert.ok(noCert.ms < 15_000, `took ${noCert.ms} ms`);
  });
});

describe('etcd auth with a least-privilege gateway user', () => {
  let locked: EtcdCluster;
  const prefix = uniquePrefix('auth');
  const root = ['--user=root:root-pw'];
  before(async () => {
    locked = await startEtcd();
    // The set-up docs/security.md gives operators.
    await locked.ctl(['user', 'add', 'root:root-pw']);
    await locked.ctl(['role', 'add', 'gateway']);
    await locked.ctl(['role', 'grant-permission', 'gateway', '--prefix=true', 'readwrite', `${prefix}/`]);
    await locked.ctl(['user', 'add', 'gateway:gw-pw']);
    await locked.ctl(['user', 'grant-role', 'gateway', 'gateway']);
    await locked.ctl(['auth', 'enable']);
  });
  after(() => locked?.close());

  it('the gateway works with readwrite on its prefix only', async () => {
    const gw = await startGateway({ etcd: locked, prefix, env: { ETCD_USERNAME: 'gateway', ETCD_PASSWORD: 'gw-pw' } });
    const stream = await openSse(`${gw.base}/services/payments/events`);
    try {
      assert.equal((await gw.request('PUT', inst('payments', 'a1'), body({ ttl: 30 }))).status, 201);
      assert.equal((await gw.request('PUT', `${inst('payments', 'a1')}/heartbeat`)).status, 200);
      assert.equal((await gw.request('GET', '/services/payments?consistent=true')).json.instances.length, 1);
      await stream.waitFor((e) => toChange(e)?.type === 'register');
      assert.equal((await gw.request('DELETE', inst('payments', 'a1'))).status, 204);
      const gone = await stream.waitFor((e) => toChange(e)?.type === 'deregister');
      assert.equal(JSON.parse(gone.data).reason, 'deregistered');
      assert.equal((await gw.request('GET', '/health/ready')).status, 200);
    } finally {
      stream.close();
      await gw.close();
    }
  });

  it('that user cannot touch keys outside the prefix', async () => {
    const user = ['--user=gateway:gw-pw'];
    await assert.rejects(locked.ctl([...user, 'put', '/elsewhere/k', 'v']), /permission denied/);
    await assert.rejects(locked.ctl([...user, 'get', '/elsewhere', '--prefix']), /permission denied/);
    await assert.rejects(locked.ctl([...user, 'del', '/', '--prefix']), /permission denied/);
    await assert.rejects(locked.ctl([...user, 'put', prefix, 'v']), /permission denied/, 'the prefix without its slash is outside');
    await locked.ctl([...user, 'get', `${prefix}/`, '--prefix']);
    await locked.ctl([...root, 'put', '/elsewhere/k', 'v']); // root still can
  });

  it('a wrong password fails the start at once with a clear message', async () => {
    const r = await runMain({
      ETCD_ENDPOINTS: locked.endpoints.join(','),
      ETCD_PREFIX: prefix,
      ETCD_USERNAME: 'gateway',
      ETCD_PASSWORD: 'wrong',
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot start: .*rejected the gateway credentials.*ETCD_PASSWORD/);
    assert.ok(!r.stderr.includes('wrong') || !/password[^\n]*wrong/.test(r.stderr), 'the password is not printed');
    assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
  });
});

describe('rate limits', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ etcd, env: { AUTH_TOKENS_FILE: tokensFile, RATE_LIMIT_MAX: '3' }, deps: { rateLimitWindowMs: 1500 } });
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

describe('timeouts and headers', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ etcd, env: { ETCD_TIMEOUT_MS: '5000' }, deps: { handlerTimeoutMs: 600 } });
  });
  after(async () => {
    etcd.cont(0);
    await gw?.close();
  });

  it('the dashboard and /docs send security headers', async () => {
    for (const path of ['/', '/docs', '/docs/static/index.html']) {
      const r = await gw.request('GET', path);
      assert.equal(r.status, 200, path);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff', path);
      assert.equal(r.headers.get('x-frame-options'), 'DENY', path);
      assert.equal(r.headers.get('referrer-policy'), 'no-referrer', path);
      assert.match(r.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, path);
    }
  });

  it('change streams and blocking queries outlive the request timeout', async () => {
    const stream = await openSse(`${gw.base}/services/slow/events`);
    try {
      const rev = Number((await gw.request('GET', '/services/slow')).headers.get('x-registry-revision'));
      const t0 = Date.now();
      const blocking = await gw.request('GET', `/services/slow?index=${rev}&wait=1500ms`);
      assert.equal(blocking.status, 200, blocking.text);
      assert.ok(Date.now() - t0 >= 1400, 'held for its wait');
      await gw.request('PUT', inst('slow', 's1'), body());
      const e = await stream.waitFor((x) => toChange(x) !== undefined);
      assert.equal(toChange(e)!.instanceId, 's1');
      assert.ok(stream.isOpen);
    } finally {
      stream.close();
    }
  });

  it('an ordinary request stuck on the store is cut: 503 problem+json, no internals', async () => {
    etcd.stop(0);
    try {
      const t0 = Date.now();
      const r = await gw.request('PUT', inst('slow', 's2'), body());
      assertProblem(r, 503, 'store-unavailable');
      assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
      assert.ok(!r.text.includes(new URL(etcd.endpoints[0]!).port), 'no etcd address');
    } finally {
      etcd.cont(0);
    }
  });
});
