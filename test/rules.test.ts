// The rules are written once (src/rules.ts): the OpenAPI document every client
// reads states them, and the agent's flags accept exactly what the gateway does.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { parseInvocation, UsageError } from '../src/agent/cli.ts';
import * as rules from '../src/rules.ts';

const doc = JSON.parse(await readFile(new URL('../openapi/openapi.json', import.meta.url), 'utf8'));
const registration = doc.paths['/services/{name}/instances/{id}'].put.requestBody.content['application/json'].schema;
const fields = registration.properties;

function agentAccepts(flags: string[]): boolean {
  const base = ['run', '--gateway', 'http://g:1', '--service', 'svc', '--address', '10.0.0.1', '--port', '80'];
  try {
    parseInvocation([...base, ...flags], {});
    return true;
  } catch (err) {
    if (err instanceof UsageError) return false;
    throw err;
  }
}

describe('rules', () => {
  it('the OpenAPI document states every limit of a record', () => {
    assert.deepEqual([fields.port.minimum, fields.port.maximum], [rules.MIN_PORT, rules.MAX_PORT]);
    assert.equal(fields.weight.maximum, rules.MAX_WEIGHT);
    assert.equal(fields.ttl.maximum, rules.MAX_TTL_SECONDS);
    assert.deepEqual([fields.tags.maxItems, fields.tags.items.maxLength], [rules.MAX_TAGS, rules.MAX_TAG_LENGTH]);
    assert.deepEqual(
      [fields.metadata.maxProperties, fields.metadata.additionalProperties.maxLength],
      [rules.MAX_METADATA, rules.MAX_METADATA_VALUE_LENGTH],
    );
    assert.deepEqual(
      fields.status.anyOf.flatMap((s: { enum: string[] }) => s.enum),
      [...rules.STATUSES],
    );
    assert.equal(fields.address.pattern, rules.ADDRESS_PATTERN);
    const batch = doc.paths['/batch'].post.requestBody.content['application/json'].schema.properties;
    assert.equal(batch.register.maxItems, rules.MAX_BATCH_OPS);
    assert.equal(batch.deregister.maxItems, rules.MAX_BATCH_OPS - 1, 'a deregistering batch spends one operation on bookkeeping');
    const minRevision = doc.paths['/services'].get.parameters.find((p: { name: string }) => p.name === 'minRevision');
    assert.match(minRevision.description, new RegExp(`within ${rules.durationText(rules.MIN_REVISION_WAIT_MS)}$`));
  });

  it('the agent accepts an address exactly when the gateway does', () => {
    const ajv = new Ajv({ strict: false }).addFormat('host', rules.isHost);
    const schemaAccepts = ajv.compile(fields.address);
    const addresses = [
      '10.0.0.7',
      '999.1.1.1',
      '1.2.3',
      '::1',
      'fe80::1',
      '::ffff:10.0.0.1',
      ':::1',
      '[::1]',
      'fe80::1%eth0',
      'db-1.example.com',
      'db-1.example.com.',
      '-db',
      'a_b',
      'a..b',
      '',
      'a'.repeat(63),
      'a'.repeat(64),
      `${'a'.repeat(63)}.`.repeat(4).slice(0, 253),
      `${'a'.repeat(63)}.`.repeat(4).slice(0, 254),
    ];
    for (const address of addresses) {
      assert.equal(rules.isAddress(address), schemaAccepts(address), `isAddress(${JSON.stringify(address)}) agrees with the schema`);
    }
    assert.ok(agentAccepts(['--address', 'fe80::1']));
    assert.ok(!agentAccepts(['--address', 'fe80::1%eth0']), 'the gateway would refuse it: so does the agent');
  });

  it('the agent takes the same tag, metadata and port limits as the gateway', () => {
    assert.ok(agentAccepts(['--tag', 't'.repeat(rules.MAX_TAG_LENGTH)]));
    assert.ok(!agentAccepts(['--tag', 't'.repeat(rules.MAX_TAG_LENGTH + 1)]));
    assert.ok(agentAccepts(['--meta', `k=${'v'.repeat(rules.MAX_METADATA_VALUE_LENGTH)}`]));
    assert.ok(!agentAccepts(['--meta', `k=${'v'.repeat(rules.MAX_METADATA_VALUE_LENGTH + 1)}`]));
    assert.ok(agentAccepts(['--port', String(rules.MAX_PORT)]));
    assert.ok(!agentAccepts(['--port', String(rules.MAX_PORT + 1)]));
  });

  it('the agent keeps a metadata key such as __proto__ as data', () => {
    const run = parseInvocation(
      [
        'run',
        '--gateway',
        'http://g:1',
        '--service',
        's',
        '--address',
        '10.0.0.1',
        '--port',
        '80',
        '--meta',
        '__proto__=p',
        '--meta',
        'toString=t',
      ],
      {},
    );
    assert.equal(run.kind, 'run');
    if (run.kind === 'run') assert.equal(JSON.stringify(run.options.metadata), '{"__proto__":"p","toString":"t"}');
  });

  it('service names and scopes: a scope is a name or a prefix of one with *', () => {
    const scope = new RegExp(rules.SERVICE_SCOPE_PATTERN);
    for (const ok of ['payments', 'pay*', '*', `${'a'.repeat(rules.MAX_SERVICE_NAME_LENGTH - 1)}*`]) assert.ok(scope.test(ok), ok);
    for (const bad of ['Pay*', 'a*b', '**', `${'a'.repeat(rules.MAX_SERVICE_NAME_LENGTH)}*`]) assert.ok(!scope.test(bad), bad);
    assert.ok(rules.isServiceName('a'.repeat(rules.MAX_SERVICE_NAME_LENGTH)));
    assert.ok(!rules.isServiceName('a'.repeat(rules.MAX_SERVICE_NAME_LENGTH + 1)));
  });
});
