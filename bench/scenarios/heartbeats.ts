// 5. Heartbeat load: 20k instances with a 10 s TTL renewing on schedule for 30 s.
// Each instance renews every two thirds of its TTL (3.3 s of slack), in the
// order they were registered, so the rate is 20k / 6.7 s = 3k/s. (One renewal
// per TTL, 2k/s, would leave no slack at all: any delay would expire instances.)
// Registering 20k leases takes longer than one TTL on a small machine, so
// renewals start with the first registered batch (round robin over the
// instances registered so far) and go on for 30 s after the last one.
// Reports expirations (target: none), heartbeat latency, and the gateway's CPU.
import { setTimeout as sleep } from 'node:timers/promises';
import { instanceId, instanceInput, registerByBatch, serviceName } from '../lib/fixtures.ts';
import autocannon, { type Request } from 'autocannon';
import { cannon } from '../lib/load.ts';
import { cpuSeconds, rssMb, startGateway } from '../lib/procs.ts';
import { underRow, type Row, type Scenario } from '../lib/table.ts';

const INSTANCES = 20_000;
const SERVICES = 200;
const TTL = 10;
const PERIOD_S = (TTL * 2) / 3;

async function expirations(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^discovery_expirations_total (\d+)/m.exec(text)?.[1] ?? NaN);
}

async function registered(url: string): Promise<number> {
  const body = (await (await fetch(`${url}/services`)).json()) as { services: { instances: number }[] };
  return body.services.reduce((n, s) => n + s.instances, 0);
}

export const heartbeats: Scenario = {
  name: 'heartbeats',
  title: `5. Heartbeat load (${INSTANCES / 1000}k instances, TTL ${TTL} s, renewed every ${PERIOD_S.toFixed(1)} s)`,
  async run(ctx) {
    const duration = ctx.quick ? 10 : 30;
    const rate = Math.round(INSTANCES / PERIOD_S);
    const gw = await startGateway({ etcd: ctx.etcd, cpuProfDir: ctx.cpuProfDir });
    try {
      // Instance k (in registration and heartbeat order) is service k % SERVICES.
      const items = Array.from({ length: INSTANCES }, (_, k) => ({ service: serviceName(k % SERVICES), id: instanceId(k), input: instanceInput(k, TTL) }));
      const expiredBefore = await expirations(gw.url);
      let n = 0;
      let registeredPrefix = 0;
      const beat: Request[] = [
        {
          method: 'PUT',
          setupRequest: (req) => {
            const x = items[n++ % Math.max(1, registeredPrefix)]!;
            return { ...req, path: `/services/${x.service}/instances/${x.id}/heartbeat` };
          },
        },
      ];
      const t = performance.now();
      let ramp: ReturnType<typeof autocannon> | undefined;
      await registerByBatch(gw.url, items, 8, (prefix) => {
        registeredPrefix = prefix;
        ramp ??= autocannon({ url: gw.url, connections: 50, duration: 120, overallRate: rate, requests: beat });
      });
      ramp?.stop();
      const rampResult = await ramp;
      const registerS = (performance.now() - t) / 1000;
      ctx.log(`${INSTANCES} instances registered in ${registerS.toFixed(1)} s (${rampResult?.requests.total ?? 0} heartbeats meanwhile)`);

      n = 0;
      const cpu0 = cpuSeconds(gw.pid);
      const t0 = performance.now();
      const r = await cannon({ url: gw.url, connections: 50, duration, overallRate: rate, requests: beat });
      const cpu = (cpuSeconds(gw.pid) - cpu0) / ((performance.now() - t0) / 1000);
      const rss = rssMb(gw.pid);
      await sleep(200);
      const expired = (await expirations(gw.url)) - expiredBefore;
      const left = await registered(gw.url);
      const notFound = r.raw.statusCodeStats['404']?.count ?? 0;
      const rows: Row[] = [
        { metric: 'instances expired', ours: expired, unit: '', target: '= 0', pass: expired === 0 },
        { metric: 'instances still registered', ours: left, baseline: INSTANCES, against: 'registered', unit: '', ratio: left / INSTANCES },
        { metric: 'heartbeats answered 404 / failed', ours: notFound, baseline: r.errors - notFound, against: 'other failures', unit: '' },
        { metric: 'heartbeat rate achieved', ours: r.rps, baseline: rate, against: 'scheduled', unit: '/s', ratio: r.rps / rate, target: '≥ 0.95×', pass: r.rps / rate >= 0.95 },
        { metric: 'heartbeat p50', ours: r.p50, unit: 'ms' },
        underRow('heartbeat p99', r.p99, 'ms'),
        { metric: 'gateway CPU (utime + stime)', ours: cpu * 100, unit: '% of a core' },
        { metric: 'gateway RSS', ours: rss, unit: 'MB' },
      ];
      ctx.note(`${duration} s at ${rate}/s over 50 connections (autocannon overallRate); registration through /batch (128 per call, 8 calls in flight) took ${registerS.toFixed(1)} s, with renewals of the instances registered so far running meanwhile; latency and CPU are of the ${duration} s after it`);
      return rows;
    } finally {
      await gw.stop();
    }
  },
};
