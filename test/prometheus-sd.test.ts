// GET /sd/prometheus: Prometheus HTTP service discovery, checked by promtool and a real
// Prometheus scraping what it discovers, on a real etcd.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { eventually, startGateway, type TestGateway } from './helpers/gateway.ts';
import { freePort } from './helpers/ports.ts';

let etcd: EtcdCluster;
before(async () => void (etcd = await startEtcd()));
after(() => etcd?.close());

describe('Prometheus service discovery', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ etcd });
    await gw.request('PUT', '/services/web/instances/v4', {
      address: '10.5.0.1',
      port: 8080,
      tags: ['http', 'v2'],
      metadata: { zone: 'eu-1', 'a.b': 'dot', 'a-b': 'dash', a_b: 'under' },
    });
    await gw.request('PUT', '/services/web/instances/v6', { address: 'fd00::5', port: 9090, status: 'draining', weight: 7 });
    await gw.request('PUT', '/services/db/instances/host', { address: 'db.internal', port: 5432, tags: ['sql'], ttl: 0 });
  });
  after(async () => gw?.close());

  type Group = { targets: string[]; labels: Record<string, string> };
  /** What Prometheus accepts: a JSON array of {targets: string[], labels: {name: string}}, label names [a-zA-Z_][a-zA-Z0-9_]*. */
  async function sd(query = ''): Promise<Group[]> {
    const r = await gw.request('GET', `/sd/prometheus${query}`);
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') ?? '', /^application\/json(;\s*charset=("utf-8"|utf-8))?$/i);
    assert.ok(Array.isArray(r.json));
    for (const g of r.json as Group[]) {
      assert.deepEqual(Object.keys(g).sort(), ['labels', 'targets']);
      assert.ok(Array.isArray(g.targets) && g.targets.every((t) => typeof t === 'string'));
      for (const [name, value] of Object.entries(g.labels)) {
        assert.match(name, /^[a-zA-Z_][a-zA-Z0-9_]*$/);
        assert.equal(typeof value, 'string', `${name} is a string`);
      }
    }
    return r.json as Group[];
  }

  test('one target group per instance with its labels; IPv6 bracketed; metadata keys sanitized', async () => {
    const groups = await sd();
    assert.deepEqual(groups, [
      {
        targets: ['db.internal:5432'],
        labels: {
          __meta_discovery_service: 'db',
          __meta_discovery_instance_id: 'host',
          __meta_discovery_status: 'up',
          __meta_discovery_weight: '100',
          __meta_discovery_tags: ',sql,',
        },
      },
      {
        targets: ['10.5.0.1:8080'],
        labels: {
          __meta_discovery_service: 'web',
          __meta_discovery_instance_id: 'v4',
          __meta_discovery_status: 'up',
          __meta_discovery_weight: '100',
          __meta_discovery_tags: ',http,v2,',
          // "a-b" < "a.b" < "a_b" in code-unit order: the last one wins.
          __meta_discovery_metadata_a_b: 'under',
          __meta_discovery_metadata_zone: 'eu-1',
        },
      },
      {
        targets: ['[fd00::5]:9090'],
        labels: {
          __meta_discovery_service: 'web',
          __meta_discovery_instance_id: 'v6',
          __meta_discovery_status: 'draining',
          __meta_discovery_weight: '7',
          __meta_discovery_tags: ',,',
        },
      },
    ]);
  });

  test('service, tag and status narrow it', async () => {
    const ids = (gs: Group[]) => gs.map((g) => g.labels.__meta_discovery_instance_id);
    assert.deepEqual(ids(await sd('?service=web')), ['v4', 'v6']);
    assert.deepEqual(ids(await sd('?service=web&service=db')), ['host', 'v4', 'v6']);
    assert.deepEqual(ids(await sd('?service=unknown')), []);
    assert.deepEqual(ids(await sd('?tag=http')), ['v4']);
    assert.deepEqual(ids(await sd('?tag=http&tag=v2&service=web')), ['v4']);
    assert.deepEqual(ids(await sd('?status=draining')), ['v6']);
    assert.deepEqual(ids(await sd('?status=up&service=db')), ['host']);
    assert.equal((await gw.request('GET', '/sd/prometheus?status=gone')).status, 400);
    assert.equal((await gw.request('GET', '/sd/prometheus?service=Not_A_Name')).status, 400);
  });

  const promtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' });
  const havePrometheus = !promtool.error && promtool.status === 0;
  const skip = !havePrometheus && process.env.CI !== 'true' ? 'promtool not installed (apt-get install prometheus)' : false;

  /** The scrape config of docs/beyond.md, pointed at this gateway. */
  async function promConfig(dir: string): Promise<string> {
    const file = join(dir, 'prometheus.yml');
    const yml = [
      'global:',
      '  scrape_interval: 1s',
      'scrape_configs:',
      '  - job_name: services',
      '    http_sd_configs:',
      `      - url: ${gw.base}/sd/prometheus`,
      '        refresh_interval: 1s',
      '    relabel_configs:',
      '      - source_labels: [__meta_discovery_status]',
      '        regex: up|draining',
      '        action: keep',
      '      - source_labels: [__meta_discovery_tags]',
      '        regex: .*,(http|sql),.*|,,',
      '        action: keep',
      '      - source_labels: [__meta_discovery_service]',
      '        target_label: service',
      '      - source_labels: [__meta_discovery_instance_id]',
      '        target_label: instance',
      '      - source_labels: [__meta_discovery_metadata_zone]',
      '        target_label: zone',
      '',
    ].join('\n');
    await writeFile(file, yml);
    return file;
  }

  test('promtool accepts an http_sd_configs scrape config pointing at the gateway', { skip }, async () => {
    assert.ok(havePrometheus, 'promtool is required in CI (Debian package prometheus)');
    const dir = await mkdtemp(join(tmpdir(), 'prom-'));
    try {
      const file = await promConfig(dir);
      const r = spawnSync('promtool', ['check', 'config', file], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a real Prometheus discovers every registered instance as a target', { skip }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'prom-'));
    const port = await freePort();
    const proc = spawn(
      'prometheus',
      [
        `--config.file=${await promConfig(dir)}`,
        `--storage.tsdb.path=${join(dir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=error',
      ],
      { stdio: 'ignore' },
    );
    try {
      type Target = { discoveredLabels: Record<string, string>; labels: Record<string, string> };
      const targets = await eventually(
        async () => {
          if (proc.exitCode !== null) throw new Error(`prometheus exited with ${proc.exitCode}`);
          try {
            const res = await fetch(`http://127.0.0.1:${port}/api/v1/targets`, { signal: AbortSignal.timeout(1000) });
            const body = (await res.json()) as { data: { activeTargets: Target[] } };
            return body.data.activeTargets.length >= 3 && body.data.activeTargets;
          } catch {
            return undefined;
          }
        },
        20_000,
        'Prometheus to discover the targets',
      );
      const seen = targets
        .map((t) => [
          t.discoveredLabels.__address__,
          t.discoveredLabels.__meta_discovery_service,
          t.discoveredLabels.__meta_discovery_instance_id,
        ])
        .sort();
      assert.deepEqual(seen, [
        ['10.5.0.1:8080', 'web', 'v4'],
        ['[fd00::5]:9090', 'web', 'v6'],
        ['db.internal:5432', 'db', 'host'],
      ]);
      // Relabeling works on these labels: service, instance and zone come from them.
      const labels = targets.map((t) => [t.labels.job, t.labels.service, t.labels.instance, t.labels.zone ?? '']).sort();
      assert.deepEqual(labels, [
        ['services', 'db', 'host', ''],
        ['services', 'web', 'v4', 'eu-1'],
        ['services', 'web', 'v6', ''],
      ]);
    } finally {
      proc.kill('SIGTERM');
      if (proc.exitCode === null && proc.signalCode === null) await once(proc, 'exit');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
