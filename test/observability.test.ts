// What operators see (API.md "Operations"): /metrics read with a real Prometheus
// text parser, linted by promtool and scraped by a real Prometheus; /health and the
// store metrics following a killed and restarted etcd with no traffic; one log line per
// request. Log redaction, REQUEST_LOG=false, the
// OpenAPI document and etcd version checks have their own files.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { eventually, instancePath, startGateway, type TestGateway } from './helpers/gateway.ts';
import { labelNamesOf, parsePrometheusText, sumOf, type Family } from './helpers/prometheus.ts';
import { LogCapture } from './helpers/logs.ts';
import { openSse } from './helpers/sse.ts';
import { freePort } from './helpers/ports.ts';
import { Histogram, Registry as PromRegistry } from 'prom-client';
import { RouteHistogram } from '../src/metrics.ts';
import { knownLeaseBug } from '../src/registry/store/etcd-versions.ts';

const ROOT = new URL('../', import.meta.url);

/** API.md "Operations": [family, type, labels]. */
const FAMILIES: [string, Family['type'], string[]][] = [
  ['http_request_duration_seconds', 'histogram', ['method', 'route', 'status_code']],
  ['discovery_services', 'gauge', []],
  ['discovery_instances', 'gauge', []],
  ['discovery_registrations_total', 'counter', []],
  ['discovery_deregistrations_total', 'counter', []],
  ['discovery_heartbeats_total', 'counter', ['result']],
  ['discovery_cache_requests_total', 'counter', ['result']],
  ['discovery_store_request_duration_seconds', 'histogram', ['op']],
  ['discovery_store_up', 'gauge', []],
  ['discovery_watch_events_total', 'counter', ['type']],
  ['discovery_watch_restarts_total', 'counter', []],
  ['discovery_sse_clients', 'gauge', []],
  ['discovery_sse_events_sent_total', 'counter', []],
  ['discovery_expirations_total', 'counter', []],
];

/**
 * prom-client's default metrics that promtool's naming lint objects to (gauges
 * named *_total). They are prom-client's names, the ones every Node.js dashboard
 * queries, so they stay; any other complaint fails the test.
 */
const PROM_CLIENT_LINT_EXCEPTIONS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** A binary the test needs: in CI its absence fails, elsewhere the test is skipped with the reason. */
function need(t: TestContext, bin: string, pkg: string): boolean {
  const r = spawnSync(bin, ['--version'], { stdio: 'ignore' });
  if (!r.error && r.status === 0) return true;
  const why = `${bin} not found (Debian package ${pkg})`;
  if (process.env.CI === 'true') assert.fail(`${why}: CI must have it, tests never skip there`);
  t.skip(why);
  return false;
}

async function scrape(gw: TestGateway): Promise<{ text: string; families: Map<string, Family> }> {
  const r = await gw.request('GET', '/metrics');
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return { text: r.text, families: parsePrometheusText(r.text) };
}

