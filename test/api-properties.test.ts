// Property-based test of the whole API against its own OpenAPI document: requests
// generated from openapi/openapi.json, valid and mutated (path parameters, query
// strings, bodies), sent to a gateway on the embedded store. Every answer must have
// a status the document lists for that operation, a body that matches the schema
// given for it, application/problem+json for every error, and never a 5xx while the
// store is up. A fixed seed keeps `npm test` repeatable; API_PROPERTY_RUNS raises
// the number of requests per operation (the bench runs 1,000).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { Ajv, type ValidateFunction } from 'ajv';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { sample } from 'openapi-sampler';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { isHost } from '../src/rules.ts';

const RUNS = Number(process.env.API_PROPERTY_RUNS ?? 60);
const SEED = Number(process.env.API_PROPERTY_SEED ?? 2027);

/* eslint-disable @typescript-eslint/no-explicit-any -- the OpenAPI document is read as plain JSON */
const doc: any = JSON.parse(await readFile(new URL('../openapi/openapi.json', import.meta.url), 'utf8'));

interface Operation {
  method: string;
  path: string;
  op: any;
}

const operations: Operation[] = Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, ops]) =>
  Object.entries(ops)
    .filter(([, op]) => op?.responses)
    // Streams and the Prometheus text format are checked by their own tests.
    .filter(([, op]) => !Object.values(op.responses).some((r: any) => r.content?.['text/event-stream'] || r.content?.['text/plain']))
    .map(([method, op]) => ({ method: method.toUpperCase(), path, op })),
);

const ajv = new Ajv({ strict: false, allErrors: true })
  .addFormat('host', isHost)
  .addFormat('date-time', (s: string) => !Number.isNaN(Date.parse(s)));
const validators = new Map<object, ValidateFunction>();
/** A validator of a schema of the document; its $refs (#/components/...) resolve against the document. */
function validatorOf(schema: object): ValidateFunction {
  let v = validators.get(schema);
  if (!v) validators.set(schema, (v = ajv.compile({ ...schema, components: doc.components })));
  return v;
}

/** A path parameter: valid by its pattern, or any text (never empty: that is another route). */
function paramValue(schema: any): fc.Arbitrary<string> {
  // fast-check cannot generate through a lookahead: without it, the odd value is refused (400), still a fair request.
  const valid = fc.stringMatching(new RegExp(schema.pattern.replace(/\(\?[!=][^)]*\)/g, '')), { size: 'small' });
  return (
    fc
      .oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 80 }) })
      // "." and ".." are dot segments: URL parsing removes them, and the request is one of another route.
      .filter((s) => s !== '.' && s !== '..')
  );
}

/** A query parameter: absent, valid, or text the schema may refuse. Waits stay short: a held answer is not what this tests. */
function queryValue(name: string, schema: any): fc.Arbitrary<string | string[] | undefined> {
  const text = fc.string({ maxLength: 20 }).filter((s) => !/^\d{1,9}(s|m)?$/.test(s)); // never a long wait
  let valid: fc.Arbitrary<string | string[]>;
  if (name === 'wait') valid = fc.integer({ min: 0, max: 50 }).map((n) => `${n}ms`);
  else if (name === 'index' || name === 'minRevision') valid = fc.integer({ min: 0, max: 3 }).map(String);
  else if (schema.type === 'boolean') valid = fc.constantFrom('true', 'false');
  else if (schema.type === 'integer') valid = fc.integer({ min: schema.minimum ?? 0, max: 1000 }).map(String);
  else if (schema.anyOf) valid = fc.constantFrom(...schema.anyOf.flatMap((s: any) => s.enum));
  else if (schema.type === 'array') valid = fc.array(fc.constantFrom('http', 'v2', 'payments', 'eu-1'), { minLength: 1, maxLength: 3 });
  else if (schema.pattern) valid = fc.stringMatching(new RegExp(schema.pattern), { size: 'small' });
  else valid = fc.string({ maxLength: 20 });
  return fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 3, arbitrary: valid }, { weight: 1, arbitrary: text });
}

