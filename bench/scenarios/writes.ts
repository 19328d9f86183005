// 3. Writes through the gateway (HTTP, driven by wrk) vs the raw etcd3 client
// doing the same store operations (lib/raw-etcd.ts) at the same concurrency:
// register, heartbeat, deregister; and one /batch of 100 vs 100 single
// registrations. wrk cannot drive a gRPC client: the raw side is a closed loop
// of 50 async workers in the bench process (lib/load.ts).
import { Etcd3 } from 'etcd3';
import { setTimeout as sleep } from 'node:timers/promises';
import { instanceId, instanceInput, loadDirect, registerByBatch, serviceName } from '../lib/fixtures.ts';
import { closedLoop, compare, pool, type Contender, type LoadStats } from '../lib/load.ts';
import { startGateway } from '../lib/procs.ts';
import { RawEtcd } from '../lib/raw-etcd.ts';
import { ratioRow, type Row, type Scenario } from '../lib/table.ts';
import { wrk } from '../lib/wrk.ts';

const CONCURRENCY = 50;
const TTL = 60;
const HEARTBEAT_POOL = 1000;
/** Deregistrations per second a pool is sized for (above both sides' rate on this machine: a used-up pool shows as 404 errors). */
const DEREGISTER_POOL_RATE = 3000;
const JSON_HEADERS = { 'content-type': 'application/json' };

/** Median time to register 100 new instances: one POST /batch, then 100 PUTs at CONCURRENCY. */
async function batchVsSingles(url: string, rounds: number): Promise<{ batchMs: number; singlesMs: number }> {
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const ok = async (res: Promise<Response>) => {
    const r = await res;
    await r.arrayBuffer();
    if (r.status >= 300) throw new Error(`${r.url} answered ${r.status}`);
  };
  const batchMs: number[] = [];
  const singlesMs: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const ids = Array.from({ length: 100 }, (_, i) => i);
    let t = performance.now();
    const register = ids.map((i) => ({ service: 'batch', id: `b-${round}-${i}`, ...instanceInput(i, TTL) }));
    await ok(fetch(`${url}/batch`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ register }) }));
    batchMs.push(performance.now() - t);
    t = performance.now();
    await pool(ids, CONCURRENCY, (i) =>
      ok(
        fetch(`${url}/services/single/instances/s-${round}-${i}`, {
          method: 'PUT',
          headers: JSON_HEADERS,
          body: JSON.stringify(instanceInput(i, TTL)),
        }),
      ),
    );
    singlesMs.push(performance.now() - t);
  }
  return { batchMs: median(batchMs), singlesMs: median(singlesMs) };
}

/** Resolves once the gateway lists `count` instances of `service` (its watch has applied the direct puts). */
async function seen(gateway: string, service: string, count: number): Promise<void> {
  for (const t0 = Date.now(); Date.now() - t0 < 60_000; await sleep(100)) {
    const res = await fetch(`${gateway}/services/${service}`);
    if (res.status === 200 && ((await res.json()) as { instances: unknown[] }).instances.length === count) return;
  }
  throw new Error(`gateway did not list ${count} instances of ${service} within 60 s`);
}

