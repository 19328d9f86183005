// The OpenAPI document (valid, equal to the committed file, every route of the contract) and Swagger UI.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { startGateway, type TestGateway } from './helpers/gateway.ts';

const ROOT = new URL('../', import.meta.url);

describe('the OpenAPI document and Swagger UI', () => {
  let gw: TestGateway;
  let committed: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

  before(async () => {
    gw = await startGateway();
    committed = JSON.parse(await readFile(new URL('openapi/openapi.json', ROOT), 'utf8'));
  });
  after(async () => gw?.close());

  it('is served at /openapi.json, equal to the committed openapi/openapi.json (npm run openapi)', async () => {
    const r = await gw.request('GET', '/openapi.json');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(r.json, committed, 'openapi/openapi.json is stale: run npm run openapi');
    assert.deepEqual(gw.app.swagger(), committed);
  });

  it('is a valid OpenAPI 3 document', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(committed));
    assert.deepEqual(result.errors ?? [], []);
    assert.equal(result.valid, true);
    assert.match(committed.openapi, /^3\./);
    assert.equal(validator.version, '3.0');
  });

  it('documents every route of API.md, errors as problem+json, streams as text/event-stream, /metrics as text/plain', () => {
    const routes = [
      ['put', '/services/{name}/instances/{id}'],
      ['post', '/services/{name}/instances'],
      ['put', '/services/{name}/instances/{id}/heartbeat'],
      ['delete', '/services/{name}/instances/{id}'],
      ['post', '/batch'],
      ['get', '/services'],
      ['get', '/services/{name}'],
      ['get', '/services/{name}/instances/{id}'],
      ['get', '/services/{name}/events'],
      ['get', '/events'],
      ['get', '/services/{name}/pick'],
      ['get', '/sd/prometheus'],
      ['get', '/health/live'],
      ['get', '/health/ready'],
      ['get', '/health'],
      ['get', '/metrics'],
    ];
    for (const [method, path] of routes) {
      const op = committed.paths[path!]?.[method!];
      assert.ok(op, `${method!.toUpperCase()} ${path} is not documented`);
      assert.ok(op.summary, `${method} ${path} has a summary`);
    }
    for (const [path, ops] of Object.entries(
      committed.paths as Record<string, Record<string, { responses: Record<string, { content?: object }> }>>,
    )) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [code, answer] of Object.entries(op.responses)) {
          if (Number(code) >= 400 && !path.startsWith('/health'))
            assert.deepEqual(Object.keys(answer.content ?? {}), ['application/problem+json'], `${method} ${path} ${code}`);
        }
      }
    }
    for (const path of ['/services/{name}/events', '/events'])
      assert.ok(committed.paths[path].get.responses['200'].content['text/event-stream'], path);
    assert.ok(committed.paths['/metrics'].get.responses['200'].content['text/plain'], '/metrics');
    const schemas = committed.components.schemas;
    assert.equal(schemas.Instance.example.service, 'payments', 'Instance has an example');
    assert.equal(schemas.Problem.example.code, 'instance-not-found', 'Problem has an example');
  });

  it('serves Swagger UI at /docs', async () => {
    const res = await fetch(`${gw.base}/docs`, { redirect: 'follow', signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    const html = await res.text();
    assert.match(html, /swagger-ui/i);
  });
});