/** A body: the document's sample as it is, mutated (a field dropped, retyped, added), any JSON, or no JSON at all. */
function bodyOf(schema: any): fc.Arbitrary<{ payload?: string; type?: string }> {
  const base = sample(schema, { skipReadOnly: true }, doc) as Record<string, unknown>;
  const keys = base && typeof base === 'object' ? Object.keys(base) : [];
  const json = (v: unknown) => ({ payload: JSON.stringify(v), type: 'application/json' });
  const mutated = fc
    .tuple(fc.constantFrom('drop', 'retype', 'add'), fc.constantFrom('', ...keys), fc.jsonValue({ maxDepth: 2 }))
    .map(([how, key, value]) => {
      const copy: Record<string, unknown> = { ...base };
      if (how === 'drop') delete copy[key];
      else copy[how === 'add' ? `x-${key}` : key] = value;
      return json(copy);
    });
  return fc.oneof(
    { weight: 4, arbitrary: fc.constant(json(base)) },
    { weight: 4, arbitrary: mutated },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map(json) },
    {
      weight: 1,
      arbitrary: fc.constantFrom({ payload: '{"address":', type: 'application/json' }, { payload: 'x=1', type: 'text/plain' }, {}),
    },
  );
}

function requestOf({ path, op }: Operation) {
  const params: any[] = op.parameters ?? [];
  const pathParams: Record<string, fc.Arbitrary<string>> = Object.fromEntries(
    params.filter((p) => p.in === 'path').map((p) => [p.name, paramValue(p.schema)]),
  );
  const query: Record<string, fc.Arbitrary<string | string[] | undefined>> = Object.fromEntries(
    params.filter((p) => p.in === 'query').map((p) => [p.name, queryValue(p.name, p.schema)]),
  );
  const body: fc.Arbitrary<{ payload?: string; type?: string }> = op.requestBody
    ? bodyOf(op.requestBody.content['application/json'].schema)
    : fc.constant({});
  return fc.record({ pathParams: fc.record(pathParams), query: fc.record(query), body }).map(({ pathParams, query, body }) => {
    let url = path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(pathParams[name]!));
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) for (const one of v === undefined ? [] : [v].flat()) search.append(k, String(one));
    if ([...search].length) url += `?${search}`;
    return { url, ...body };
  });
}

describe('the API against its OpenAPI document (generated requests)', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await buildApp(loadConfig({ LOG_LEVEL: 'silent' }));
    // Something to find: the document's own example instance.
    const put = await app.inject({
      method: 'PUT',
      url: '/services/payments/instances/10.0.0.7:8080',
      payload: { address: '10.0.0.7', port: 8080, tags: ['http', 'v2'], metadata: { zone: 'eu-1' } },
    });
    assert.equal(put.statusCode, 201, put.body);
  });
  after(() => app?.close());

  for (const operation of operations) {
    it(`${operation.method} ${operation.path}: ${RUNS} generated requests get documented answers`, async () => {
      const documented = operation.op.responses as Record<string, any>;
      await fc.assert(
        fc.asyncProperty(requestOf(operation), async ({ url, payload, type }) => {
          const headers: Record<string, string> = type ? { 'content-type': type } : {};
          const res = await app.inject({ method: operation.method as 'GET', url, payload, headers });
          const what = `${operation.method} ${url} ${payload ?? ''} → ${res.statusCode} ${res.body.slice(0, 300)}`;
          assert.ok(res.statusCode < 500, `a 5xx with the store up: ${what}`);
          const answer = documented[String(res.statusCode)];
          assert.ok(answer, `status not in the document: ${what}`);
          const contentType = String(res.headers['content-type'] ?? '');
          if (res.statusCode >= 400) assert.match(contentType, /^application\/problem\+json/, what);
          const [mediaType, media] = Object.entries(answer.content ?? {})[0] ?? [];
          if (!media) return;
          assert.ok(contentType.startsWith(mediaType!), `content type ${contentType}, documented ${mediaType}: ${what}`);
          const validate = validatorOf((media as any).schema);
          assert.ok(validate(res.json()), `body does not match its schema (${ajv.errorsText(validate.errors)}): ${what}`);
        }),
        { seed: SEED, numRuns: RUNS, endOnFailure: true },
      );
    });
  }
});