export const writes: Scenario = {
  name: 'writes',
  title: `3. Writes (gateway via wrk vs raw etcd3 client, ${CONCURRENCY} concurrent)`,
  async run(ctx) {
    const durationS = ctx.durationS ?? (ctx.quick ? 5 : 8);
    const warmS = ctx.quick ? 1 : 2;
    const raw = new RawEtcd(ctx.etcd);
    const gw = await startGateway({ etcd: ctx.etcd, cpuProfDir: ctx.cpuProfDir });
    const http = (script: string, args: Record<string, string | number>) => (seconds: number) =>
      wrk({ url: gw.url, script, args, connections: CONCURRENCY, threads: ctx.wrkThreads, durationS: seconds });
    const loop = (op: (n: number) => Promise<unknown>, seconds: number, amount?: number) =>
      closedLoop(op, { concurrency: CONCURRENCY, durationMs: seconds * 1000, amount });
    const results: Record<string, { gateway: LoadStats; raw: LoadStats }> = {};
    try {
      ctx.log('register');
      const body = JSON.stringify(instanceInput(1, TTL));
      const register = (run: string) => http('register.lua', { service: 'reg', run, body });
      const rawRegister = (run: string) => (seconds: number) => loop((n) => raw.register('rawreg', `r-${run}-${n}`, TTL), seconds);
      results.register = await compare(
        ctx.rounds,
        {
          gateway: { warm: () => register('w')(warmS), run: (r) => register(String(r))(durationS) },
          raw: { warm: () => rawRegister('w')(warmS), run: (r) => rawRegister(String(r))(durationS) },
        },
        ctx.log,
      );

      ctx.log('heartbeat');
      await registerByBatch(
        gw.url,
        Array.from({ length: HEARTBEAT_POOL }, (_, i) => ({ service: 'hb', id: instanceId(i), input: instanceInput(i, TTL) })),
      );
      const leases: string[] = [];
      await pool(Array.from({ length: HEARTBEAT_POOL }), 32, async (_, i) => void (leases[i] = await raw.grant(TTL)));
      const beat = http('heartbeat.lua', { service: 'hb', count: HEARTBEAT_POOL });
      const rawBeat = (seconds: number) =>
        loop(async (n) => {
          if ((await raw.heartbeat(leases[n % HEARTBEAT_POOL]!)) <= 0) throw new Error('lease gone');
        }, seconds);
      results.heartbeat = await compare(
        ctx.rounds,
        {
          gateway: { warm: () => beat(warmS), run: () => beat(durationS) },
          raw: { warm: () => rawBeat(warmS), run: () => rawBeat(durationS) },
        },
        ctx.log,
      );

      ctx.log('deregister');
      // One fresh pool of ttl-0 instances per side and round, written straight into etcd (fast), each a service of its own.
      const poolSize = DEREGISTER_POOL_RATE * durationS;
      const direct = new Etcd3({ hosts: ctx.etcd });
      try {
        await loadDirect(direct, 0, ctx.rounds * 2, poolSize);
      } finally {
        direct.close();
      }
      for (let s = 0; s < ctx.rounds * 2; s++) await seen(gw.url, serviceName(s), poolSize);
      const bookkeeping = await raw.grant(600);
      const sides: Record<'gateway' | 'raw', Contender<LoadStats>> = {
        gateway: { run: (r) => http('deregister.lua', { service: serviceName(2 * r), count: poolSize })(durationS) },
        raw: { run: (r) => loop((n) => raw.deregister(serviceName(2 * r + 1), instanceId(n), bookkeeping), durationS, poolSize) },
      };
      results.deregister = await compare(ctx.rounds, sides, ctx.log);

      ctx.log('batch of 100 vs 100 single registers');
      const batch = await batchVsSingles(gw.url, ctx.quick ? 3 : 8);

      const targets: Record<string, number> = { register: 0.85, heartbeat: 0.7, deregister: 0.85 };
      const rows: Row[] = [];
      for (const [op, r] of Object.entries(results)) {
        for (const [side, s] of Object.entries(r)) if (s.errors) ctx.note(`${op} (${side}): ${s.errors} failed or unexpected answers`);
        rows.push(ratioRow(op, r.gateway.rps, r.raw.rps, 'etcd3 client', 'ops/s', targets[op]));
        rows.push({
          metric: `  ${op} p50 / p99 latency`,
          ours: r.gateway.p50,
          baseline: r.raw.p50,
          against: 'etcd3 client',
          unit: 'ms',
          target: `p99 ${r.gateway.p99.toFixed(1)} vs ${r.raw.p99.toFixed(1)} ms`,
        });
      }
      rows.push({
        metric: '100 instances: one /batch vs 100 PUTs',
        ours: batch.batchMs,
        baseline: batch.singlesMs,
        against: `${CONCURRENCY} concurrent PUTs`,
        unit: 'ms',
        ratio: batch.singlesMs / batch.batchMs,
        target: 'report (speed-up)',
      });
      ctx.note(
        `register: PUT of a new id (ttl ${TTL}) vs lease grant + txn put (create_revision = 0); heartbeat: PUT …/heartbeat over ${HEARTBEAT_POOL} instances vs one keepalive on a shared stream; ` +
          `deregister: DELETE from a pool of ${poolSize} ttl-0 instances vs txn delete + bookkeeping put; ${ctx.rounds} round(s) of ${durationS} s, sides interleaved, median`,
      );
      ctx.note(
        `gateway side: wrk (${ctx.wrkThreads} thread(s), ${CONCURRENCY} connections); raw side: ${CONCURRENCY} async workers in the bench's Node process (wrk cannot drive gRPC)`,
      );
      ctx.note('each gateway write also waits until its own watch has applied the revision (read-your-writes); the raw client does not');
      return rows;
    } finally {
      raw.close();
      await gw.stop();
    }
  },
};
