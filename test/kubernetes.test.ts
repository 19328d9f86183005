// The Kubernetes manifests (deploy/kubernetes/), checked without a cluster: every
// file parses and kustomization.yaml lists them all; the gateway runs the image and
// entry point of the Dockerfile and docker-compose.yml with settings src/config.ts
// accepts, probes routes a real gateway answers, outlasts its own drain before
// SIGKILL, runs as non-root on a read-only root filesystem, and reads a tokens
// Secret the gateway's own parser accepts; the example workload's discovery-agent
// arguments pass the agent's own parser and its token may write its service.
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseInvocation } from '../src/agent/cli.ts';
import { TokenSet } from '../src/auth/tokens.ts';
import { loadConfig } from '../src/config.ts';
import { startGateway, type TestGateway } from './helpers/gateway.ts';

const root = new URL('..', import.meta.url).pathname;
const DIR = 'deploy/kubernetes';
const read = (path: string) => readFileSync(join(root, path), 'utf8');

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}
interface Probe {
  httpGet: { path: string; port: string | number };
  periodSeconds?: number;
  failureThreshold?: number;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; runAsGroup?: number; fsGroup?: number };
  containers: Container[];
  volumes?: { name: string; secret?: { secretName: string; defaultMode?: number; items?: { key: string; path: string }[] } }[];
}
type Labels = Record<string, string>;
interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Labels };
  spec?: {
    replicas?: number;
    selector?: Labels | { matchLabels: Labels };
    template?: { metadata: { labels: Labels; annotations?: Record<string, string> }; spec: PodSpec };
    ports?: { name?: string; port: number; targetPort: string | number }[];
    minAvailable?: number;
    maxUnavailable?: number;
  };
  stringData?: Record<string, string>;
}

