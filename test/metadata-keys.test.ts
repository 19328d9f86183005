// Metadata keys that are words of the language (API.md "Hostile clients"):
// `__proto__`, `constructor`, `toString` round-trip like any other key: stored,
// answered, filtered by meta.{key}, and shown as Prometheus SD labels.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startGateway, type TestGateway } from './helpers/gateway.ts';

// Written as JSON text: an object literal with a `__proto__` key would set a prototype instead.
const BODY = '{"address":"10.0.0.1","port":80,"ttl":0,"metadata":{"__proto__":"p","constructor":"c","toString":"t","zone":"z"}}';
const METADATA = JSON.parse('{"__proto__":"p","constructor":"c","toString":"t","zone":"z"}');

describe('metadata keys that are words of the language', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway();
    const r = await gw.request('PUT', '/services/words/instances/w', BODY);
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.json.metadata, METADATA, 'the registration answer');
    assert.equal((await gw.request('PUT', '/services/words/instances/plain', { address: '10.0.0.2', port: 80, ttl: 0 })).status, 201);
  });
  after(() => gw?.close());

  it('are answered as stored', async () => {
    assert.deepEqual((await gw.request('GET', '/services/words/instances/w')).json.metadata, METADATA);
    const service = await gw.request('GET', '/services/words');
    assert.deepEqual(service.json.instances.find((x: { id: string }) => x.id === 'w').metadata, METADATA);
  });

  it('filter by meta.{key}', async () => {
    const ids = async (query: string) =>
      (await gw.request('GET', `/services/words?${query}`)).json.instances.map((x: { id: string }) => x.id);
    assert.deepEqual(await ids('meta.__proto__=p'), ['w']);
    assert.deepEqual(await ids('meta.__proto__=x'), []);
    assert.deepEqual(await ids('meta.constructor=c'), ['w']);
    assert.deepEqual(await ids('meta.toString=t&meta.zone=z'), ['w']);
    assert.equal((await gw.request('GET', '/services/words/pick?meta.__proto__=p')).json.id, 'w');
  });

  it('are Prometheus SD labels', async () => {
    const groups = (await gw.request('GET', '/sd/prometheus?service=words')).json as { labels: Record<string, string> }[];
    const labels = groups.find((g) => g.labels.__meta_discovery_instance_id === 'w')!.labels;
    assert.equal(labels.__meta_discovery_metadata___proto__, 'p');
    assert.equal(labels.__meta_discovery_metadata_constructor, 'c');
    assert.equal(labels.__meta_discovery_metadata_toString, 't');
    const plain = groups.find((g) => g.labels.__meta_discovery_instance_id === 'plain')!.labels;
    assert.equal(Object.keys(plain).filter((k) => k.startsWith('__meta_discovery_metadata_')).length, 0);
  });
});
