// The production overlay (deploy/kubernetes-tls/), checked without a cluster: rendered
// as `kubectl apply -k` would (its base, etcd.yaml, and its patches merged the way
// kustomize merges them), the gateway serves HTTPS with a certificate from a Secret and
// is probed over HTTPS on routes a TLS gateway answers, reaches every member of the etcd
// StatefulSet over https:// with the private CA and a client certificate, reads its etcd
// password from a Secret, and no client sends a token in clear. Every setting that
// docs/operations.md "Production" quotes is the manifests' own.
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseInvocation } from '../src/agent/cli.ts';
import { loadConfig } from '../src/config.ts';
import { makeCerts, type TestCerts } from './helpers/certs.ts';
import { startGateway, type TestGateway } from './helpers/gateway.ts';

const root = new URL('..', import.meta.url).pathname;
const OVERLAY = 'deploy/kubernetes-tls';
const read = (path: string) => readFileSync(join(root, path), 'utf8');

type Json = Record<string, unknown>;
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}
interface Probe {
  httpGet: { path: string; port: string | number; scheme?: string };
}
interface Container {
  name: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number }[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  volumeMounts?: { name: string; mountPath: string }[];
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
}
interface Volume {
  name: string;
  secret?: { secretName: string };
  configMap?: { name: string };
}
interface PodSpec {
  containers: Container[];
  volumes?: Volume[];
}
interface Resource {
  kind: string;
  metadata: { name: string };
  spec?: {
    replicas?: number;
    serviceName?: string;
    clusterIP?: string;
    template?: { spec: PodSpec };
    ports?: { name?: string; port: number; targetPort?: string | number }[];
  };
}

/** The keys kustomize's strategic merge matches list items by (containers, env, volumes: name). */
const MERGE_KEYS = ['containerPort', 'port', 'mountPath', 'name'];

function merge(target: unknown, patch: unknown): unknown {
  if (Array.isArray(target) && Array.isArray(patch)) {
    const key = MERGE_KEYS.find((k) => patch.every((p) => typeof p === 'object' && p !== null && k in p));
    if (!key) return patch;
    const out = [...(target as Json[])];
    for (const p of patch as Json[]) {
      const i = out.findIndex((t) => t[key] === p[key]);
      if (i < 0) out.push(p);
      else out[i] = merge(out[i], p) as Json;
    }
    return out;
  }
  if (typeof target === 'object' && target && typeof patch === 'object' && patch && !Array.isArray(patch)) {
    const out: Json = { ...(target as Json) };
    for (const [k, v] of Object.entries(patch)) out[k] = k in out ? merge(out[k], v) : v;
    return out;
  }
  return patch;
}

const documents = (file: string) =>
  parseAllDocuments(read(file)).map((d) => {
    assert.deepEqual(d.errors, [], `${file} parses`);
    return d.toJS() as Resource;
  });

/** A kustomization's resources with its patches applied, its bases rendered first. */
function render(dir: string): Resource[] {
  const k = parseYaml(read(join(dir, 'kustomization.yaml'))) as { resources: string[]; patches?: { path: string }[] };
  const out = k.resources.flatMap((r) => (r.endsWith('.yaml') ? documents(join(dir, r)) : render(join(dir, r))));
  for (const { path } of k.patches ?? [])
    for (const patch of documents(join(dir, path))) {
      const i = out.findIndex((r) => r.kind === patch.kind && r.metadata.name === patch.metadata.name);
      assert.ok(i >= 0, `${path}: ${patch.kind} ${patch.metadata.name} is a resource of the base`);
      out[i] = merge(out[i], patch) as Resource;
    }
  return out;
}

const all = render(OVERLAY);
const find = (kind: string, name: string) => {
  const r = all.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(r, `${kind} ${name} in ${OVERLAY}`);
  return r;
};
const gatewayPod = find('Deployment', 'discovery-gateway').spec!.template!.spec;
const gateway = gatewayPod.containers[0]!;
const etcd = find('StatefulSet', 'etcd');
const etcdPod = etcd.spec!.template!.spec;
const env = (c: Container) => new Map((c.env ?? []).map((e) => [e.name, e]));
/** The env with a stand-in for each Secret value, as the kubelet would pass it. */
const resolvedEnv = (c: Container) =>
  Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? (e.valueFrom?.secretKeyRef ? 'from-a-secret' : 'from-the-pod')]));

