// What users install: `npm pack` both packages, install each tarball into an empty directory
// (production dependencies only, as a service image would), start the gateway from its tarball
// with npx, run the README's client example and the agent from the client tarball, typecheck a
// small `nodenext` TypeScript consumer, and check that the client install stays light. It talks
// to the npm registry only for packages missing from npm's cache (--prefer-offline).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, exitOf, launch, tail } from './helpers/agents.ts';
import { call, eventually } from './helpers/gateway.ts';
import { freePort } from './helpers/ports.ts';

const run = promisify(execFile);
const NPM_FLAGS = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=warn'];
const CLIENT_PACKAGE = 'etcd-discovery-gateway-client';

/** npm in `cwd`; answers its output (stdout and stderr: npm warns on stderr). */
async function npm(cwd: string, args: string[]): Promise<string> {
  const { stdout, stderr } = await run('npm', args, {
    cwd,
    maxBuffer: 16 * 1024 * 1024,
    env: { ...process.env, npm_config_update_notifier: 'false' },
  });
  return stdout + stderr;
}

/** Total bytes of the files under `dir`. */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

/** Every package name in `npm ls --all --json` output. */
function installedNames(tree: { dependencies?: Record<string, unknown> }): string[] {
  return Object.entries(tree.dependencies ?? {}).flatMap(([name, sub]) => [name, ...installedNames(sub as typeof tree)]);
}

/** An empty project directory with the tarball installed, production dependencies only. */
async function installInto(dir: string, tarball: string): Promise<string> {
  await mkdir(dir);
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `try-${Date.now()}`, private: true, type: 'module' }));
  return npm(dir, ['install', '--omit=dev', ...NPM_FLAGS, tarball]);
}

