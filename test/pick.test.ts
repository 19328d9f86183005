// GET /services/{name}/pick (weighted random choice among instances that are up), on a real etcd.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { startGateway, type TestGateway } from './helpers/gateway.ts';

let etcd: EtcdCluster;
before(async () => void (etcd = await startEtcd()));
after(() => etcd?.close());

describe('weighted pick', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ etcd });
    const reg = (id: string, body: Record<string, unknown>) =>
      gw.request('PUT', `/services/api/instances/${id}`, { address: '10.4.0.1', port: 80, ...body });
    await reg('w1', { weight: 100, tags: ['blue'], metadata: { zone: 'a' } });
    await reg('w2', { weight: 300, tags: ['blue'], metadata: { zone: 'b' } });
    await reg('w3', { weight: 600, tags: ['green'], metadata: { zone: 'b' } });
    await reg('drain', { weight: 5000, status: 'draining', tags: ['blue'] });
    await reg('down', { weight: 5000, status: 'down', tags: ['blue'] });
    await reg('zero', { weight: 0, tags: ['blue'] });
    await gw.request('PUT', '/services/idle/instances/d1', { address: '10.4.0.2', port: 80, status: 'draining' });
  });
  after(async () => gw?.close());

  async function draw(query: string, n: number): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const r = await gw.request('GET', `/services/api/pick${query}`);
      assert.equal(r.status, 200, r.text);
      counts.set(r.json.id, (counts.get(r.json.id) ?? 0) + 1);
    }
    return counts;
  }

  test('picks follow the weights; draining, down and weight-0 instances are never picked', async () => {
    const n = 600;
    const counts = await draw('', n);
    assert.deepEqual([...counts.keys()].sort(), ['w1', 'w2', 'w3']);
    for (const [id, p] of [
      ['w1', 0.1],
      ['w2', 0.3],
      ['w3', 0.6],
    ] as const) {
      const share = (counts.get(id) ?? 0) / n;
      assert.ok(Math.abs(share - p) < 0.08, `${id}: ${share} of picks, expected about ${p}`);
    }
  });

  test('tag and meta filters apply', async () => {
    const blue = await draw('?tag=blue', 200);
    assert.deepEqual([...blue.keys()].sort(), ['w1', 'w2']);
    assert.ok(blue.get('w2')! > blue.get('w1')!);
    assert.deepEqual([...(await draw('?meta.zone=b&tag=green', 20)).keys()], ['w3']);
    assert.deepEqual([...(await draw('?meta.zone=a', 20)).keys()], ['w1']);
  });

  test('no ETag, no-store, never 304', async () => {
    const r = await gw.request('GET', '/services/api/pick', undefined, { 'if-none-match': '*' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('etag'), null);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(r.json.service, 'api');
    assert.equal(typeof r.json.revision, 'number');
  });

  test('404 no-instance-available when none qualifies', async () => {
    for (const path of [
      '/services/idle/pick',
      '/services/nothing-here/pick',
      '/services/api/pick?tag=red',
      '/services/api/pick?meta.zone=c',
    ]) {
      const r = await gw.request('GET', path);
      assert.equal(r.status, 404, path);
      assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);
      assert.equal(r.json.code, 'no-instance-available');
      assert.equal(r.headers.get('etag'), null);
    }
    assert.equal((await gw.request('GET', '/services/Bad!/pick')).status, 400);
  });
});