/** The Secret (or ConfigMap) volume a file path lies in, and the key it reads. */
function mountedFile(pod: PodSpec, c: Container, file: string): { volume: Volume; key: string } {
  const mount = c.volumeMounts?.find((m) => file.startsWith(`${m.mountPath}/`));
  assert.ok(mount, `${c.name}: a volume is mounted where ${file} is`);
  const volume = pod.volumes!.find((v) => v.name === mount.name)!;
  return { volume, key: file.slice(mount.mountPath.length + 1) };
}

describe('Kubernetes production overlay (TLS)', () => {
  let certs: TestCerts;
  let gw: TestGateway;
  before(async () => {
    certs = await makeCerts();
    gw = await startGateway({ env: { TLS_CERT_FILE: certs.server.certFile, TLS_KEY_FILE: certs.server.keyFile } });
  });
  after(async () => {
    await gw?.close();
    await certs?.remove();
  });

  it('runs three gateway replicas that serve HTTPS with the certificate and key of a TLS Secret', () => {
    assert.equal(find('Deployment', 'discovery-gateway').spec!.replicas, 3);
    const config = loadConfig(resolvedEnv(gateway));
    assert.ok(config.tls, 'TLS_CERT_FILE and TLS_KEY_FILE are set');
    for (const [file, key] of [
      [config.tls.certFile, 'tls.crt'],
      [config.tls.keyFile, 'tls.key'],
    ] as const) {
      const mounted = mountedFile(gatewayPod, gateway, file);
      assert.equal(mounted.volume.secret?.secretName, 'discovery-gateway-tls', `${file} comes from the TLS Secret`);
      assert.equal(mounted.key, key, 'the key names of a kubernetes.io/tls Secret');
    }
  });

  it('probes over HTTPS, on the HTTPS port, routes a TLS gateway answers', async () => {
    const port = gateway.ports!.find((p) => p.containerPort === loadConfig(resolvedEnv(gateway)).port)!;
    const service = find('Service', 'discovery-gateway').spec!.ports![0]!;
    assert.equal(service.targetPort, port.name, 'the Service targets the HTTPS port');
    for (const probe of [gateway.startupProbe!, gateway.livenessProbe!, gateway.readinessProbe!]) {
      assert.equal(probe.httpGet.scheme, 'HTTPS', `${probe.httpGet.path}: an HTTP probe of a TLS port gets an empty reply`);
      assert.equal(probe.httpGet.port, port.name);
      const status = await new Promise<number | undefined>((ok, ko) =>
        request(`${gw.base}${probe.httpGet.path}`, { ca: readFileSync(certs.ca.certFile) }, (res) => ok(res.resume().statusCode))
          .on('error', ko)
          .end(),
      );
      assert.equal(status, 200, `a TLS gateway answers ${probe.httpGet.path}`);
    }
  });

  it('reaches every etcd member over https:// with the private CA and a client certificate, the password from a Secret', () => {
    const config = loadConfig(resolvedEnv(gateway));
    assert.equal(config.store.kind, 'etcd');
    const store = config.store as Extract<typeof config.store, { kind: 'etcd' }>;
    const members = Array.from({ length: etcd.spec!.replicas! }, (_, i) => `https://etcd-${i}.${etcd.spec!.serviceName}:2379`);
    assert.deepEqual(store.endpoints, members, 'ETCD_ENDPOINTS lists every member of the StatefulSet, over https');
    assert.equal(find('Service', etcd.spec!.serviceName!).spec!.clusterIP, 'None', 'a headless Service names each member');
    for (const [file, key] of [
      [store.caFile, 'ca.crt'],
      [store.certFile, 'tls.crt'],
      [store.keyFile, 'tls.key'],
    ] as const) {
      assert.ok(file, `ETCD_${key === 'ca.crt' ? 'CA' : key === 'tls.crt' ? 'CERT' : 'KEY'}_FILE is set`);
      const mounted = mountedFile(gatewayPod, gateway, file);
      assert.equal(mounted.volume.secret?.secretName, 'etcd-client-tls');
      assert.equal(mounted.key, key);
    }
    const password = env(gateway).get('ETCD_PASSWORD');
    assert.equal(password?.value, undefined, 'no password in the manifest');
    assert.deepEqual(password?.valueFrom?.secretKeyRef, { name: 'discovery-gateway-etcd', key: 'password' });
    assert.ok(env(gateway).get('ETCD_USERNAME')?.value, 'a user for the password');
  });

  it('runs etcd with TLS for clients and peers, and only clients with a certificate of the CA', () => {
    const [c] = etcdPod.containers;
    const flags = new Map(
      c!
        .command!.filter((a) => a.startsWith('--'))
        .map((a) => (a.includes('=') ? [a.slice(2, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a.slice(2), 'true'])),
    );
    for (const name of ['listen-client-urls', 'advertise-client-urls', 'listen-peer-urls', 'initial-advertise-peer-urls'])
      assert.match(flags.get(name)!, /^https:\/\//, `--${name} is https`);
    assert.equal(flags.get('client-cert-auth'), 'true');
    assert.equal(flags.get('peer-client-cert-auth'), 'true');
    const cluster = flags.get('initial-cluster')!.split(',');
    assert.equal(cluster.length, etcd.spec!.replicas, 'every member is in the initial cluster');
    for (const flag of ['trusted-ca-file', 'cert-file', 'key-file', 'peer-trusted-ca-file', 'peer-cert-file', 'peer-key-file'])
      assert.equal(mountedFile(etcdPod, c!, flags.get(flag)!).volume.secret?.secretName, 'etcd-server-tls', `--${flag}`);
  });

  it('sends tokens only over TLS: the example workload reaches the gateway by https and trusts the private CA', () => {
    const hello = find('Deployment', 'hello').spec!.template!.spec;
    const c = hello.containers[0]!;
    const vars = resolvedEnv(c);
    const invocation = parseInvocation([...c.command!.slice(1), ...c.args!.map((a) => a.replace(/\$\((\w+)\)/g, '10.1.2.3'))], vars);
    assert.equal(invocation.kind, 'run');
    assert.equal((invocation as Extract<typeof invocation, { kind: 'run' }>).options.gateway.protocol, 'https:');
    assert.ok(mountedFile(hello, c, vars.NODE_EXTRA_CA_CERTS!).volume.configMap, 'the CA certificate, no key, from a ConfigMap');
    for (const r of all)
      for (const container of r.spec?.template?.spec.containers ?? [])
        for (const e of container.env ?? [])
          assert.doesNotMatch(e.value ?? '', /http:\/\//, `${r.metadata.name}: ${e.name} is not plain HTTP`);
  });

  it('quotes in docs/operations.md (Kubernetes, Production) the settings and numbers of the manifests', () => {
    const doc = read('docs/operations.md');
    const from = doc.indexOf('## Dashboard and Kubernetes');
    const text = doc.slice(from, doc.indexOf('\n## ', doc.indexOf('## Production')));
    const spans = [...text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!);
    const gatewayEnv = resolvedEnv(gateway);
    /** Every `key: value` of a rendered resource, at any depth. */
    const fields = new Set<string>();
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object')
        for (const [k, x] of Object.entries(v)) {
          if (typeof x !== 'object') fields.add(`${k}: ${String(x)}`);
          walk(x);
        }
    };
    walk(all);
    const checked = [];
    for (const span of spans) {
      const setting = /^([A-Z][A-Z0-9_]+)=(\S+)$/.exec(span);
      const field = /^([a-zA-Z]+): (\S+)$/.exec(span);
      const sleep = /^sleep (\d+)$/.exec(span);
      if (setting) assert.equal(gatewayEnv[setting[1]!], setting[2], `the docs say ${span}`);
      else if (field) assert.ok(fields.has(span), `the docs say ${span}; no manifest does`);
      else if (sleep) assert.deepEqual(gateway.lifecycle?.preStop?.exec?.command, ['sleep', sleep[1]], `the docs say ${span}`);
      else continue;
      checked.push(span);
    }
    assert.ok(checked.length >= 8, `the settings quoted: ${checked.join(', ')}`);
  });
});
