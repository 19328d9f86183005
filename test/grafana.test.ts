// The Grafana dashboard (deploy/grafana/), checked without Grafana: every PromQL
// expression in it parses (`promtool check rules`, once Grafana's variables are
// substituted), every metric it queries is one a running gateway exports, with
// the labels it matches on, and docker-compose.yml provisions it next to
// Prometheus with a data source pointing at that Prometheus.
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startGateway, type TestGateway } from './helpers/gateway.ts';
import { labelNamesOf, parsePrometheusText, type Family } from './helpers/prometheus.ts';
import { openSse } from './helpers/sse.ts';

const root = new URL('..', import.meta.url).pathname;
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const DASHBOARDS_DIR = 'deploy/grafana/dashboards';

interface Target {
  expr: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
}
const dashboard = JSON.parse(read(`${DASHBOARDS_DIR}/discovery-gateway.json`)) as {
  uid: string;
  panels: Panel[];
  templating: { list: Variable[] };
};
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
const variables = dashboard.templating.list;

/** Every query the dashboard sends: panel targets, and the selectors of its query variables. */
function queries(): { where: string; expr: string }[] {
  const found = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr })));
  for (const v of variables.filter((v) => v.type === 'query')) {
    const text = typeof v.query === 'string' ? v.query : v.query.query;
    const selector = /^label_values\((.+),\s*[a-zA-Z_]\w*\)$/.exec(text)?.[1];
    assert.ok(selector, `variable $${v.name}: expected label_values(selector, label), got ${text}`);
    found.push({ where: `variable $${v.name}`, expr: selector });
  }
  return found;
}

/**
 * The expression as Prometheus would receive it: Grafana's interval macros become
 * a duration and the dashboard's own variables a regex that matches anything.
 * A `$` left over is a variable the dashboard does not define.
 */
function substitute(expr: string): string {
  let out = expr.replace(/\$__(rate_interval|interval|range)\b/g, '5m');
  for (const v of variables) {
    out = out.replace(new RegExp(`\\$\\{${v.name}(:[a-z]+)?\\}|\\$${v.name}\\b|\\[\\[${v.name}\\]\\]`, 'g'), '.*');
  }
  assert.ok(!out.includes('$'), `an undefined variable in ${expr}`);
  return out;
}

const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'bool',
  'and',
  'or',
  'unless',
  'inf',
  'nan',
]);

/** Metric names a PromQL expression selects, each with the label names its matchers use. */
function selectors(expr: string): { metric: string; labels: string[] }[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ');
  const found: { metric: string; labels: string[] }[] = [];
  // A name not followed by `(` (a function) nor preceded by a digit or `.` (1e-9, 0.99).
  for (const m of bare.matchAll(/(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()(\s*\{[^}]*\})?/g)) {
    if (KEYWORDS.has(m[1]!.toLowerCase())) continue;
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!);
    found.push({ metric: m[1]!, labels });
  }
  return found;
}

/** Labels Prometheus itself attaches to every scraped series (the target's). */
const TARGET_LABELS = new Set(['job', 'instance']);

