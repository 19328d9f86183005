// One JSON log line per request, with no secret in it (Authorization, access_token), and none with REQUEST_LOG=false.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually, instancePath, startGateway, type TestGateway } from './helpers/gateway.ts';
import { MemoryStore } from '../src/registry/store/memory.ts';
import { LogCapture } from './helpers/logs.ts';
import { openSse } from './helpers/sse.ts';

describe('logs keep secrets out', () => {
  const SECRET = 'tok-SECRET-4f1d9c';
  let dir: string;
  let gw: TestGateway;
  const logs = new LogCapture();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'obs-auth-'));
    const tokens = join(dir, 'tokens.json');
    await writeFile(tokens, JSON.stringify({ tokens: [{ name: 'ops', token: SECRET, read: ['*'], write: ['*'] }] }));
    gw = await startGateway({ env: { LOG_LEVEL: 'trace', AUTH_TOKENS_FILE: tokens }, deps: { logStream: logs } });
  });
  after(async () => {
    await gw?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('never logs an Authorization header or an access_token value', async () => {
    const bearer = { authorization: `Bearer ${SECRET}` };
    assert.equal((await gw.request('PUT', instancePath('obs-auth', 'a'), { address: '10.2.0.1', port: 80 }, bearer)).status, 201);
    assert.equal((await gw.request('GET', '/services/obs-auth', undefined, bearer)).status, 200);
    assert.equal((await gw.request('GET', '/services/obs-auth', undefined, { authorization: 'Bearer wrong-SECRET-1' })).status, 401);
    assert.equal((await gw.request('PUT', instancePath('obs-auth', 'b'), { port: 'x' }, bearer)).status, 400);
    assert.equal((await gw.request('GET', `/services/obs-auth?access_token=${SECRET}`)).status, 401); // streams only
    assert.ok([401, 404].includes((await gw.request('GET', '/no/route?access_token=query-SECRET-2')).status));
    const stream = await openSse(`${gw.base}/events?service=obs-auth&access_token=${SECRET}`);
    assert.equal(stream.status, 200);
    stream.close();
    const refused = await openSse(`${gw.base}/events?access%5Ftoken=encoded-SECRET-3`);
    assert.equal(refused.status, 401);
    await eventually(async () => logs.requests().length >= 7, 3000, 'the request lines');
    const all = logs.raw.join('');
    assert.ok(logs.lines.length > 7, 'lines were captured');
    assert.ok(!all.includes('SECRET'), `a secret in the logs:\n${logs.raw.filter((l) => l.includes('SECRET')).join('')}`);
    assert.ok(!/bearer/i.test(all), 'no Authorization header in the logs');
    assert.ok(
      logs.requests().some((l) => String(l.url).includes('access_token=[redacted]')),
      'the redaction is visible',
    );
  });
});

describe('REQUEST_LOG=false', () => {
  let gw: TestGateway;
  const logs = new LogCapture();
  before(async () => {
    gw = await startGateway({ env: { LOG_LEVEL: 'info', REQUEST_LOG: 'false' }, deps: { logStream: logs } });
  });
  after(async () => gw?.close());

  it('writes no request lines, other lines still', async () => {
    assert.equal((await gw.request('GET', '/services')).status, 200);
    assert.equal((await gw.request('GET', '/nope')).status, 404);
    await sleep(100);
    assert.ok(logs.lines.length > 0, 'start-up lines were captured');
    assert.equal(logs.requests().length, 0);
  });
});

describe('an unexpected error', () => {
  // fastify has no logger of its own here (src/server/logger.ts): the gateway's must still get the line.
  class BrokenRange extends MemoryStore {
    override range(prefix: string): ReturnType<MemoryStore['range']> {
      if (prefix.includes('/broken/')) return Promise.reject(new Error('a bug, not a store outage'));
      return super.range(prefix);
    }
  }
  let gw: TestGateway;
  const logs = new LogCapture();
  before(async () => {
    gw = await startGateway({ env: { LOG_LEVEL: 'warn' }, deps: { logStream: logs, store: new BrokenRange() } });
  });
  after(async () => gw?.close());

  it('is answered 500 internal with no detail, and logged with its request id and stack', async () => {
    const r = await gw.request('GET', '/services/broken?consistent=true');
    assert.equal(r.status, 500, r.text);
    assert.equal(r.json.code, 'internal');
    assert.ok(!r.text.includes('a bug'), 'no internals in the answer');
    const line = await eventually(async () => logs.lines.find((l) => l.msg === 'unexpected error'), 3000, 'the error line');
    assert.equal(line.level, 50, 'error');
    assert.match(String(line.reqId), /^[0-9a-f]{8}-[0-9a-z]+$/);
    const err = line.err as { message: string; stack: string };
    assert.equal(err.message, 'a bug, not a store outage');
    assert.match(err.stack, /logs\.test\.ts/);
  });
});
