// 6. Heartbeats through a follower (issue 18): a 3-member cluster, one gateway
// whose only endpoint is the leader and one whose only endpoint is a follower,
// 1,000 instances, wrk at 50 connections against each in turn, same run.
// A follower forwards every lease renewal to the leader: this shows what that costs.
import { setTimeout as sleep } from 'node:timers/promises';
import { instanceId, instanceInput, registerByBatch } from '../lib/fixtures.ts';
import { compare } from '../lib/load.ts';
import { startGateway, type Gateway } from '../lib/procs.ts';
import { ratioRow, type Row, type Scenario } from '../lib/table.ts';
import { wrk } from '../lib/wrk.ts';

const INSTANCES = 1000;
const CONNECTIONS = 50;
const TTL = 60;
const SERVICE = 'hb';

async function listsAll(gw: Gateway): Promise<void> {
  for (const t0 = Date.now(); Date.now() - t0 < 30_000; await sleep(100)) {
    const res = await fetch(`${gw.url}/services/${SERVICE}`);
    if (res.status === 200 && ((await res.json()) as { instances: unknown[] }).instances.length === INSTANCES) return;
  }
  throw new Error(`gateway ${gw.url} did not list the ${INSTANCES} instances within 30 s`);
}

export const follower: Scenario = {
  name: 'follower',
  title: `6. Heartbeats through a follower vs the leader (3-member cluster, ${INSTANCES} instances, ${CONNECTIONS} connections)`,
  members: 3,
  async run(ctx) {
    const durationS = ctx.durationS ?? (ctx.quick ? 5 : 8);
    const leader = await ctx.cluster.leaderIndex();
    const other = (leader + 1) % ctx.cluster.endpoints.length;
    const onLeader = await startGateway({ etcd: ctx.cluster.endpoints[leader]!, cpuProfDir: ctx.cpuProfDir });
    const onFollower = await startGateway({ etcd: ctx.cluster.endpoints[other]!, cpuProfDir: ctx.cpuProfDir }).catch(
      async (err: unknown) => {
        await onLeader.stop();
        throw err;
      },
    );
    try {
      await registerByBatch(
        onLeader.url,
        Array.from({ length: INSTANCES }, (_, i) => ({ service: SERVICE, id: instanceId(i), input: instanceInput(i, TTL) })),
      );
      await listsAll(onFollower);
      const beat = (gw: Gateway) => (seconds: number) =>
        wrk({
          url: gw.url,
          script: 'heartbeat.lua',
          args: { service: SERVICE, count: INSTANCES },
          connections: CONNECTIONS,
          threads: ctx.wrkThreads,
          durationS: seconds,
        });
      const r = await compare(
        ctx.rounds,
        {
          leader: { warm: () => beat(onLeader)(2), run: () => beat(onLeader)(durationS) },
          follower: { warm: () => beat(onFollower)(2), run: () => beat(onFollower)(durationS) },
        },
        ctx.log,
      );
      if ((await ctx.cluster.leaderIndex()) !== leader) ctx.note('the leader changed during the run: the comparison is void');
      for (const [side, s] of Object.entries(r)) if (s.errors) ctx.note(`${side}: ${s.errors} failed or unexpected answers`);
      ctx.note(
        `wrk (${ctx.wrkThreads} thread(s)), ${ctx.rounds} round(s) of ${durationS} s, sides interleaved, median; each gateway's ETCD_ENDPOINTS names only its member`,
      );
      const rows: Row[] = [
        ratioRow('heartbeats via follower / via leader', r.follower.rps, r.leader.rps, 'via leader', '/s', 0.9),
        { metric: '  p50 / p99 via follower', ours: r.follower.p50, baseline: r.follower.p99, against: 'p99', unit: 'ms' },
        { metric: '  p50 / p99 via leader', ours: r.leader.p50, baseline: r.leader.p99, against: 'p99', unit: 'ms' },
      ];
      return rows;
    } finally {
      await Promise.all([onLeader.stop(), onFollower.stop()]);
    }
  },
};
