// The client package as built in the repository: the committed generated types match the OpenAPI
// document, the README's example is examples/checkout.mjs, and a process that uses the client and
// aborts it exits by itself (every timer stopped or unref'd). The tarballs: package-install.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { renderClientTypes, CLIENT_TYPES_FILE } from '../scripts/client-types.ts';
import { startGateway, type TestGateway } from './helpers/gateway.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function run(args: string[], env: Record<string, string>): { proc: ChildProcess; output: () => string } {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout!.on('data', (chunk) => (output += chunk));
  proc.stderr!.on('data', (chunk) => (output += chunk));
  return { proc, output: () => output };
}

async function exitWithin(proc: ChildProcess, ms: number): Promise<number | null> {
  if (proc.exitCode !== null) return proc.exitCode;
  const [code] = (await once(proc, 'exit', { signal: AbortSignal.timeout(ms) })) as [number | null];
  return code;
}

describe('client package', { timeout: 120_000 }, () => {
  let gw: TestGateway;

  before(async () => {
    // The client package's build (its prepack runs the same), which the scripts below import.
    await promisify(execFile)('npm', ['run', 'build', '--workspace', 'etcd-discovery-gateway-client'], { cwd: ROOT });
    gw = await startGateway();
  });
  after(async () => gw?.close());

  it('the committed client types are those generated from openapi/openapi.json (npm run openapi)', async () => {
    const document = JSON.parse(await readFile(new URL('openapi/openapi.json', `file://${ROOT}`), 'utf8')) as object;
    assert.equal(
      await readFile(CLIENT_TYPES_FILE, 'utf8'),
      await renderClientTypes(document),
      'src/client/api-types.ts is stale: run npm run openapi',
    );
  });

  it('the OpenAPI document asks for the bearer token exactly where a gateway with tokens answers 401 without one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'openapi-auth-'));
    const tokensFile = join(dir, 'tokens.json');
    await writeFile(tokensFile, JSON.stringify({ tokens: [{ name: 'any', token: 'any-secret', admin: true }] }));
    const guarded = await startGateway({ env: { AUTH_TOKENS_FILE: tokensFile } });
    try {
      const document = JSON.parse(await readFile(`${ROOT}openapi/openapi.json`, 'utf8')) as {
        components: { securitySchemes: Record<string, { type: string; scheme: string }> };
        paths: Record<string, Record<string, { security?: Record<string, string[]>[] }>>;
      };
      assert.deepEqual(document.components.securitySchemes.bearerAuth?.type, 'http');
      assert.deepEqual(document.components.securitySchemes.bearerAuth?.scheme, 'bearer');
      for (const [path, operations] of Object.entries(document.paths)) {
        for (const [method, operation] of Object.entries(operations)) {
          const url = path.replace('{name}', 'svc').replace('{id}', 'i-1');
          const answer = await fetch(guarded.base + url, { method: method.toUpperCase(), signal: AbortSignal.timeout(5_000) });
          await answer.body?.cancel();
          const security = operation.security ?? [];
          const needsToken = security.length > 0 && security.every((requirement) => 'bearerAuth' in requirement);
          assert.equal(
            answer.status === 401,
            needsToken,
            `${method.toUpperCase()} ${path}: ${answer.status}, security ${JSON.stringify(operation.security)}`,
          );
        }
      }
    } finally {
      await guarded.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the README's example is examples/checkout.mjs, word for word", async () => {
    const readme = await readFile(`${ROOT}README.md`, 'utf8');
    const block = /## Client[^\n]*\n[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.equal(block, await readFile(`${ROOT}examples/checkout.mjs`, 'utf8'));
  });

  it('a process that aborts its registration and watches exits by itself', async () => {
    const script = `
      import { DiscoveryClient } from 'etcd-discovery-gateway-client';
      const client = new DiscoveryClient({ gateways: [process.env.GATEWAY, 'http://127.0.0.1:9'] });
      const stop = new AbortController();
      const registration = client.register({ service: 'quiet', address: '10.0.0.9', port: 1, ttl: 5 }, { signal: stop.signal });
      await registration.registered();
      const watch = client.watch(undefined, { signal: stop.signal });
      await watch.ready();
      await client.pick('quiet');
      await client.discover('quiet', {}, { signal: stop.signal });
      stop.abort();
      client.close();
      console.log('aborted', registration.state);
    `;
    const child = run(['--input-type=module', '-e', script], { GATEWAY: gw.base });
    try {
      assert.equal(await exitWithin(child.proc, 15_000), 0, child.output());
      assert.match(child.output(), /aborted/);
    } finally {
      child.proc.kill('SIGKILL');
    }
  });
});
