// The deployment files, checked without a Docker engine: docker-compose.yml
// parses and describes the topology test/cluster.test.ts runs (three etcd
// members, two gateways listing all three), its settings are the gateway's own
// (src/config.ts), the Dockerfile's entry point is `npm start`'s, everything it
// copies exists, its HEALTHCHECK one-liner works against a real gateway, the
// runtime image's production dependencies cover every import, and Prometheus's
// configuration passes `promtool check config`.
import { parse as parseYaml } from 'yaml';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { loadConfig } from '../src/config.ts';
import { MAX_BATCH_OPS } from '../src/rules.ts';
import { startGateway, type TestGateway } from './helpers/gateway.ts';

const root = new URL('..', import.meta.url).pathname;
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const yaml = { load: (text: string): unknown => parseYaml(text, { merge: true }) };

interface ComposeService {
  image?: string;
  build?: string | { context: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  depends_on?: Record<string, unknown> | string[];
  stop_grace_period?: string;
  volumes?: string[];
}
const compose = yaml.load(read('docker-compose.yml')) as { services: Record<string, ComposeService>; volumes?: Record<string, unknown> };
const services = compose.services;
const etcdNames = Object.keys(services).filter((n) => /^etcd-\d+$/.test(n));
const gatewayNames = Object.keys(services).filter((n) => /^gateway-\d+$/.test(n));
const flag = (cmd: string[], name: string) => cmd.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

/** The Dockerfile's instructions (continuation lines joined, comments dropped). */
const dockerfile = read('Dockerfile')
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const instructions = (word: string) => dockerfile.filter((l) => l.toUpperCase().startsWith(`${word} `));
const execForm = (line: string) => JSON.parse(line.slice(line.indexOf('['))) as string[];
const entryPoint = execForm(instructions('CMD').at(-1)!);

/** Names the gateway reads from the environment: the keys of EnvSchema in src/config.ts. */
function configNames(): Set<string> {
  const src = read('src/config.ts');
  const body = src.slice(src.indexOf('const EnvSchema'), src.indexOf('});', src.indexOf('const EnvSchema')));
  return new Set([...body.matchAll(/^\s+([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]!));
}

describe('docker-compose.yml', () => {
  it('runs a three-member etcd cluster from the official image, with auto-compaction and the txn limit the gateway relies on', () => {
    assert.equal(etcdNames.length, 3);
    const peers = new Map<string, string>();
    for (const name of etcdNames) {
      const s = services[name]!;
      assert.match(s.image ?? '', /^(quay\.io\/coreos\/etcd|gcr\.io\/etcd-development\/etcd):v3\.5\.\d+$/, `${name} image`);
      const cmd = s.command!;
      assert.equal(flag(cmd, 'name'), name);
      assert.equal(flag(cmd, 'advertise-client-urls'), `http://${name}:2379`);
      peers.set(name, flag(cmd, 'initial-advertise-peer-urls')!);
      assert.ok(flag(cmd, 'auto-compaction-retention'), `${name} sets --auto-compaction-retention`);
      assert.equal(Number(flag(cmd, 'max-txn-ops')), MAX_BATCH_OPS, `${name} --max-txn-ops matches the gateway's batch limit`);
      assert.ok(
        s.volumes?.some((v) => v.endsWith(':/etcd-data')) && flag(cmd, 'data-dir') === '/etcd-data',
        `${name} keeps its data in a volume`,
      );
    }
    const expected = etcdNames.map((n) => `${n}=${peers.get(n)}`).join(',');
    for (const name of etcdNames) assert.equal(flag(services[name]!.command!, 'initial-cluster'), expected, `${name} --initial-cluster`);
  });

  it('passes etcd only flags it knows, and forms its cluster with the flags the test clusters use', () => {
    const help = spawnSync(process.env.ETCD_BIN ?? 'etcd', ['--help'], { encoding: 'utf8' });
    const known = new Set([...`${help.stdout}${help.stderr}`.matchAll(/--([a-z0-9-]+)/g)].map((m) => m[1]!));
    assert.ok(known.has('initial-cluster'), 'etcd --help lists its flags');
    // The flags that form the cluster (TLS and logging differ between the two on purpose).
    const helperFlags = new Set([...read('test/helpers/etcd.ts').matchAll(/'--([a-z-]+)'/g)].map((m) => m[1]!));
    const topology = [
      'name',
      'data-dir',
      'listen-client-urls',
      'advertise-client-urls',
      'listen-peer-urls',
      'initial-advertise-peer-urls',
      'initial-cluster',
      'initial-cluster-token',
      'initial-cluster-state',
    ];
    for (const f of topology) assert.ok(helperFlags.has(f), `test/helpers/etcd.ts sets --${f}`);
    const helper = new Set(topology);
    for (const name of etcdNames) {
      const flags = services[name]!.command!.filter((a) => a.startsWith('--')).map((a) => a.slice(2).split('=')[0]!);
      for (const f of flags) assert.ok(known.has(f), `${name}: etcd has no --${f}`);
      for (const f of helper) assert.ok(flags.includes(f), `${name}: --${f} (the tests set it) is missing`);
    }
  });

  it('runs two gateway replicas with every etcd endpoint and settings the gateway knows', () => {
    assert.ok(gatewayNames.length >= 2, 'at least two replicas');
    const names = configNames();
    assert.ok(names.has('ETCD_ENDPOINTS') && names.size > 10, 'read the EnvSchema names');
    const hostPorts = new Set<string>();
    for (const name of gatewayNames) {
      const s = services[name]!;
      const env = s.environment!;
      for (const key of Object.keys(env)) assert.ok(names.has(key), `${name}: ${key} is not a setting of src/config.ts`);
      const config = loadConfig(env); // throws, naming the variable, on a bad value
      assert.equal(config.store.kind, 'etcd');
      assert.deepEqual(
        config.store.kind === 'etcd' && config.store.endpoints,
        etcdNames.map((n) => `http://${n}:2379`),
        `${name} lists every member`,
      );
      assert.equal(config.host, '0.0.0.0');
      const [hostPort, containerPort] = s.ports![0]!.split(':');
      assert.equal(Number(containerPort), config.port, `${name} publishes its PORT`);
      assert.ok(!hostPorts.has(hostPort!), `${name} host port ${hostPort} is unique`);
      hostPorts.add(hostPort!);
      assert.deepEqual(s.command, entryPoint, `${name} runs the image's entry point`);
      assert.ok(s.build === '.' || (typeof s.build === 'object' && s.build.context === '.'), `${name} is built from this Dockerfile`);
      assert.ok(parseFloat(s.stop_grace_period ?? '10s') > config.shutdownGraceSeconds, `${name} stop_grace_period outlasts the drain`);
      assert.deepEqual(Object.keys(s.depends_on ?? {}).sort(), [...etcdNames].sort());
    }
    // Replicas must agree on the prefix (the same keys) and the defaults clients see.
    const envs = gatewayNames.map((n) => services[n]!.environment!);
    for (const e of envs.slice(1)) assert.deepEqual(e, envs[0]);
  });

  it('registers an example service through discovery-agent against a gateway replica', () => {
    const hello = services.hello!;
    const cmd = hello.command!;
    assert.deepEqual(cmd.slice(0, 2), ['discovery-agent', 'run']);
    const arg = (name: string) => cmd[cmd.indexOf(`--${name}`) + 1];
    assert.match(
      arg('gateway')!,
      new RegExp(`^http://(${gatewayNames.join('|')}):${loadConfig(services[gatewayNames[0]!]!.environment!).port}$`),
    );
    assert.equal(arg('service'), 'hello');
    assert.ok(cmd.includes('--'), 'the agent wraps a command');
    assert.match(
      cmd.slice(cmd.indexOf('--') + 1).join(' '),
      new RegExp(`listen\\(${arg('port')}\\)`),
      'the command serves the registered port',
    );
    assert.equal(hello.image, services[gatewayNames[0]!]!.image, 'the gateway image has node and the agent');
  });

  it('scrapes every gateway replica and etcd member with Prometheus', async () => {
    const prom = yaml.load(read('deploy/prometheus.yml')) as {
      scrape_configs: { job_name: string; metrics_path?: string; static_configs?: { targets: string[] }[] }[];
    };
    const targets = (job: string) => prom.scrape_configs.find((j) => j.job_name === job)!.static_configs!.flatMap((c) => c.targets);
    const port = loadConfig(services[gatewayNames[0]!]!.environment!).port;
    assert.deepEqual(
      targets('discovery-gateway'),
      gatewayNames.map((n) => `${n}:${port}`),
    );
    assert.deepEqual(
      targets('etcd'),
      etcdNames.map((n) => `${n}:2379`),
    );
    assert.ok(
      services.prometheus!.volumes!.some((v) => v.startsWith('./deploy/prometheus.yml:/etc/prometheus/prometheus.yml')),
      'Prometheus is given deploy/prometheus.yml',
    );
    const { stdout } = await promisify(execFile)(process.env.PROMTOOL_BIN ?? 'promtool', [
      'check',
      'config',
      join(root, 'deploy/prometheus.yml'),
    ]);
    assert.match(stdout, /SUCCESS/);
  });
});

describe('Dockerfile', () => {
  let gw: TestGateway;
  before(async () => (gw = await startGateway()));
  after(async () => gw?.close());

  it('builds in one stage and runs production dependencies only, from node:20-bookworm-slim, as a non-root user', () => {
    const froms = instructions('FROM');
    assert.ok(froms.length >= 2, 'multi-stage');
    assert.ok(
      dockerfile.some((l) => l === 'ARG NODE_IMAGE=node:20-bookworm-slim') || froms.every((f) => f.includes('node:20-bookworm-slim')),
    );
    const runtimeAt = dockerfile.lastIndexOf(froms.at(-1)!);
    const buildRuns = instructions('RUN').filter((l) => dockerfile.indexOf(l) < runtimeAt);
    const runtimeRuns = instructions('RUN').filter((l) => dockerfile.indexOf(l) > runtimeAt);
    assert.ok(
      buildRuns.some((l) => /npm ci(?! --omit)/.test(l)) && buildRuns.some((l) => l.includes('npm run build')),
      'build stage: npm ci && npm run build',
    );
    assert.ok(
      runtimeRuns.some((l) => l.includes('npm ci --omit=dev')),
      'runtime stage: npm ci --omit=dev',
    );
    const user = instructions('USER').at(-1);
    assert.ok(user && !/^USER\s+(root|0)(:|$)/.test(user), 'runs as a non-root user');
    assert.ok(dockerfile.indexOf(user) > runtimeAt);
  });

  it('runs the same entry point as npm start', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; bin: Record<string, string> };
    // `exec`: the shell npm runs the script in becomes the gateway, so npm's SIGTERM reaches it.
    assert.deepEqual(entryPoint, pkg.scripts.start!.replace(/^exec /, '').split(' '));
    assert.ok(
      existsSync(join(root, 'src', `${entryPoint[1]!.replace(/^dist\//, '').replace(/\.js$/, '.ts')}`)),
      'the entry point is compiled from src/',
    );
    const build = JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { outDir: string } };
    assert.equal(build.compilerOptions.outDir, 'dist');
  });

  it('copies only files that exist and that .dockerignore lets through', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const must of ['node_modules', 'dist', '.git']) assert.ok(ignored.includes(must), `.dockerignore leaves out ${must}`);
    const workdir = instructions('WORKDIR').at(-1)!.split(/\s+/)[1]!;
    for (const line of instructions('COPY')) {
      const parts = line.split(/\s+/).slice(1);
      const from = parts.find((p) => p.startsWith('--from='));
      const paths = parts.filter((p) => !p.startsWith('--'));
      const sources = paths.slice(0, -1);
      if (from) {
        // From the build stage: only what `npm run build` makes (dist/, tsconfig.build.json's outDir).
        assert.deepEqual(sources, [`${workdir}/dist`], line);
        continue;
      }
      for (const src of sources) {
        const matches = src.includes('*')
          ? readdirSync(root).filter((f) => new RegExp(`^${src.replace(/\./g, '\\.').replace(/\*/g, '.*')}$`).test(f))
          : [src];
        assert.ok(matches.length > 0 && matches.every((m) => existsSync(join(root, m))), `${line}: ${src} exists`);
        for (const m of matches)
          assert.ok(!ignored.some((ig) => m === ig || m.startsWith(`${ig}/`)), `${line}: ${m} is excluded by .dockerignore`);
      }
    }
    const copied = instructions('COPY').flatMap((l) => (l.includes('--from=') ? [] : l.split(/\s+/).slice(1, -1)));
    for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'ui', 'bin', 'openapi']) {
      assert.ok(copied.includes(needed), `the Dockerfile copies ${needed}`);
    }
  });

  it('puts discovery-agent on the PATH, pointing at the package’s bin entry', () => {
    const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string> };
    const link = instructions('RUN').find((l) => l.includes('/usr/local/bin/discovery-agent'));
    assert.ok(link, 'a link in /usr/local/bin');
    const workdir = instructions('WORKDIR').at(-1)!.split(/\s+/)[1]!;
    assert.ok(link.includes(`${workdir}/${pkg.bin['discovery-agent']}`));
    assert.ok(statSync(join(root, pkg.bin['discovery-agent']!)).mode & 0o111, 'bin/discovery-agent is executable');
  });

  it('needs no dev dependency at run time: every package src/ imports is a production dependency', () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(dir, e.name));
        else if (e.name.endsWith('.ts')) files.push(join(dir, e.name));
      }
    };
    walk('src');
    const missing: string[] = [];
    for (const file of files) {
      for (const m of read(file).matchAll(/^import\s+(?!type\b)[^'"]*?from\s+'([^'.][^']*)'/gm)) {
        const spec = m[1]!;
        if (spec.startsWith('node:') || builtinModules.includes(spec)) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!pkg.dependencies[name]) missing.push(`${file}: ${spec}`);
      }
    }
    assert.deepEqual(missing, []);
  });

  it('checks health on a real route with a one-liner that works', async () => {
    const hc = instructions('HEALTHCHECK')[0]!;
    const cmd = execForm(hc);
    assert.equal(cmd[0], 'node', 'no curl in slim images');
    const path = /'(\/health\/[a-z]+)'/.exec(cmd.join(' '))![1];
    assert.equal(path, '/health/live');
    const live = await gw.request('GET', path!);
    assert.equal(live.status, 200);
    const port = new URL(gw.base).port;
    // Asynchronously: the gateway answering it runs in this process.
    const run = (env: Record<string, string>) =>
      new Promise<number | null>((resolve) => {
        const child = execFile(process.execPath, cmd.slice(1), { env: { PATH: process.env.PATH!, ...env }, timeout: 10_000 }, () =>
          resolve(child.exitCode),
        );
      });
    assert.equal(await run({ PORT: port }), 0, 'healthy gateway: exit 0');
    await gw.close();
    assert.equal(await run({ PORT: port }), 1, 'nothing listening: exit 1');
  });
});
