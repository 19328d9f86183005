// Bad input gets a clear problem+json 4xx and changes nothing: each case below is
// sent to a gateway, and the store's revision is the same afterwards.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { startGateway, type TestGateway } from './helpers/gateway.ts';
import { eachStore } from './helpers/stores.ts';

const ok = { address: '10.0.0.1', port: 80 };
const I = '/services/svc/instances/i-1';
const json = { 'content-type': 'application/json' };

type Case = [
  name: string,
  method: string,
  path: string,
  body: unknown,
  status: number,
  code: string,
  headers?: Record<string, string>,
  names?: string,
];

const CASES: Case[] = [
  ['invalid JSON', 'PUT', I, '{"address":', 400, 'invalid-request', json],
  ['body is an array', 'PUT', I, [ok], 400, 'invalid-request'],
  ['empty body on register', 'PUT', I, '', 400, 'invalid-request', json],
  ['port as a string', 'PUT', I, { ...ok, port: '8080' }, 400, 'invalid-request', undefined, 'port'],
  ['port 0', 'PUT', I, { ...ok, port: 0 }, 400, 'invalid-request', undefined, 'port'],
  ['port 65536', 'PUT', I, { ...ok, port: 65536 }, 400, 'invalid-request', undefined, 'port'],
  ['port not an integer', 'PUT', I, { ...ok, port: 80.5 }, 400, 'invalid-request', undefined, 'port'],
  ['missing address', 'PUT', I, { port: 80 }, 400, 'invalid-request', undefined, 'address'],
  ['address with a space', 'PUT', I, { ...ok, address: 'bad host' }, 400, 'invalid-request', undefined, 'address'],
  ['tags as a string', 'PUT', I, { ...ok, tags: 'x' }, 400, 'invalid-request', undefined, 'tags'],
  ['33 tags', 'PUT', I, { ...ok, tags: Array.from({ length: 33 }, (_, i) => `t${i}`) }, 400, 'invalid-request', undefined, 'tags'],
  ['a 65-character tag', 'PUT', I, { ...ok, tags: ['x'.repeat(65)] }, 400, 'invalid-request', undefined, 'tags'],
  ['an empty tag', 'PUT', I, { ...ok, tags: [''] }, 400, 'invalid-request', undefined, 'tags'],
  ['metadata value not a string', 'PUT', I, { ...ok, metadata: { a: 1 } }, 400, 'invalid-request', undefined, 'metadata'],
  [
    'metadata value of 513 characters',
    'PUT',
    I,
    { ...ok, metadata: { a: 'v'.repeat(513) } },
    400,
    'invalid-request',
    undefined,
    'metadata',
  ],
  [
    '65 metadata keys',
    'PUT',
    I,
    { ...ok, metadata: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) },
    400,
    'invalid-request',
    undefined,
    'metadata',
  ],
  [
    'metadata key of 129 characters',
    'PUT',
    I,
    { ...ok, metadata: { ['k'.repeat(129)]: 'v' } },
    400,
    'invalid-request',
    undefined,
    'metadata',
  ],
  ['empty metadata key', 'PUT', I, { ...ok, metadata: { '': 'v' } }, 400, 'invalid-request', undefined, 'metadata'],
  ['address ":::::" (not an IPv6 address)', 'PUT', I, { ...ok, address: ':::::' }, 400, 'invalid-request', undefined, 'address'],
  ['address 300.1.1.1', 'PUT', I, { ...ok, address: '300.1.1.1' }, 400, 'invalid-request', undefined, 'address'],
  ['weight 10001', 'PUT', I, { ...ok, weight: 10001 }, 400, 'invalid-request', undefined, 'weight'],
  ['weight -1', 'PUT', I, { ...ok, weight: -1 }, 400, 'invalid-request', undefined, 'weight'],
  ['ttl 86401', 'PUT', I, { ...ok, ttl: 86401 }, 400, 'invalid-request', undefined, 'ttl'],
  ['ttl -1', 'PUT', I, { ...ok, ttl: -1 }, 400, 'invalid-request', undefined, 'ttl'],
  ['unknown status', 'PUT', I, { ...ok, status: 'sleeping' }, 400, 'invalid-request', undefined, 'status'],
  ['unknown field', 'PUT', I, { ...ok, colour: 'red' }, 400, 'invalid-request', undefined, 'colour'],
  ['service and id in a PUT body', 'PUT', I, { ...ok, service: 'svc' }, 400, 'invalid-request', undefined, 'service'],
  ['body over 64 KiB', 'PUT', I, { ...ok, metadata: { a: 'x'.repeat(70 * 1024) } }, 413, 'payload-too-large'],
  ['text/plain body', 'PUT', I, 'address=10.0.0.1', 415, 'unsupported-media-type', { 'content-type': 'text/plain' }],
  ['service name with uppercase', 'PUT', '/services/Payments/instances/i-1', ok, 400, 'invalid-request'],
  ['service name of 65 characters', 'PUT', `/services/${'a'.repeat(65)}/instances/i-1`, ok, 400, 'invalid-request'],
  ['service name starting with a dash', 'PUT', '/services/-pay/instances/i-1', ok, 400, 'invalid-request'],
  ['service name starting with _ (bookkeeping)', 'PUT', '/services/_/instances/i-1', ok, 400, 'invalid-request'],
  ['%2F inside a service name', 'PUT', '/services/a%2Fb/instances/i-1', ok, 400, 'invalid-request'],
  ['a / inside an id', 'PUT', '/services/svc/instances/a/b', ok, 404, 'not-found'],
  ['id ".."', 'PUT', '/services/svc/instances/..', ok, 404, 'not-found'],
  // fetch, like browsers, resolves %2E%2E as ".." before sending: the path no longer names an instance
  ['id "%2E%2E"', 'PUT', '/services/svc/instances/%2E%2E', ok, 404, 'not-found'],
  ['id "."', 'PUT', '/services/svc/instances/%2E', ok, 400, 'invalid-request'],
  ['id of 129 characters', 'PUT', `/services/svc/instances/${'i'.repeat(129)}`, ok, 400, 'invalid-request'],
  ['id with a space', 'PUT', '/services/svc/instances/a%20b', ok, 400, 'invalid-request'],
  ['POST with a bad id', 'POST', '/services/svc/instances', { ...ok, id: 'a b' }, 400, 'invalid-request', undefined, 'id'],
  ['heartbeat with an unknown status', 'PUT', `${I}/heartbeat`, { status: 'gone' }, 400, 'invalid-request', undefined, 'status'],
  ['heartbeat with an unknown field', 'PUT', `${I}/heartbeat`, { ttl: 5 }, 400, 'invalid-request', undefined, 'ttl'],
  ['batch item without service', 'POST', '/batch', { register: [{ id: 'x', ...ok }] }, 400, 'invalid-request', undefined, 'service'],
  [
    'batch of 129 registrations',
    'POST',
    '/batch',
    { register: Array.from({ length: 129 }, (_, i) => ({ service: 's', id: `i${i}`, ...ok })) },
    400,
    'invalid-request',
  ],
  [
    'batch naming one instance twice',
    'POST',
    '/batch',
    { register: [{ service: 's', id: 'x', ...ok }], deregister: [{ service: 's', id: 'x' }] },
    400,
    'invalid-request',
  ],
  ['batch with an unknown top-level field', 'POST', '/batch', { add: [] }, 400, 'invalid-request', undefined, 'add'],
  ['status filter not a status', 'GET', '/services/svc?status=sleeping', undefined, 400, 'invalid-request'],
  ['index not a number', 'GET', '/services/svc?index=abc', undefined, 400, 'invalid-request'],
  ['wait over 5 minutes', 'GET', '/services/svc?index=1&wait=6m', undefined, 400, 'invalid-request'],
  ['wait not a duration', 'GET', '/services/svc?index=1&wait=soon', undefined, 400, 'invalid-request'],
  ['consistent not a boolean', 'GET', '/services/svc?consistent=maybe', undefined, 400, 'invalid-request'],
  ['minRevision negative', 'GET', '/services/svc?minRevision=-1', undefined, 400, 'invalid-request'],
  ['Last-Event-ID not a revision', 'GET', '/events', undefined, 400, 'invalid-request', { 'last-event-id': 'abc' }],
  ['no such route', 'GET', '/nothing/here', undefined, 404, 'not-found'],
  ['PATCH on an instance', 'PATCH', I, ok, 405, 'method-not-allowed', undefined, 'PUT'],
  ['POST on a service', 'POST', '/services/svc', ok, 405, 'method-not-allowed', undefined, 'GET'],
];