function run(bin: string, args: string[], input?: string): { status: number | null; out: string } {
  const r = spawnSync(bin, args, { input, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

describe('observability on etcd', () => {
  let etcd: EtcdCluster;
  let gw: TestGateway;
  const logs = new LogCapture();
  let prometheus: ChildProcess | undefined;
  let promDir: string | undefined;

  before(async () => {
    etcd = await startEtcd();
    gw = await startGateway({ etcd, env: { LOG_LEVEL: 'info' }, deps: { logStream: logs } });
  });
  after(async () => {
    if (prometheus && prometheus.exitCode === null && prometheus.signalCode === null) {
      prometheus.kill('SIGKILL');
      await once(prometheus, 'exit');
    }
    if (promDir) await rm(promDir, { recursive: true, force: true });
    await gw?.close();
    await etcd?.close();
  });

  it("warns once, and in /health, when etcd's version revokes live leases after a leader stall (etcd-io/etcd#15247)", async () => {
    const version = (JSON.parse(await etcd.ctl(['endpoint', 'status', '-w', 'json'])) as { Status: { version: string } }[])[0]!.Status
      .version;
    const affected = knownLeaseBug(version) !== undefined;
    const warnings = () => logs.lines.filter((l) => String(l.msg).includes('etcd-io/etcd#15247'));
    // Each /health asks etcd for its status (with the version) before it answers.
    for (let i = 0; i < 3; i++) {
      const health = (await gw.request('GET', '/health')).json as { store: { details?: { warnings?: string[] } } };
      assert.equal(health.store.details?.warnings?.length ?? 0, affected ? 1 : 0, `etcd ${version}: /health`);
      await sleep(300); // past the reuse window of readiness checks, so each one is a status call of its own
    }
    assert.equal(warnings().length, affected ? 1 : 0, `etcd ${version}: logged once`);
    if (affected) assert.equal(warnings()[0]!.level, 40, 'at level warn');
  });

  it('counts registrations, deregistrations, heartbeats by result, store ops by op and watch events by type', async () => {
    const { families: before } = await scrape(gw);
    for (const id of ['a', 'b'])
      assert.equal((await gw.request('PUT', instancePath('obs-count', id), { address: '10.1.0.1', port: 80, ttl: 30 })).status, 201);
    assert.equal((await gw.request('PUT', `${instancePath('obs-count', 'a')}/heartbeat`)).status, 200);
    assert.equal((await gw.request('PUT', `${instancePath('obs-count', 'a')}/heartbeat`, { status: 'draining' })).status, 200);
    assert.equal((await gw.request('PUT', `${instancePath('obs-count', 'missing')}/heartbeat`)).status, 404);
    assert.equal((await gw.request('DELETE', instancePath('obs-count', 'b'))).status, 204);

    const delta = (now: Map<string, Family>, name: string, labels: Record<string, string> = {}) =>
      sumOf(now, name, labels) - sumOf(before, name, labels);
    const now = await eventually(async () => {
      const { families } = await scrape(gw);
      return delta(families, 'discovery_watch_events_total', { type: 'deregister' }) >= 1 && families;
    });
    assert.equal(delta(now, 'discovery_registrations_total'), 2);
    assert.equal(delta(now, 'discovery_deregistrations_total'), 1);
    assert.equal(delta(now, 'discovery_heartbeats_total', { result: 'ok' }), 2);
    assert.equal(delta(now, 'discovery_heartbeats_total', { result: 'not_found' }), 1);
    assert.equal(delta(now, 'discovery_watch_events_total', { type: 'register' }), 2);
    assert.equal(delta(now, 'discovery_watch_events_total', { type: 'update' }), 1);
    assert.equal(delta(now, 'discovery_watch_events_total', { type: 'deregister' }), 1);
    // every write was a store round trip, timed under its op
    assert.ok(delta(now, 'discovery_store_request_duration_seconds_count', { op: 'txn' }) >= 3, 'txn round trips counted');
    assert.ok(delta(now, 'discovery_store_request_duration_seconds_count', { op: 'lease_grant' }) >= 2, 'lease grants counted');
    // the gauges follow the cache at scrape time
    assert.ok(sumOf(now, 'discovery_services') >= 1);
    assert.ok(sumOf(now, 'discovery_instances') >= 1);
  });

  it('counts a cached read as a hit and a consistent=true read as a miss', async () => {
    const { families: before } = await scrape(gw);
    assert.equal((await gw.request('GET', '/services/obs-count')).status, 200);
    assert.equal((await gw.request('GET', '/services/obs-count?consistent=true')).status, 200);
    const { families: now } = await scrape(gw);
    const delta = (result: string) =>
      sumOf(now, 'discovery_cache_requests_total', { result }) - sumOf(before, 'discovery_cache_requests_total', { result });
    assert.equal(delta('hit'), 1);
    assert.equal(delta('miss'), 1);
    assert.ok(
      sumOf(now, 'discovery_store_request_duration_seconds_count', { op: 'range' }) >
        sumOf(before, 'discovery_store_request_duration_seconds_count', { op: 'range' }),
    );
  });

  it('follows change streams: clients up and down, events sent', async () => {
    const { families: before } = await scrape(gw);
    const clients = async () => sumOf((await scrape(gw)).families, 'discovery_sse_clients');
    const stream = await openSse(`${gw.base}/services/obs-sse/events`);
    try {
      assert.equal(stream.status, 200);
      await stream.waitFor((e) => e.event === 'snapshot', 5000, 'the snapshot');
      assert.equal(await clients(), sumOf(before, 'discovery_sse_clients') + 1);
      assert.equal((await gw.request('PUT', instancePath('obs-sse', 'x'), { address: '10.1.0.2', port: 80, ttl: 0 })).status, 201);
      await stream.waitFor((e) => e.event === 'register', 5000, 'the register event');
      const sent = sumOf((await scrape(gw)).families, 'discovery_sse_events_sent_total') - sumOf(before, 'discovery_sse_events_sent_total');
      assert.ok(sent >= 2, `snapshot and register counted as sent (got ${sent})`);
    } finally {
      stream.close();
    }
    await eventually(async () => (await clients()) === sumOf(before, 'discovery_sse_clients'), 5000, 'the clients gauge to go down');
    // a stream's lifetime is no request latency
    assert.equal(sumOf((await scrape(gw)).families, 'http_request_duration_seconds_count', { route: '/services/:name/events' }), 0);
  });

  it('counts an instance whose TTL ran out as an expiration', async () => {
    const { families: before } = await scrape(gw);
    assert.equal((await gw.request('PUT', instancePath('obs-ttl', 'short'), { address: '10.1.0.3', port: 80, ttl: 2 })).status, 201);
    // etcd grants at least ~2 s and checks expiry about every 500 ms (LIBRARIES.md 16)
    const now = await eventually(
      async () => {
        const { families } = await scrape(gw);
        return sumOf(families, 'discovery_expirations_total') > sumOf(before, 'discovery_expirations_total') && families;
      },
      12_000,
      'the expiration to be counted',
    );
    assert.equal(sumOf(now, 'discovery_expirations_total') - sumOf(before, 'discovery_expirations_total'), 1);
    assert.equal(
      sumOf(now, 'discovery_deregistrations_total'),
      sumOf(before, 'discovery_deregistrations_total'),
      'an expiry is not a deregistration through the API',
    );
    assert.equal((await gw.request('GET', instancePath('obs-ttl', 'short'))).status, 404);
  });

  it('keeps a blocking query out of the latency histogram', async () => {
    const count = async () => sumOf((await scrape(gw)).families, 'http_request_duration_seconds_count', { route: '/services/:name' });
    const before = await count();
    const rev = Number((await gw.request('GET', '/services/obs-count')).headers.get('x-registry-revision'));
    const held = await gw.request('GET', `/services/obs-count?index=${rev}&wait=300ms`);
    assert.equal(held.status, 200);
    assert.equal(await count(), before + 1, 'the plain read is counted, the held one is not');
  });

  it('serves every family of API.md with its type and labels, default process metrics, bounded route labels', async () => {
    const secret = `obs-${Date.now()}`;
    assert.equal((await gw.request('GET', `/no/such/${secret}`)).status, 404);
    assert.equal((await gw.request('GET', `/services/${secret}`)).status, 200);
    const { text, families } = await scrape(gw);
    for (const [name, type, labels] of FAMILIES) {
      const f = families.get(name);
      assert.ok(f, `family ${name} missing`);
      assert.equal(f.type, type, `${name} type`);
      assert.ok(f.help, `${name} has a HELP line`);
      assert.ok(f.samples.length > 0, `${name} has samples`);
      assert.deepEqual([...labelNamesOf(f)].sort(), [...labels].sort(), `${name} labels`);
    }
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_gc_duration_seconds',
    ]) {
      assert.ok(families.has(name), `default metric ${name}`);
    }
    assert.equal(sumOf(families, 'discovery_store_up'), 1);
    // route is the pattern: raw paths never become label values
    assert.ok(!text.includes(secret), 'a raw URL leaked into a label');
    const routes = new Set(families.get('http_request_duration_seconds')!.samples.map((s) => s.labels.route));
    assert.ok(
      routes.has('unmatched') && routes.has('/services/:name') && routes.has('/services/:name/instances/:id'),
      [...routes].join(' '),
    );
    for (const r of routes) assert.ok(r === 'unmatched' || r!.startsWith('/'), r);
    // buckets fit a sub-millisecond cached read and a store round trip
    const bounds = (fam: string) =>
      new Set(
        families
          .get(fam)!
          .samples.filter((s) => s.labels.le)
          .map((s) => Number(s.labels.le)),
      );
    for (const fam of ['http_request_duration_seconds', 'discovery_store_request_duration_seconds']) {
      const b = bounds(fam);
      assert.ok(
        [...b].some((x) => x <= 0.0005),
        `${fam} resolves under half a millisecond`,
      );
      assert.ok(
        [...b].some((x) => x >= 1 && x < Infinity),
        `${fam} reaches seconds`,
      );
    }
  });

  it('passes promtool check metrics', async (t) => {
    if (!need(t, 'promtool', 'prometheus')) return;
    const { text } = await scrape(gw);
    const { status, out } = run('promtool', ['check', 'metrics'], text);
    const problems = out.split('\n').filter((l) => l.trim() && !PROM_CLIENT_LINT_EXCEPTIONS.some((name) => l.startsWith(`${name} `)));
    assert.deepEqual(problems, [], `promtool: ${out}`);
    assert.ok(status === 0 || status === 3, `promtool exit ${status}: ${out}`); // 3: lint warnings only (the exceptions above)
  });

  it('is scraped by a real Prometheus, which loads deploy/alerts.yml', async (t) => {
    if (!need(t, 'prometheus', 'prometheus') || !need(t, 'promtool', 'prometheus')) return;
    const rules = run('promtool', ['check', 'rules', new URL('deploy/alerts.yml', ROOT).pathname]);
    assert.equal(rules.status, 0, rules.out);
    promDir = await mkdtemp(join(tmpdir(), 'prometheus-test-'));
    const config = join(promDir, 'prometheus.yml');
    await writeFile(
      config,
      [
        'global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }',
        `rule_files: ['${new URL('deploy/alerts.yml', ROOT).pathname}']`,
        'scrape_configs:',
        '  - job_name: discovery-gateway',
        '    metrics_path: /metrics',
        `    static_configs: [{ targets: ['${new URL(gw.base).host}'] }]`,
        '',
      ].join('\n'),
    );
    const checked = run('promtool', ['check', 'config', config]);
    assert.equal(checked.status, 0, checked.out);
    const port = await freePort();
    let stderr = '';
    prometheus = spawn(
      'prometheus',
      [`--config.file=${config}`, `--storage.tsdb.path=${join(promDir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    prometheus.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const api = async (path: string) => {
      try {
        const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2000) });
        return res.ok ? ((await res.json()) as { data: any }).data : undefined; // eslint-disable-line @typescript-eslint/no-explicit-any
      } catch {
        return undefined;
      }
    };
    try {
      const target = await eventually(
        async () => {
          const data = await api('/api/v1/targets');
          const tg = data?.activeTargets?.find((x: { labels: { job: string } }) => x.labels.job === 'discovery-gateway');
          return tg?.health === 'up' && tg;
        },
        20_000,
        'Prometheus to scrape the gateway',
      );
      assert.equal(target.lastError, '');
      const up = await eventually(
        async () => (await api('/api/v1/query?query=discovery_store_up'))?.result?.[0],
        10_000,
        'discovery_store_up in Prometheus',
      );
      assert.equal(up.value[1], '1');
      const series = await api(`/api/v1/query?query=${encodeURIComponent('count(http_request_duration_seconds_bucket)')}`);
      assert.ok(Number(series.result[0].value[1]) > 0, 'histogram buckets ingested');
      const loaded = await api('/api/v1/rules');
      const names = loaded.groups.flatMap((g: { rules: { name: string }[] }) => g.rules.map((r) => r.name));
      assert.ok(names.includes('DiscoveryStoreUnreachable') && names.includes('DiscoveryGatewayDown'), names.join(' '));
    } catch (err) {
      throw new Error(`${(err as Error).message}\nprometheus stderr:\n${stderr}`);
    }
  });

  it('writes one JSON line per request with reqId, route, statusCode and durationMs', async () => {
    const start = logs.requests().length;
    const asked = [
      ['GET', '/services/obs-count', 200, '/services/:name'],
      ['GET', instancePath('obs-count', 'nope'), 404, '/services/:name/instances/:id'],
      ['PUT', instancePath('obs-count', 'bad'), 400, '/services/:name/instances/:id'],
      ['GET', '/health/live', 200, '/health/live'],
      ['GET', '/not/a/route', 404, 'unmatched'],
    ] as const;
    for (const [method, path, status] of asked)
      assert.equal((await gw.request(method, path, method === 'PUT' ? { port: 1 } : undefined)).status, status);
    const lines = await eventually(
      async () => logs.requests().length >= start + asked.length && logs.requests().slice(start),
      3000,
      'the request lines',
    );
    assert.equal(lines.length, asked.length, 'one line per request');
    asked.forEach(([method, path, status, route], i) => {
      const l = lines[i]!;
      assert.equal(l.level, 30, 'info');
      assert.match(String(l.reqId), /^[0-9a-f]{8}-[0-9a-z]+$/);
      assert.equal(l.method, method);
      assert.equal(l.url, path);
      assert.equal(l.route, route);
      assert.equal(l.statusCode, status);
      assert.equal(typeof l.durationMs, 'number');
      assert.ok((l.durationMs as number) >= 0);
    });
    assert.equal(new Set(lines.map((l) => l.reqId)).size, lines.length, 'request ids are distinct');
  });

  it('notices a frozen store (SIGSTOP: the watch sees nothing) through its background probe, with no traffic', async (t) => {
    assert.equal(sumOf((await scrape(gw)).families, 'discovery_store_up'), 1);
    etcd.stop(0);
    const stoppedAt = Date.now();
    try {
      await eventually(
        async () => sumOf((await scrape(gw)).families, 'discovery_store_up') === 0,
        8000,
        'discovery_store_up 0 while etcd is frozen',
      );
      t.diagnostic(`discovery_store_up went to 0 ${Date.now() - stoppedAt} ms after SIGSTOP`);
      const stale = await gw.request('GET', '/services/obs-count');
      assert.equal(stale.headers.get('x-registry-stale'), 'true', 'cached answers are marked stale');
    } finally {
      etcd.cont(0);
    }
    await eventually(
      async () => sumOf((await scrape(gw)).families, 'discovery_store_up') === 1,
      8000,
      'discovery_store_up back to 1 after SIGCONT',
    );
    await eventually(async () => (await gw.request('GET', '/health/ready')).status === 200, 8000, 'ready again after SIGCONT');
  });

  // Last: it takes etcd away and brings it back.
  it('reports the store down and up again by itself: store_up, readiness, /health, stale reads, one log line per change', async (t) => {
    assert.equal((await gw.request('GET', '/health/ready')).status, 200);
    assert.equal((await gw.request('PUT', instancePath('obs-stale', 'x'), { address: '10.1.0.4', port: 80, ttl: 0 })).status, 201);
    assert.equal((await gw.request('GET', '/services/obs-stale')).status, 200);
    const unreachableBefore = logs.count('store unreachable');
    const reachableBefore = logs.count('store reachable');

    await etcd.kill(0);
    const killedAt = Date.now();
    // /metrics never calls the store: the gateway noticed by itself (watch, background probe)
    await eventually(
      async () => sumOf((await scrape(gw)).families, 'discovery_store_up') === 0,
      8000,
      'discovery_store_up 0 with no traffic',
    );
    t.diagnostic(`discovery_store_up went to 0 ${Date.now() - killedAt} ms after the kill`);
    // probes within 250 ms share one status call: the first answer may predate the kill
    const ready = await eventually(
      async () => {
        const r = await gw.request('GET', '/health/ready');
        return r.status !== 200 && r;
      },
      3000,
      'ready to fail',
    );
    assert.equal(ready.status, 503, ready.text);
    const health = await gw.request('GET', '/health');
    assert.equal(health.status, 503);
    assert.equal(health.json.status, 'unavailable');
    assert.equal(health.json.store.reachable, false);
    assert.equal(health.json.store.kind, 'etcd');
    const stale = await gw.request('GET', '/services/obs-stale');
    assert.equal(stale.status, 200);
    assert.equal(stale.headers.get('x-registry-stale'), 'true');
    assert.match(stale.headers.get('age') ?? '', /^\d+$/);
    assert.equal((await gw.request('PUT', instancePath('obs-stale', 'y'), { address: '10.1.0.5', port: 80 })).status, 503);
    await sleep(2500); // more probes fail: still one line
    assert.equal(logs.count('store unreachable') - unreachableBefore, 1, 'one "store unreachable" line for the outage');

    await etcd.restart(0);
    await eventually(async () => sumOf((await scrape(gw)).families, 'discovery_store_up') === 1, 15_000, 'discovery_store_up back to 1');
    await eventually(async () => (await gw.request('GET', '/health/ready')).status === 200, 15_000, 'ready 200 again');
    const back = await gw.request('GET', '/health');
    assert.equal(back.status, 200);
    assert.equal(back.json.store.reachable, true);
    assert.equal(back.json.store.inSync, true);
    assert.equal((await gw.request('GET', '/services/obs-stale')).headers.get('x-registry-stale'), null);
    assert.equal((await gw.request('PUT', instancePath('obs-stale', 'y'), { address: '10.1.0.5', port: 80 })).status, 201);
    assert.equal(logs.count('store unreachable') - unreachableBefore, 1, 'no flapping after the restart');
    assert.equal(logs.count('store reachable') - reachableBefore, 1, 'one "store reachable" line');
  });
});

describe('the request-duration histogram', () => {
  it("prints exactly what prom-client's own Histogram prints for the same requests", async () => {
    const buckets = [0.0001, 0.001, 0.01, 0.1, 1];
    const ours = new PromRegistry();
    const theirs = new PromRegistry();
    const histogram = new RouteHistogram('http_request_duration_seconds', 'help', buckets, ours);
    const reference = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'help',
      labelNames: ['method', 'route', 'status_code'],
      buckets,
      registers: [theirs],
    });
    const requests: [string, string, number, number][] = [
      ['GET', '/services/:name', 200, 0.00005],
      ['GET', '/services/:name', 200, 0.001], // on a bound: counted in that bucket (le)
      ['GET', '/services/:name', 304, 0.02],
      ['PUT', '/services/:name/instances/:id', 201, 3],
      ['GET', 'unmatched', 404, 0.0002],
      ['GET', '/services/:name', 200, 0.5],
    ];
    const record = new Map<string, ReturnType<RouteHistogram['route']>>();
    for (const [method, route, status, seconds] of requests) {
      if (!record.has(route)) record.set(route, histogram.route(route));
      record.get(route)!(method, status, seconds);
      reference.observe({ method, route, status_code: status }, seconds);
    }
    assert.equal(await ours.metrics(), await theirs.metrics());
  });
});