describe('Grafana dashboard', () => {
  let gw: TestGateway;
  let families: Map<string, Family>;

  before(async () => {
    gw = await startGateway();
    // Enough traffic that every labelled family has series: a write, a heartbeat, reads, a change stream.
    assert.equal((await gw.request('PUT', '/services/web/instances/a', { address: '10.0.0.1', port: 80 })).status, 201);
    assert.equal((await gw.request('PUT', '/services/web/instances/a/heartbeat')).status, 200);
    assert.equal((await gw.request('GET', '/services/web')).status, 200);
    const stream = await openSse(`${gw.base}/events`);
    await stream.nextEvent(5000, 'the first snapshot');
    stream.close();
    assert.equal((await gw.request('DELETE', '/services/web/instances/a')).status, 204);
    const scrape = await gw.request('GET', '/metrics');
    assert.equal(scrape.status, 200);
    families = parsePrometheusText(scrape.text);
  });
  after(async () => gw?.close());

  it('shows requests, registry changes, instances per service, change streams, the store, the cache and watch restarts', () => {
    const used = new Set(queries().flatMap((q) => selectors(q.expr).map((s) => s.metric)));
    for (const metric of [
      'http_request_duration_seconds_count',
      'http_request_duration_seconds_bucket',
      'discovery_registrations_total',
      'discovery_deregistrations_total',
      'discovery_expirations_total',
      'discovery_sse_clients',
      'discovery_sse_events_sent_total',
      'discovery_store_up',
      'discovery_store_request_duration_seconds_bucket',
      'discovery_cache_requests_total',
      'discovery_watch_restarts_total',
      'up',
    ]) {
      assert.ok(used.has(metric), `the dashboard queries ${metric}`);
    }
  });

  it('has PromQL that promtool parses, every panel and variable query', async () => {
    const all = queries();
    assert.ok(all.length >= 20, `found ${all.length} queries`);
    const rules = {
      groups: [{ name: 'dashboard', rules: all.map((q, i) => ({ record: `dashboard:query_${i}`, expr: substitute(q.expr) })) }],
    };
    const dir = await mkdtemp(join(tmpdir(), 'grafana-'));
    try {
      const file = join(dir, 'dashboard-rules.yml');
      await writeFile(file, stringifyYaml(rules));
      const run = await promisify(execFile)(process.env.PROMTOOL_BIN ?? 'promtool', ['check', 'rules', file]).catch(
        (err: { stdout: string; stderr: string }) => assert.fail(`promtool rejects a dashboard query:\n${err.stdout}${err.stderr}`),
      );
      assert.match(run.stdout, new RegExp(`SUCCESS: ${all.length} rules found`));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('queries only metrics a running gateway exports, with labels its series carry', () => {
    // A histogram's samples are its family's name plus _bucket, _sum or _count; buckets add `le`.
    const labelsOf = (sample: string): Set<string> | undefined => {
      const family =
        families.get(sample) ??
        [...families.values()].find(
          (f) => f.type === 'histogram' && sample.replace(/_(bucket|sum|count)$/, '') === f.name && sample !== f.name,
        );
      if (!family) return undefined;
      const labels = new Set([...labelNamesOf(family), ...TARGET_LABELS]);
      if (sample.endsWith('_bucket')) labels.add('le');
      return labels;
    };
    let checked = 0;
    for (const { where, expr } of queries()) {
      const found = selectors(expr).filter((s) => s.metric !== 'up'); // up: Prometheus's own, per target (next test)
      if (found.length === 0) continue;
      const carried = new Set<string>();
      for (const { metric, labels } of found) {
        const own = labelsOf(metric);
        assert.ok(own, `${where}: ${metric} is not exported by the gateway`);
        for (const label of labels) assert.ok(own.has(label), `${where}: ${metric} has no label ${label}`);
        own.forEach((l) => carried.add(l));
        checked++;
      }
      // Labels it aggregates by (`by (route)`) are on the series it selects.
      for (const m of expr.matchAll(/\bby\s*\(([^)]*)\)/g)) {
        for (const label of m[1]!.split(',').map((l) => l.trim()))
          assert.ok(carried.has(label), `${where}: nothing in ${expr} has the label ${label}`);
      }
    }
    assert.ok(checked >= 30, `checked ${checked} selectors`);
  });

  it('counts instances per service from the scrape job that discovers them through the gateway', () => {
    const prom = parseYaml(read('deploy/prometheus.yml')) as {
      scrape_configs: {
        job_name: string;
        http_sd_configs?: { url: string }[];
        relabel_configs?: { source_labels?: string[]; target_label?: string }[];
      }[];
    };
    const ups = queries().flatMap((q) => (selectors(q.expr).some((s) => s.metric === 'up') ? [q.expr] : []));
    assert.ok(ups.length > 0);
    for (const expr of ups) {
      const job = /up\{[^}]*job="([^"]+)"/.exec(expr)?.[1];
      const scrape = prom.scrape_configs.find((j) => j.job_name === job);
      assert.ok(scrape, `${expr}: deploy/prometheus.yml has no job ${job}`);
      assert.ok(
        scrape.http_sd_configs?.some((c) => new URL(c.url).pathname === '/sd/prometheus'),
        `${job} discovers its targets through the gateway`,
      );
      for (const label of /by \(([^)]*)\)/
        .exec(expr)![1]!
        .split(',')
        .map((l) => l.trim())) {
        assert.ok(
          scrape.relabel_configs?.some((r) => r.target_label === label && r.source_labels?.[0]?.startsWith('__meta_discovery_')),
          `${job} gives its targets the label ${label}`,
        );
      }
    }
  });

  it('is provisioned by docker-compose.yml from its file, on the Prometheus next to it', () => {
    const compose = parseYaml(read('docker-compose.yml'), { merge: true }) as {
      services: Record<
        string,
        { image?: string; environment?: Record<string, string>; volumes?: string[]; ports?: string[]; depends_on?: string[] }
      >;
    };
    const grafana = compose.services.grafana!;
    assert.match(grafana.image ?? '', /^grafana\/grafana(-oss)?:\d+\.\d+\.\d+$/, 'a pinned Grafana image');
    assert.ok(grafana.depends_on?.includes('prometheus'));
    const mounts = new Map((grafana.volumes ?? []).map((v) => v.split(':') as [string, string]));
    assert.equal(mounts.get('./deploy/grafana/provisioning'), '/etc/grafana/provisioning');
    const provider = parseYaml(read('deploy/grafana/provisioning/dashboards/discovery-gateway.yml')) as {
      providers: { type: string; options: { path: string } }[];
    };
    assert.equal(provider.providers[0]!.type, 'file');
    const dashboardsPath = provider.providers[0]!.options.path;
    assert.equal(mounts.get(`./${DASHBOARDS_DIR}`), dashboardsPath, 'the provider reads the mounted dashboards');
    const home = grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
    assert.equal(home, `${dashboardsPath}/discovery-gateway.json`, 'the home page is the gateway dashboard');

    const { datasources } = parseYaml(read('deploy/grafana/provisioning/datasources/prometheus.yml')) as {
      datasources: { type: string; url: string; isDefault: boolean; jsonData: { timeInterval: string } }[];
    };
    const source = datasources[0]!;
    assert.equal(source.type, 'prometheus');
    assert.ok(source.isDefault, 'the default data source: the dashboard\u2019s $datasource picks it');
    const url = new URL(source.url);
    assert.ok(compose.services[url.hostname], `${url.hostname} is a compose service`);
    assert.ok(
      compose.services[url.hostname]!.ports!.some((p) => p.endsWith(`:${url.port}`)),
      `Prometheus listens on ${url.port}`,
    );
    const prom = parseYaml(read('deploy/prometheus.yml')) as { global: { scrape_interval: string } };
    assert.equal(source.jsonData.timeInterval, prom.global.scrape_interval, '$__rate_interval knows the scrape interval');

    // Every query goes to the data source the $datasource variable selects (a Prometheus).
    const dsVar = variables.find((v) => v.type === 'datasource');
    assert.equal(dsVar?.query, 'prometheus');
    const ids = new Set<number>();
    for (const p of panels) {
      assert.ok(!ids.has(p.id), `panel id ${p.id} is unique`);
      ids.add(p.id);
      assert.ok(p.targets?.length, `panel "${p.title}" has queries`);
      for (const d of [p.datasource, ...p.targets.map((t) => t.datasource)]) {
        assert.deepEqual(d, { type: 'prometheus', uid: `\${${dsVar.name}}` }, `panel "${p.title}" uses $${dsVar.name}`);
      }
    }
  });
});
