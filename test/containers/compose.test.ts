// docker-compose.yml run for real, on podman, by `npm run test:containers`
// (scripts/containers/test.sh builds the images first: GATEWAY_IMAGE from the Dockerfile,
// ETCD_IMAGE from Debian's etcd-server). Its etcd and gateway services run as the file
// writes them (image, command, environment, volumes, read_only, stop_grace_period), with
// two changes: host networking on loopback ports chosen here (service names become
// 127.0.0.1:<port>), and the local images. Each service is one `podman run`:
// podman-compose 1.0.3 (Debian's) joins every container to a bridge network even with
// `network_mode: host`, which podman then refuses. A three-member etcd, two gateways;
// a write through one is read through the other; the gateway runs as non-root on a
// read-only root file system; SIGTERM drains within SHUTDOWN_GRACE_SECONDS. Prometheus,
// Grafana and the example `hello` are not run here: see the last test.
import { parse as parseYaml } from 'yaml';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { eventually, instanceBody } from '../helpers/gateway.ts';
import { freePort } from '../helpers/ports.ts';
import { SseStream } from '../helpers/sse.ts';

const run = promisify(execFile);
const root = new URL('../..', import.meta.url).pathname;
const GATEWAY_IMAGE = process.env.GATEWAY_IMAGE ?? 'etcd-discovery-gateway:local';
const ETCD_IMAGE = process.env.ETCD_IMAGE;

interface Service {
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  read_only?: boolean;
  stop_grace_period?: string;
}
type Compose = { services: Record<string, Service>; volumes?: Record<string, unknown> };

const seconds = (d: string) => Number(/^(\d+)s$/.exec(d)?.[1] ?? NaN);
const podman = async (...args: string[]) => (await run('podman', args, { maxBuffer: 16 << 20 })).stdout.trim();

