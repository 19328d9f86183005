// 5. Heartbeat load: 20k instances with a 10 s TTL renewing on schedule for 30 s
// through one gateway. Each instance renews every two thirds of its TTL (3.3 s
// of slack), in registration order, so the rate is 20k / 6.7 s = 3k/s. (One
// renewal per TTL, 2k/s, would leave no slack at all: any delay would expire
// instances.) Renewals during registration come from lib/heartbeat-load.ts's
// Node loop; the measured part is wrk, paced (heartbeat.lua rate=).
// Reports expirations (target: none), heartbeat latency, and the gateway's CPU.
import { setTimeout as sleep } from 'node:timers/promises';
import { expirations, pacedHeartbeats, registeredCount, registerRenewing, type Fleet } from '../lib/heartbeat-load.ts';
import { cpuSeconds, rssMb, startGateway } from '../lib/procs.ts';
import { underRow, type Row, type Scenario } from '../lib/table.ts';

const INSTANCES = 20_000;
/** --quick checks the harness on a quarter of the fleet. */
const QUICK_INSTANCES = 5_000;
const SERVICES = 200;
const TTL = 10;
const PERIOD_S = (TTL * 2) / 3;
const CONNECTIONS = 50;

export const heartbeats: Scenario = {
  name: 'heartbeats',
  title: `5. Heartbeat load (${INSTANCES / 1000}k instances (${QUICK_INSTANCES / 1000}k with --quick), TTL ${TTL} s, renewed every ${PERIOD_S.toFixed(1)} s)`,
  async run(ctx) {
    const durationS = ctx.durationS ?? (ctx.quick ? 10 : 30);
    const instances = ctx.quick ? QUICK_INSTANCES : INSTANCES;
    const rate = Math.round(instances / PERIOD_S);
    const gw = await startGateway({ etcd: ctx.etcd, cpuProfDir: ctx.cpuProfDir });
    try {
      const fleet: Fleet = { gateway: gw.url, count: instances, services: SERVICES, serviceOffset: 0, ttl: TTL };
      const expiredBefore = await expirations(gw.url);
      const { seconds: registerS, startAt } = await registerRenewing(fleet, rate);
      ctx.log(`${instances} instances registered in ${registerS.toFixed(1)} s`);

      const cpu0 = cpuSeconds(gw.pid);
      const t0 = performance.now();
      const r = await pacedHeartbeats(fleet, rate, startAt, durationS, CONNECTIONS, ctx.wrkThreads);
      const cpu = (cpuSeconds(gw.pid) - cpu0) / ((performance.now() - t0) / 1000);
      const rss = rssMb(gw.pid);
      await sleep(200);
      const expired = (await expirations(gw.url)) - expiredBefore;
      const left = await registeredCount(gw.url);
      const notFound = r.statuses['404'] ?? 0;
      const rows: Row[] = [
        { metric: 'instances expired', ours: expired, unit: '', target: '= 0', pass: expired === 0 },
        { metric: 'instances still registered', ours: left, baseline: instances, against: 'registered', unit: '', ratio: left / instances },
        { metric: 'heartbeats answered 404 / failed', ours: notFound, baseline: r.errors - notFound, against: 'other failures', unit: '' },
        {
          metric: 'heartbeat rate achieved',
          ours: r.rps,
          baseline: rate,
          against: 'scheduled',
          unit: '/s',
          ratio: r.rps / rate,
          target: '≥ 0.95×',
          pass: r.rps / rate >= 0.95,
        },
        { metric: 'heartbeat p50 / p90', ours: r.p50, baseline: r.p90, against: 'p90', unit: 'ms' },
        underRow('heartbeat p99', r.p99, 'ms'),
        { metric: 'heartbeat max', ours: r.max, unit: 'ms' },
        { metric: 'gateway CPU (utime + stime)', ours: cpu * 100, unit: '% of a core' },
        { metric: 'gateway RSS', ours: rss, unit: 'MB' },
      ];
      ctx.note(
        `${durationS} s at ${rate}/s over ${CONNECTIONS} connections (wrk, heartbeat.lua paced by rate=); registration through /batch (128 per call, 8 in flight) took ${registerS.toFixed(1)} s, ` +
          'with a Node loop keeping the renewal schedule meanwhile (wrk continues it); latency and CPU are of the wrk part',
      );
      return rows;
    } finally {
      await gw.stop();
    }
  },
};