/** The `Allow` header of a 405: every method the path has a route for (RFC 9110). */
const ALLOW: Record<string, string[]> = { [I]: ['DELETE', 'GET', 'PUT'], '/services/svc': ['GET'] };

eachStore('bad input', (store) => {
  let gw: TestGateway;
  const revision = async () => (await gw.app.registryRoot.store.status(2000)).revision;

  before(async () => {
    gw = await startGateway({ etcd: store.etcd });
    await gw.request('PUT', I, { ...ok, ttl: 0 });
  });
  after(async () => {
    await gw?.close();
  });

  it(`has at least 30 cases`, () => assert.ok(CASES.length >= 30));

  for (const [name, method, path, body, status, code, headers, names] of CASES) {
    it(`${name} → ${status} ${code}, nothing written`, async () => {
      const before = await revision();
      const listBefore = (await gw.request('GET', '/services')).text;
      const r = await gw.request(method, path, body, headers);
      assert.equal(r.status, status, r.text);
      assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(r.json.code, code);
      assert.equal(r.json.status, status);
      for (const f of ['type', 'title', 'detail']) assert.equal(typeof r.json[f], 'string');
      assert.doesNotMatch(r.text, /node_modules|\.ts:\d+|\n\s+at /, 'no stack trace');
      if (names) assert.match(r.json.detail, new RegExp(names), `the detail names ${names}`);
      if (status === 405) for (const m of ALLOW[path]!) assert.match(r.headers.get('allow') ?? '', new RegExp(`\\b${m}\\b`));
      assert.equal(await revision(), before, 'the store revision did not move');
      assert.equal((await gw.request('GET', '/services')).text, listBefore);
    });
  }
});

it('with CORS on (its preflight route matches every path), an unknown path is still 404 and a wrong method 405', async (t) => {
  const gw = await startGateway({ env: { CORS_ORIGINS: 'http://allowed.example' } });
  t.after(() => gw.close());
  assert.equal((await gw.request('GET', '/nothing/here')).json.code, 'not-found');
  const patch = await gw.request('PATCH', I, ok);
  assert.equal(patch.status, 405);
  assert.match(patch.headers.get('allow') ?? '', /\bPUT\b/);
});