const files = readdirSync(join(root, DIR)).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'));
const resources = new Map<string, Resource[]>(
  files
    .filter((f) => f !== 'kustomization.yaml')
    .map((f) => [
      f,
      parseAllDocuments(read(join(DIR, f))).map((d) => {
        assert.deepEqual(d.errors, [], `${f} parses`);
        return d.toJS() as Resource;
      }),
    ]),
);
const all = [...resources.values()].flat();
const find = (kind: string, name: string) => {
  const r = all.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(r, `${kind} ${name} in ${DIR}`);
  return r;
};
const deployment = find('Deployment', 'discovery-gateway');
const pod = deployment.spec!.template!.spec;
const gatewayContainer = pod.containers[0]!;
const workload = find('Deployment', 'hello');
const matches = (selector: Labels, labels: Labels) => Object.entries(selector).every(([k, v]) => labels[k] === v);
const plainEnv = (c: Container) => Object.fromEntries((c.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
const secretValue = (ref: { name: string; key: string }) => find('Secret', ref.name).stringData?.[ref.key];

/** Names the gateway reads from the environment: the keys of EnvSchema in src/config.ts. */
function configNames(): Set<string> {
  const src = read('src/config.ts');
  const body = src.slice(src.indexOf('const EnvSchema'), src.indexOf('});', src.indexOf('const EnvSchema')));
  return new Set([...body.matchAll(/^\s+([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]!));
}

/** A numeric constant of the gateway (`const NAME = 3000;`), wherever in src/ it lives. */
function sourceConstant(name: string): number {
  const walk = (dir: string): string[] =>
    readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    );
  for (const file of walk('src')) {
    const m = new RegExp(`const ${name} = ([0-9_]+);`).exec(read(file));
    if (m) return Number(m[1]!.replace(/_/g, ''));
  }
  assert.fail(`no const ${name} in src/`);
}

/** Seconds a preStop hook holds the container before SIGTERM. */
function preStopSeconds(c: Container): number {
  const hook = c.lifecycle?.preStop;
  if (!hook) return 0;
  if (hook.sleep) return hook.sleep.seconds;
  const [cmd, seconds] = hook.exec!.command;
  assert.equal(cmd, 'sleep', 'a preStop that only waits');
  return Number(seconds);
}

function assertHardened(spec: PodSpec, what: string): void {
  assert.equal(spec.securityContext?.runAsNonRoot, true, `${what}: runAsNonRoot`);
  // The image's USER is a name: the kubelet can only verify runAsNonRoot against a number.
  assert.ok((spec.securityContext?.runAsUser ?? 0) > 0, `${what}: a numeric non-root runAsUser`);
  for (const c of spec.containers) {
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${what}/${c.name}: read-only root filesystem`);
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${what}/${c.name}: no privilege escalation`);
    assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${what}/${c.name}: no capabilities`);
    assert.ok(
      c.resources?.requests?.cpu && c.resources.requests.memory && c.resources.limits?.memory,
      `${what}/${c.name}: CPU and memory requests, a memory limit`,
    );
  }
}

describe('Kubernetes manifests', () => {
  let gw: TestGateway;
  before(async () => (gw = await startGateway()));
  after(async () => gw?.close());

  it('are all listed in kustomization.yaml, which lists nothing else', () => {
    const kustomization = parseYaml(read(join(DIR, 'kustomization.yaml'))) as { kind: string; resources: string[] };
    assert.equal(kustomization.kind, 'Kustomization');
    assert.deepEqual([...kustomization.resources].sort(), [...resources.keys()].sort());
    for (const r of all) assert.ok(r.apiVersion && r.kind && r.metadata?.name, `every document is a named resource`);
  });

  it('run the gateway image and entry point of docker-compose.yml, two replicas, with settings src/config.ts accepts', () => {
    const compose = parseYaml(read('docker-compose.yml'), { merge: true }) as {
      services: Record<string, { image: string; command: string[] }>;
    };
    assert.equal(deployment.spec!.replicas, 2);
    assert.equal(pod.containers.length, 1);
    assert.equal(gatewayContainer.image, compose.services['gateway-1']!.image);
    assert.deepEqual(gatewayContainer.command, compose.services['gateway-1']!.command);
    const names = configNames();
    assert.ok(names.has('ETCD_ENDPOINTS') && names.size > 10, 'read the EnvSchema names');
    for (const e of gatewayContainer.env!) assert.ok(names.has(e.name), `${e.name} is not a setting of src/config.ts`);
    const config = loadConfig(plainEnv(gatewayContainer)); // throws, naming the variable, on a bad value
    assert.equal(config.store.kind, 'etcd');
    assert.equal(config.host, '0.0.0.0');
    assert.deepEqual(
      gatewayContainer.ports!.map((p) => p.containerPort),
      [config.port],
      'the container port is PORT',
    );
    const scrape = deployment.spec!.template!.metadata.annotations ?? {};
    assert.deepEqual(
      [scrape['prometheus.io/port'], scrape['prometheus.io/path']],
      [String(config.port), '/metrics'],
      'scrape annotations name the metrics port',
    );
  });

  it('probe liveness on /health/live and readiness on /health/ready, routes a gateway answers, on its port', async () => {
    const { livenessProbe, readinessProbe, startupProbe } = gatewayContainer;
    assert.equal(livenessProbe?.httpGet.path, '/health/live', 'liveness never follows etcd (docs/operations-observability.md)');
    assert.equal(readinessProbe?.httpGet.path, '/health/ready');
    const port = gatewayContainer.ports![0]!;
    for (const probe of [livenessProbe!, readinessProbe!, startupProbe!]) {
      assert.ok(
        probe.httpGet.port === port.name || probe.httpGet.port === port.containerPort,
        `${probe.httpGet.path} probes port ${port.containerPort}`,
      );
      assert.equal((await gw.request('GET', probe.httpGet.path)).status, 200, `a gateway answers ${probe.httpGet.path}`);
    }
    // Start-up waits for the store up to STARTUP_TIMEOUT_MS, then exits: the startup probe waits longer.
    const startupBudget = (startupProbe!.periodSeconds ?? 10) * (startupProbe!.failureThreshold ?? 3);
    assert.ok(startupBudget * 1000 > sourceConstant('STARTUP_TIMEOUT_MS'), `startup probe budget ${startupBudget} s`);
  });

  it('give SIGTERM time to drain: the preStop wait plus SHUTDOWN_GRACE_SECONDS fit in terminationGracePeriodSeconds', () => {
    const config = loadConfig(plainEnv(gatewayContainer));
    // closeWithGrace (src/main.ts) ends the process SHUTDOWN_GRACE_SECONDS after SIGTERM at the latest;
    // requests in flight get the drain (ETCD_TIMEOUT_MS + 4 s) of that.
    assert.ok(config.shutdownGraceSeconds * 1000 > config.drainMs, 'SHUTDOWN_GRACE_SECONDS leaves requests in flight their drain time');
    const needed = preStopSeconds(gatewayContainer) + config.shutdownGraceSeconds;
    assert.ok(
      pod.terminationGracePeriodSeconds! > needed,
      `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} > ${needed}`,
    );
  });

  it('run every container as non-root on a read-only root filesystem, with resources', () => {
    assertHardened(pod, 'discovery-gateway');
    assertHardened(workload.spec!.template!.spec, 'hello');
  });

  it('put the gateway behind a Service and a disruption budget that select its pods', () => {
    const labels = deployment.spec!.template!.metadata.labels;
    assert.ok(matches((deployment.spec!.selector as { matchLabels: Labels }).matchLabels, labels));
    const service = find('Service', 'discovery-gateway');
    assert.ok(matches(service.spec!.selector as Labels, labels), 'the Service selects the gateway pods');
    const port = gatewayContainer.ports![0]!;
    assert.ok(
      service.spec!.ports!.every((p) => p.targetPort === port.name || p.targetPort === port.containerPort),
      'the Service targets the gateway port',
    );
    const pdb = all.find((r) => r.kind === 'PodDisruptionBudget');
    assert.ok(
      pdb && matches((pdb.spec!.selector as { matchLabels: Labels }).matchLabels, labels),
      'a PodDisruptionBudget selects the gateway pods',
    );
    // A budget that allows no eviction at all would block every node drain.
    const replicas = deployment.spec!.replicas!;
    assert.ok(
      pdb.spec!.minAvailable !== undefined
        ? pdb.spec!.minAvailable >= 1 && pdb.spec!.minAvailable < replicas
        : pdb.spec!.maxUnavailable! >= 1,
    );
  });

  it('mount a tokens Secret the gateway accepts at AUTH_TOKENS_FILE, readable by its user', () => {
    const file = plainEnv(gatewayContainer).AUTH_TOKENS_FILE!;
    assert.ok(file, 'AUTH_TOKENS_FILE is set');
    const mount = gatewayContainer.volumeMounts!.find((m) => file.startsWith(`${m.mountPath}/`));
    assert.ok(mount, `a volume is mounted where ${file} is`);
    const volume = pod.volumes!.find((v) => v.name === mount.name)!;
    assert.ok(volume.secret, `${file} comes from a Secret`);
    const relative = file.slice(mount.mountPath.length + 1);
    const key = volume.secret.items?.find((i) => i.path === relative)?.key ?? relative;
    const text = find('Secret', volume.secret.secretName).stringData?.[key];
    assert.ok(text, `Secret ${volume.secret.secretName} has ${key}`);
    assert.doesNotThrow(() => TokenSet.parse(text), 'the gateway parses the tokens file (an empty list is refused)');
    // Secret files belong to root and the pod's fsGroup: the gateway's group must be able to read.
    assert.equal(pod.securityContext!.fsGroup, pod.securityContext!.runAsGroup);
    assert.ok((volume.secret.defaultMode ?? 0o644) & 0o040, 'the Secret is group-readable');
  });

  it('register the example workload with discovery-agent through the Service, with a token that may write it', () => {
    const spec = workload.spec!.template!.spec;
    const c = spec.containers[0]!;
    assert.equal(c.image, gatewayContainer.image, 'the gateway image has node and the agent');
    assert.deepEqual(c.command, ['discovery-agent', 'run']);
    // Kubernetes expands $(VAR) in args from the container's env; the downward API gives a pod IP and name.
    const example: Record<string, string> = { 'status.podIP': '10.1.2.3', 'metadata.name': 'hello-7d4b9-x2x8q' };
    const env: Record<string, string> = {};
    for (const e of c.env!)
      env[e.name] =
        e.value ?? (e.valueFrom?.fieldRef ? example[e.valueFrom.fieldRef.fieldPath]! : secretValue(e.valueFrom!.secretKeyRef!)!);
    const argv = [...c.command!.slice(1), ...c.args!].map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (_, name: string) => env[name]!));
    const invocation = parseInvocation(argv, env); // throws a UsageError naming a bad flag
    assert.equal(invocation.kind, 'run');
    const { options } = invocation as Extract<typeof invocation, { kind: 'run' }>;

    const service = find('Service', 'discovery-gateway');
    assert.equal(options.gateway.hostname, service.metadata.name, 'the agent finds the gateway through its Service');
    assert.equal(Number(options.gateway.port), service.spec!.ports![0]!.port);
    assert.equal(options.address, '10.1.2.3');
    assert.deepEqual(
      c.ports!.map((p) => p.containerPort),
      [options.port],
      'the registered port is the one the container serves',
    );
    assert.equal(Number(options.check!.port), options.port, 'the check asks the wrapped server');
    assert.ok(options.command.length > 0, 'the agent wraps the server');

    const tokens = TokenSet.parse(find('Secret', 'discovery-gateway-tokens').stringData!['tokens.json']!);
    const token = tokens.lookup(options.token!);
    assert.ok(token?.canWrite(options.service), `the workload's token may write ${options.service}`);
    // SIGTERM: the agent deregisters, waits --drain, signals the server and SIGKILLs it --grace later.
    assert.ok(spec.terminationGracePeriodSeconds! > options.drain + options.grace, 'the pod outlasts the agent\u2019s drain and grace');
  });
});