describe('the packages as users install them', { timeout: 240_000 }, () => {
  let work: string;
  let gatewayDir: string;
  let clientDir: string;
  let gatewayInstallLog: string;
  let clientInstallLog: string;
  let gateway: ChildProcess | undefined;
  let gatewayOutput: { text(): string };
  let base: string;
  const started = Date.now();

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'package-install-'));
    // prepack builds each package; both tarballs in one call.
    await npm(ROOT, ['pack', '--workspaces', '--include-workspace-root', '--pack-destination', work, '--loglevel=warn']);
    const tarballs = (await readdir(work)).filter((f) => f.endsWith('.tgz'));
    const gatewayTarball = join(
      work,
      tarballs.find((f) => f.startsWith('etcd-discovery-gateway-1'))!,
    );
    const clientTarball = join(
      work,
      tarballs.find((f) => f.startsWith(`${CLIENT_PACKAGE}-1`))!,
    );
    gatewayDir = join(work, 'gateway');
    clientDir = join(work, 'client');
    [gatewayInstallLog, clientInstallLog] = await Promise.all([
      installInto(gatewayDir, gatewayTarball),
      installInto(clientDir, clientTarball),
    ]);

    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    // detached: npx runs the bin under a shell of its own; the whole group is stopped in after().
    gateway = launch('npx', ['--offline', 'etcd-discovery-gateway'], {
      cwd: gatewayDir,
      env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    gatewayOutput = tail(gateway.stderr);
    tail(gateway.stdout);
    await eventually(
      async () => (await call(base, 'GET', '/health/ready').catch(() => undefined))?.status === 200,
      30_000,
      'the installed gateway to serve',
    );
  });

  after(async () => {
    if (gateway?.pid !== undefined && gateway.exitCode === null) {
      process.kill(-gateway.pid, 'SIGTERM');
      await exitOf(gateway, 20_000).catch(() => process.kill(-gateway!.pid!, 'SIGKILL'));
    }
    if (work !== undefined) await rm(work, { recursive: true, force: true });
    process.stderr.write(`package-install: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  });

  it('both tarballs install with every engine satisfied', () => {
    for (const log of [gatewayInstallLog, clientInstallLog]) assert.doesNotMatch(log, /EBADENGINE/, log);
  });

  it('the gateway from its tarball serves the API and the dashboard', async () => {
    assert.equal((await call(base, 'GET', '/')).status, 200, gatewayOutput.text());
    assert.equal((await call(base, 'PUT', '/services/web/instances/w-1', { address: '10.0.0.1', port: 80 })).status, 201);
    assert.equal((await call(base, 'GET', '/services/web')).json.instances.length, 1);
  });

  it('the client install holds eventsource-parser and nothing of the server, under 1 MB', async () => {
    const tree = JSON.parse(await npm(clientDir, ['ls', '--all', '--json'])) as Parameters<typeof installedNames>[0];
    assert.deepEqual(installedNames(tree).sort(), [CLIENT_PACKAGE, 'eventsource-parser']);
    const bytes = await bytesUnder(join(clientDir, 'node_modules'));
    assert.ok(bytes < 1_000_000, `${bytes} bytes installed`);
  });

  it("the README's client example runs from the client tarball: registers, picks payments, deregisters on SIGTERM", async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const example = /## Client[^\n]*\n[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(example !== undefined && example.includes(`from '${CLIENT_PACKAGE}'`), 'the example imports the client package');
    await writeFile(join(clientDir, 'checkout.mjs'), example);
    assert.equal(
      (await call(base, 'PUT', '/services/payments/instances/p-1', { address: '10.9.0.1', port: 9000, tags: ['http'] })).status,
      201,
    );
    const port = await freePort();
    const checkout = launch(process.execPath, ['checkout.mjs'], {
      cwd: clientDir,
      env: { ...process.env, DISCOVERY_GATEWAY: base, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output = tail(checkout.stderr);
    try {
      await eventually(
        async () => (await call(base, 'GET', '/services/checkout')).json?.instances?.length === 1,
        15_000,
        'checkout registered',
      );
      assert.equal((await call(`http://127.0.0.1:${port}`, 'GET', '/')).text, 'payments at 10.9.0.1:9000\n');
      checkout.kill('SIGTERM');
      assert.deepEqual(await exitOf(checkout, 10_000), { code: 0, signal: null }, output.text());
      assert.deepEqual((await call(base, 'GET', '/services/checkout')).json.instances, []);
    } finally {
      checkout.kill('SIGKILL');
    }
  });

  it('discovery-agent from the client tarball registers a process and deregisters it on SIGTERM', async () => {
    const port = await freePort();
    const server = `require('node:http').createServer((q, s) => s.end('ok')).listen(${port}); process.on('SIGTERM', () => process.exit(0));`;
    const agent = launch(
      join(clientDir, 'node_modules', '.bin', 'discovery-agent'),
      [
        'run',
        '--gateway',
        base,
        '--service',
        'wrapped',
        '--address',
        '127.0.0.1',
        '--port',
        String(port),
        '--check',
        `http://127.0.0.1:${port}/`,
        '--',
        process.execPath,
        '-e',
        server,
      ],
      { cwd: clientDir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const output = tail(agent.stderr);
    try {
      await eventually(
        async () => (await call(base, 'GET', '/services/wrapped')).json?.instances?.length === 1,
        20_000,
        'the agent to register',
      );
      agent.kill('SIGTERM');
      assert.deepEqual(await exitOf(agent, 15_000), { code: 0, signal: null }, output.text());
      assert.match(output.text(), /deregistered wrapped\/127\.0\.0\.1:/);
      assert.deepEqual((await call(base, 'GET', '/services/wrapped')).json.instances, []);
    } finally {
      agent.kill('SIGKILL');
    }
  });

  it('a TypeScript consumer (module nodenext, strict, no skipLibCheck) typechecks against the installed client', async () => {
    const consumer = join(clientDir, 'consumer.ts');
    await writeFile(
      consumer,
      [
        `import { DiscoveryClient, GatewayRefusedError, type Instance, type ProblemCode, type WatchEvent } from '${CLIENT_PACKAGE}';`,
        `const client = new DiscoveryClient({ gateways: ['http://127.0.0.1:8080'] });`,
        `const registration = client.register({ service: 'api', address: '10.0.0.1', port: 80, ttl: 10 });`,
        `const first: Instance = await registration.registered();`,
        `for await (const event of client.watch('api')) {`,
        `  const e: WatchEvent = event;`,
        `  if (e.type !== 'snapshot') console.log(e.service, e.instance?.address, first.id);`,
        `}`,
        `try { await client.discover('api'); } catch (err) { if (err instanceof GatewayRefusedError) { const code: ProblemCode | undefined = err.code; console.log(code); } }`,
        '',
      ].join('\n'),
    );
    await writeFile(
      join(clientDir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: [],
        },
        files: ['consumer.ts'],
      }),
    );
    await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', clientDir]).catch(
      (err: { stdout?: string }) => {
        throw new Error(`tsc failed:\n${err.stdout}`);
      },
    );
  });
});
