// 7. Leader kill under heartbeat load (issue 18): 20,000 instances on a
// 3-member cluster, half through each of two gateways, renewed every third of
// their TTL (paced wrk on each gateway) for 60 s; the etcd leader is killed
// (SIGKILL, stays down) 20 s in. Target: nothing expires.
import { setTimeout as sleep } from 'node:timers/promises';
import { expirations, pacedHeartbeats, registeredCount, registerRenewing, type Fleet } from '../lib/heartbeat-load.ts';
import { startGateway, type Gateway } from '../lib/procs.ts';
import { underRow, type Row, type Scenario } from '../lib/table.ts';

const INSTANCES = 20_000;
/** --quick checks the harness on a fifth of the fleet, for 20 s. */
const QUICK_INSTANCES = 4_000;
const SERVICES_PER_GATEWAY = 100;
/** The API's default TTL; renewed every TTL/3, as the agent does. */
const TTL = 30;
const CONNECTIONS = 50;

export const failover: Scenario = {
  name: 'failover',
  title: `7. Leader kill under heartbeat load (3-member cluster, 2 gateways, ${INSTANCES / 1000}k instances (${QUICK_INSTANCES / 1000}k with --quick), TTL ${TTL} s renewed every ${TTL / 3} s)`,
  members: 3,
  async run(ctx) {
    const durationS = ctx.quick ? 20 : 60;
    const killAtS = ctx.quick ? 8 : 20;
    const instances = ctx.quick ? QUICK_INSTANCES : INSTANCES;
    const rate = Math.round(instances / (TTL / 3));
    const eps = ctx.cluster.endpoints;
    const leader = await ctx.cluster.leaderIndex();
    // Gateway 0 lists the leader first, gateway 1 a follower first; both know every member.
    const orders = [0, 1].map((g) => eps.map((_, i) => eps[(leader + g + i) % eps.length]!).join(','));
    const gateways: Gateway[] = [];
    try {
      for (const order of orders) gateways.push(await startGateway({ etcd: order, cpuProfDir: ctx.cpuProfDir }));
      const fleets: Fleet[] = gateways.map((gw, g) => ({
        gateway: gw.url,
        count: instances / gateways.length,
        services: SERVICES_PER_GATEWAY,
        serviceOffset: g * SERVICES_PER_GATEWAY,
        ttl: TTL,
      }));
      const before = await Promise.all(gateways.map((gw) => expirations(gw.url)));
      const registered = await Promise.all(fleets.map((f) => registerRenewing(f, rate / fleets.length)));
      const registerS = registered.map((r) => r.seconds);
      ctx.log(`${instances} instances registered in ${Math.max(...registerS).toFixed(1)} s`);

      const load = Promise.all(
        fleets.map((f, g) => pacedHeartbeats(f, rate / fleets.length, registered[g]!.startAt, durationS, CONNECTIONS, ctx.wrkThreads)),
      );
      load.catch(() => {}); // its failure is thrown by `await load` below, not as an unhandled rejection meanwhile
      await sleep(killAtS * 1000);
      const killedAt = performance.now();
      await ctx.cluster.kill(leader);
      ctx.log(`killed the leader (member ${leader})`);
      let newLeaderS = NaN;
      for (const t0 = performance.now(); performance.now() - t0 < 20_000; await sleep(100)) {
        const now = await ctx.cluster.leaderIndex().catch(() => -1);
        if (now >= 0 && now !== leader) {
          newLeaderS = (performance.now() - killedAt) / 1000;
          break;
        }
      }
      const results = await load;
      await sleep(500);
      const after = await Promise.all(gateways.map((gw) => expirations(gw.url)));
      // Every gateway's watch sees every expiry: the largest count, not the sum.
      const expired = Math.max(...after.map((a, g) => a - before[g]!));
      const left = Math.min(...(await Promise.all(gateways.map((gw) => registeredCount(gw.url)))));
      const rows: Row[] = [
        { metric: 'instances expired (discovery_expirations_total)', ours: expired, unit: '', target: '= 0', pass: expired === 0 },
        {
          metric: 'instances still listed',
          ours: left,
          baseline: instances,
          against: 'registered',
          unit: '',
          ratio: left / instances,
          target: '= 1',
          pass: left === instances,
        },
        { metric: 'new leader elected after the kill', ours: newLeaderS, unit: 's' },
      ];
      results.forEach((r, g) => {
        const scheduled = rate / gateways.length;
        rows.push({
          metric: `gateway ${g}: heartbeats achieved`,
          ours: r.rps,
          baseline: scheduled,
          against: 'scheduled',
          unit: '/s',
          ratio: r.rps / scheduled,
        });
        rows.push({ metric: `  failed or unexpected answers`, ours: r.errors, unit: '', baseline: r.ok, against: 'answered 200' });
        rows.push({ metric: '  p50 / p90', ours: r.p50, baseline: r.p90, against: 'p90', unit: 'ms' });
        rows.push(underRow('  p99', r.p99, 'ms'));
        rows.push({ metric: '  max', ours: r.max, unit: 'ms' });
      });
      ctx.note(
        `${durationS} s of renewals at ${rate}/s in all (wrk per gateway, heartbeat.lua paced by rate=, ${CONNECTIONS} connections); leader SIGKILLed ${killAtS} s in and left down; ` +
          `registration (/batch, with a Node loop keeping the renewal schedule meanwhile) took ${Math.max(...registerS).toFixed(1)} s; ETCD_ENDPOINTS: gateway 0 ${orders[0]}, gateway 1 ${orders[1]}`,
      );
      return rows;
    } finally {
      await Promise.all(gateways.map((gw) => gw.stop()));
    }
  },
};
