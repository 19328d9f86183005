// 6. Heartbeats through a follower (issue 18): a 3-member cluster, one gateway
// whose only endpoint is the leader and one whose only endpoint is a follower,
// 1,000 instances, wrk at 50 connections against each in turn, same run.
// A follower forwards every lease renewal to the leader: this shows what that
// costs. The raw etcd3 client renewing 1,000 leases through the same follower
// and the same leader, in the same rounds, shows what etcd's forwarding costs
// by itself: the gateway's follower/leader ratio is measured against raw's.
import { setTimeout as sleep } from 'node:timers/promises';
import { KEEPALIVE_STREAMS } from '../../src/registry/store/etcd.ts';
import { startTrivialRoute } from '../lib/ceiling.ts';
import { instanceId, instanceInput, registerByBatch } from '../lib/fixtures.ts';
import { closedLoop, compare, roundRatio, type Contender, type LoadStats } from '../lib/load.ts';
import { captureAnswer, startGateway, type Child, type Gateway } from '../lib/procs.ts';
import { RawEtcd } from '../lib/raw-etcd.ts';
import { guarded, ratioRow, type Row, type Scenario } from '../lib/table.ts';
import { checkedLoad } from '../lib/wrk.ts';

const INSTANCES = 1000;
const CONNECTIONS = 50;
const TTL = 60;
const SERVICE = 'hb';
/** The gateway's follower/leader ratio must be at least this share of the raw client's. */
const OF_RAW = 0.95;

async function listsAll(gw: Gateway): Promise<void> {
  for (const t0 = Date.now(); Date.now() - t0 < 30_000; await sleep(100)) {
    const res = await fetch(`${gw.url}/services/${SERVICE}`);
    if (res.status === 200 && ((await res.json()) as { instances: unknown[] }).instances.length === INSTANCES) return;
  }
  throw new Error(`gateway ${gw.url} did not list the ${INSTANCES} instances within 30 s`);
}

/** 50 async workers renewing the leases round robin through `raw` (what wrk does to a gateway). */
function rawRenewals(raw: RawEtcd, leases: string[], warmS: number, durationS: number): Contender<LoadStats> {
  const renew = (seconds: number) =>
    closedLoop(
      async (n) => {
        if ((await raw.heartbeat(leases[n % leases.length]!)) <= 0) throw new Error('lease gone');
      },
      { concurrency: CONNECTIONS, durationMs: seconds * 1000 },
    );
  return { warm: () => renew(warmS), run: () => renew(durationS) };
}

export const follower: Scenario = {
  name: 'follower',
  title: `6. Heartbeats through a follower vs the leader (3-member cluster, ${INSTANCES} instances, ${CONNECTIONS} connections)`,
  members: 3,
  async run(ctx) {
    const durationS = ctx.durationS ?? (ctx.quick ? 5 : 8);
    const warmS = 2;
    const leader = await ctx.cluster.leaderIndex();
    const other = (leader + 1) % ctx.cluster.endpoints.length;
    const children: Child[] = [];
    // The raw client opens as many keepalive streams as the gateway's pool, each on its one member.
    const rawLeader = new RawEtcd(ctx.cluster.endpoints[leader]!, KEEPALIVE_STREAMS);
    const rawFollower = new RawEtcd(ctx.cluster.endpoints[other]!, KEEPALIVE_STREAMS);
    try {
      const onLeader = await startGateway({ etcd: ctx.cluster.endpoints[leader]!, cpuProfDir: ctx.cpuProfDir });
      children.push(onLeader);
      const onFollower = await startGateway({ etcd: ctx.cluster.endpoints[other]!, cpuProfDir: ctx.cpuProfDir });
      children.push(onFollower);
      await registerByBatch(
        onLeader.url,
        Array.from({ length: INSTANCES }, (_, i) => ({ service: SERVICE, id: instanceId(i), input: instanceInput(i, TTL) })),
      );
      await listsAll(onFollower);
      const leases = await Promise.all(Array.from({ length: INSTANCES }, () => rawLeader.grant(TTL)));
      const path = `/services/${SERVICE}/instances/${instanceId(0)}/heartbeat`;
      const trivial = await startTrivialRoute(await captureAnswer(`${onLeader.url}${path}`, { method: 'PUT' }, 'heartbeat'));
      children.push(trivial);
      const beat = (url: string) =>
        checkedLoad(
          { url, script: 'heartbeat.lua', args: { service: SERVICE, count: INSTANCES }, connections: CONNECTIONS, threads: ctx.wrkThreads },
          warmS,
          durationS,
        );
      const r = await compare(
        ctx.rounds,
        {
          leader: beat(onLeader.url),
          follower: beat(onFollower.url),
          ceiling: beat(trivial.url),
          rawLeader: rawRenewals(rawLeader, leases, warmS, durationS),
          rawFollower: rawRenewals(rawFollower, leases, warmS, durationS),
        },
        ctx.log,
      );
      if ((await ctx.cluster.leaderIndex()) !== leader) ctx.note('the leader changed during the run: the comparison is void');
      for (const [side, s] of Object.entries(r)) if (s.errors) ctx.note(`${side}: ${s.errors} failed or unexpected answers`);
      ctx.note(
        `wrk (${ctx.wrkThreads} thread(s)), ${ctx.rounds} round(s) of ${durationS} s, sides interleaved, median; each gateway's ETCD_ENDPOINTS names only its member; ` +
          `raw: the etcd3 client in the bench process, ${CONNECTIONS} async workers renewing ${INSTANCES} leases round robin over ${KEEPALIVE_STREAMS} keepalive streams (as many as the gateway's pool) to one member`,
      );
      ctx.note(`wrk ceiling: heartbeat.lua against haproxy (one thread) answering a captured heartbeat answer`);
      const gatewayRatio = roundRatio(r.follower, r.leader);
      const rawRatio = roundRatio(r.rawFollower, r.rawLeader);
      const rows: Row[] = [
        guarded(
          ratioRow('heartbeats via follower / via leader', r.follower.rps, r.leader.rps, 'via leader', '/s', 0.9, gatewayRatio),
          r.ceiling.rps,
        ),
        { metric: '  p50 / p99 via follower', ours: r.follower.p50, baseline: r.follower.p99, against: 'p99', unit: 'ms' },
        { metric: '  p50 / p99 via leader', ours: r.leader.p50, baseline: r.leader.p99, against: 'p99', unit: 'ms' },
        ratioRow(
          'raw etcd3 keepalives via follower / via leader',
          r.rawFollower.rps,
          r.rawLeader.rps,
          'via leader',
          '/s',
          undefined,
          rawRatio,
        ),
        { metric: '  p50 / p99 raw via follower', ours: r.rawFollower.p50, baseline: r.rawFollower.p99, against: 'p99', unit: 'ms' },
        { metric: '  p50 / p99 raw via leader', ours: r.rawLeader.p50, baseline: r.rawLeader.p99, against: 'p99', unit: 'ms' },
        {
          metric: "gateway's follower/leader ratio vs raw's",
          ours: gatewayRatio,
          baseline: rawRatio,
          against: 'raw',
          unit: '×',
          ratio: gatewayRatio / rawRatio,
          target: `≥ ${OF_RAW}×`,
          pass: gatewayRatio / rawRatio >= OF_RAW,
        },
      ];
      return rows;
    } finally {
      rawLeader.close();
      rawFollower.close();
      await Promise.all(children.map((c) => c.stop()));
    }
  },
};