describe('docker-compose.yml on podman', { skip: !ETCD_IMAGE && 'run by `npm run test:containers`' }, () => {
  const project = `edg-containers-${process.pid}`;
  const container = (service: string) => `${project}-${service}`;
  let original: Compose;
  const gatewayUrl = new Map<string, string>();
  const etcdClient = new Map<string, string>();

  /** `podman run` arguments for a compose service, on the host network. */
  const runArgs = (name: string, s: Service) => [
    '--detach',
    `--name=${container(name)}`,
    '--network=host',
    ...(s.read_only ? ['--read-only'] : []),
    ...(s.stop_grace_period ? [`--stop-timeout=${seconds(s.stop_grace_period)}`] : []),
    ...Object.entries(s.environment ?? {}).map(([k, v]) => `--env=${k}=${v}`),
    // A named volume of the file becomes one of this run, removed with its container.
    ...(s.volumes ?? []).map((v) => `--volume=${project}-${v}`),
    s.image!,
    ...(s.command ?? []),
  ];

  before(async () => {
    original = parseYaml(await readFile(join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as Compose;
    const etcds = Object.keys(original.services).filter((n) => /^etcd-\d+$/.test(n));
    const gateways = Object.keys(original.services).filter((n) => /^gateway-\d+$/.test(n));
    // Every `<etcd-N>:2379|2380` (and a member's own 0.0.0.0/127.0.0.1 listeners) becomes a loopback port.
    const ports = new Map<string, { client: number; peer: number }>();
    for (const name of etcds) ports.set(name, { client: await freePort(), peer: await freePort() });
    const onLoopback = (text: string, self?: string) =>
      text
        .replace(/\b(etcd-\d+):(2379|2380)\b/g, (_, n: string, p: string) => `127.0.0.1:${ports.get(n)![p === '2379' ? 'client' : 'peer']}`)
        .replace(
          /\b(?:0\.0\.0\.0|127\.0\.0\.1):(2379|2380)\b/g,
          (_, p: string) => `127.0.0.1:${ports.get(self!)![p === '2379' ? 'client' : 'peer']}`,
        );

    const services: Record<string, Service> = {};
    for (const name of etcds) {
      services[name] = { ...(JSON.parse(onLoopback(JSON.stringify(original.services[name]), name)) as Service), image: ETCD_IMAGE! };
      etcdClient.set(name, `http://127.0.0.1:${ports.get(name)!.client}`);
    }
    for (const name of gateways) {
      const port = await freePort();
      const s = JSON.parse(onLoopback(JSON.stringify(original.services[name]))) as Service;
      services[name] = { ...s, image: GATEWAY_IMAGE, environment: { ...s.environment!, HOST: '127.0.0.1', PORT: String(port) } };
      gatewayUrl.set(name, `http://127.0.0.1:${port}`);
    }
    for (const [name, s] of Object.entries(services)) await podman('run', ...runArgs(name, s));
  });

  after(async () => {
    const names = [...etcdClient.keys(), ...gatewayUrl.keys()].map(container);
    // A second try: podman may report a container that is stopping as not removable.
    for (let i = 0; i < 2; i++) await podman('rm', '--force', '--volumes', '--time=2', ...names).catch(() => {});
    const volumes = Object.keys(original?.volumes ?? {}).map((v) => `${project}-${v}`);
    await podman('volume', 'rm', '--force', ...volumes).catch(() => {});
    const left = await podman('ps', '--all', '--quiet', `--filter=name=${project}`);
    assert.equal(left, '', `containers left behind: ${left}`);
  });

  const ready = (name: string) =>
    eventually(
      async () => (await fetch(`${gatewayUrl.get(name)}/health/ready`).catch(() => undefined))?.status === 200,
      120_000,
      `${name} ready`,
    );

  it('forms a three-member etcd cluster and serves two gateways on it', async () => {
    await Promise.all([...gatewayUrl.keys()].map(ready));
    const [first] = etcdClient.keys();
    const list = await podman(
      'exec',
      container(first!),
      'etcdctl',
      `--endpoints=${etcdClient.get(first!)}`,
      'member',
      'list',
      '-w',
      'json',
    );
    assert.equal((JSON.parse(list) as { members: unknown[] }).members.length, 3);
  });

  it('serves through one gateway what was registered through the other', async () => {
    const [one, other] = [...gatewayUrl.values()];
    const put = await fetch(`${one}/services/containers-test/instances/a`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(instanceBody('10.0.0.1', 8000, { ttl: 0 })),
    });
    assert.equal(put.status, 201, await put.text());
    await eventually(
      async () => {
        const body = (await (await fetch(`${other}/services/containers-test`)).json()) as { instances: { id: string }[] };
        return body.instances.some((i) => i.id === 'a');
      },
      10_000,
      'the instance through the other gateway',
    );
  });

  it('runs the gateway as a non-root user on a read-only root file system', async () => {
    const name = container('gateway-1');
    assert.equal(original.services['gateway-1']!.read_only, true, 'docker-compose.yml asks for a read-only root file system');
    assert.equal(await podman('inspect', '--format', '{{.HostConfig.ReadonlyRootfs}}', name), 'true');
    assert.equal(await podman('exec', name, 'id', '-u'), '1000');
    await assert.rejects(podman('exec', name, 'touch', '/app/written'), /Read-only file system/);
  });

  it('drains on SIGTERM within SHUTDOWN_GRACE_SECONDS, ending change streams, exit code 0; starts again', async (t) => {
    const name = 'gateway-1';
    const grace = Number(original.services[name]!.environment!.SHUTDOWN_GRACE_SECONDS);
    const stopGrace = seconds(original.services[name]!.stop_grace_period!);
    assert.ok(stopGrace > grace, 'the engine waits longer than the drain before SIGKILL');
    const stream = await new SseStream(`${gatewayUrl.get(name)}/events`).connect();
    assert.equal(stream.status, 200);

    const stopping = performance.now();
    await podman('stop', '-t', String(stopGrace), container(name));
    const drainMs = performance.now() - stopping;
    await stream.ended;
    assert.equal(stream.endReason, 'end', 'the gateway ended the stream itself');
    assert.equal(await podman('inspect', '--format', '{{.State.ExitCode}}', container(name)), '0');
    assert.ok(drainMs < grace * 1000, `stopped in ${Math.round(drainMs)} ms, within ${grace} s`);
    assert.match(await podman('logs', container(name)), /"msg":"draining"/);

    const starting = performance.now();
    await podman('start', container(name));
    await ready(name);
    const image = JSON.parse(await podman('image', 'inspect', GATEWAY_IMAGE)) as { Size: number }[];
    t.diagnostic(`drain ${Math.round(drainMs)} ms; start to ready ${Math.round(performance.now() - starting)} ms`);
    t.diagnostic(`image ${GATEWAY_IMAGE}: ${(image[0]!.Size / 1e6).toFixed(0)} MB`);
    // prom/prometheus and grafana/grafana come from registries this machine cannot reach
    // (Grafana is not packaged by Debian); test/deploy.test.ts runs `promtool check config`
    // on deploy/prometheus.yml, test/grafana.test.ts checks every dashboard query against a
    // gateway, and the `hello` service's agent arguments are parsed by test/deploy.test.ts.
    t.diagnostic('not run in containers: prometheus, grafana, hello (checked statically by deploy.test.ts and grafana.test.ts)');
  });
});
