// 3. Writes through the gateway vs the raw etcd3 client doing the same store
// operations at the same concurrency (lib/raw-etcd.ts): register, heartbeat,
// deregister; and one /batch of 100 vs 100 single registrations.
import type { Request } from 'autocannon';
import { instanceId, instanceInput, registerByBatch } from '../lib/fixtures.ts';
import { cannon, closedLoop, pool, type LoadStats } from '../lib/load.ts';
import { startGateway } from '../lib/procs.ts';
import { RawEtcd } from '../lib/raw-etcd.ts';
import { ratioRow, type Row, type Scenario } from '../lib/table.ts';

const CONCURRENCY = 32;
const TTL = 60;
const HEARTBEAT_POOL = 1000;
const JSON_HEADERS = { 'content-type': 'application/json' };

/** An autocannon request whose path (and body) change on every call. */
function varying(method: string, path: (n: number) => string, body?: (n: number) => string): Request[] {
  let n = 0;
  const setupRequest = (req: Request): Request => {
    const i = n++;
    return body ? { ...req, path: path(i), body: body(i) } : { ...req, path: path(i) };
  };
  return [{ method, headers: body ? JSON_HEADERS : {}, setupRequest }];
}

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
      ok(fetch(`${url}/services/single/instances/s-${round}-${i}`, { method: 'PUT', headers: JSON_HEADERS, body: JSON.stringify(instanceInput(i, TTL)) })),
    );
    singlesMs.push(performance.now() - t);
  }
  return { batchMs: median(batchMs), singlesMs: median(singlesMs) };
}

export const writes: Scenario = {
  name: 'writes',
  title: `3. Writes (gateway vs raw etcd3 client, ${CONCURRENCY} concurrent)`,
  async run(ctx) {
    const duration = ctx.quick ? 2 : 5;
    const deregisterPool = ctx.quick ? 1500 : 4000;
    const raw = new RawEtcd(ctx.etcd);
    const gw = await startGateway({ etcd: ctx.etcd, cpuProfDir: ctx.cpuProfDir });
    const stats: Record<string, [LoadStats, LoadStats]> = {};
    const checked = (what: string, s: LoadStats) => {
      if (s.errors) ctx.note(`${what}: ${s.errors} failed of ${s.total + s.errors}`);
      return s;
    };
    try {
      const body = JSON.stringify(instanceInput(1, TTL));
      ctx.log('register');
      const gRegister = await cannon({ url: gw.url, connections: CONCURRENCY, duration, requests: varying('PUT', (n) => `/services/reg/instances/${instanceId(n)}`, () => body) });
      const rRegister = await closedLoop((n) => raw.register('rawreg', instanceId(n), TTL), { concurrency: CONCURRENCY, durationMs: duration * 1000 });
      stats.register = [checked('gateway register', gRegister), checked('raw register', rRegister)];

      ctx.log('heartbeat');
      await registerByBatch(gw.url, Array.from({ length: HEARTBEAT_POOL }, (_, i) => ({ service: 'hb', id: instanceId(i), input: instanceInput(i, TTL) })));
      const leases: string[] = [];
      await pool(Array.from({ length: HEARTBEAT_POOL }), 32, async (_, i) => void (leases[i] = await raw.grant(TTL)));
      const gBeat = await cannon({ url: gw.url, connections: CONCURRENCY, duration, requests: varying('PUT', (n) => `/services/hb/instances/${instanceId(n % HEARTBEAT_POOL)}/heartbeat`) });
      const rBeat = await closedLoop(async (n) => {
        if ((await raw.heartbeat(leases[n % HEARTBEAT_POOL]!)) <= 0) throw new Error('lease gone');
      }, { concurrency: CONCURRENCY, durationMs: duration * 1000 });
      stats.heartbeat = [checked('gateway heartbeat', gBeat), checked('raw heartbeat', rBeat)];

      ctx.log('deregister');
      const items = (service: string) => Array.from({ length: deregisterPool }, (_, i) => ({ service, id: instanceId(i), input: instanceInput(i, 0) }));
      await registerByBatch(gw.url, [...items('dereg'), ...items('rawdereg')]);
      const bookkeeping = await raw.grant(120);
      const gDereg = await cannon({ url: gw.url, connections: CONCURRENCY, amount: deregisterPool, requests: varying('DELETE', (n) => `/services/dereg/instances/${instanceId(n)}`) });
      const rDereg = await closedLoop((n) => raw.deregister('rawdereg', instanceId(n), bookkeeping), { concurrency: CONCURRENCY, amount: deregisterPool });
      stats.deregister = [checked('gateway deregister', gDereg), checked('raw deregister', rDereg)];

      ctx.log('batch of 100 vs 100 single registers');
      const batch = await batchVsSingles(gw.url, ctx.quick ? 3 : 8);

      const rows: Row[] = [];
      for (const [op, [g, r]] of Object.entries(stats)) {
        rows.push(ratioRow(op, g.rps, r.rps, 'etcd3 client', 'ops/s', 0.9));
        rows.push({ metric: `  ${op} p50 / p99 latency`, ours: g.p50, baseline: r.p50, against: 'etcd3 client', unit: 'ms', target: `p99 ${g.p99} ms vs ${r.p99.toFixed(1)} ms` });
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
          `deregister: DELETE of ${deregisterPool} instances vs txn delete + bookkeeping put; ${duration} s per run (deregister: until the pool is empty)`,
      );
      ctx.note('each gateway write also waits until its own watch has applied the revision (read-your-writes); the raw client does not');
      return rows;
    } finally {
      raw.close();
      await gw.stop();
    }
  },
};
