// 2. Size independence: discovery latency of one 10-instance service while the
// gateway holds 1k, 10k and 100k instances (100, 1,000 and 10,000 services of
// 10, written straight into etcd with ttl 0), the gateway's memory, and its
// cold start on the loaded etcd (spawn to /health/ready = 200).
import { Etcd3 } from 'etcd3';
import { loadDirect, serviceName } from '../lib/fixtures.ts';
import { rssMb, startGateway } from '../lib/procs.ts';
import { underRow, type Row, type Scenario } from '../lib/table.ts';
import { wrk } from '../lib/wrk.ts';

const PER_SERVICE = 10;
const SIZES = [1_000, 10_000, 100_000];

export const sizes: Scenario = {
  name: 'sizes',
  title: '2. Size independence (discovery with 1k / 10k / 100k instances)',
  async run(ctx) {
    const duration = ctx.durationS ?? (ctx.quick ? 2 : 5);
    const etcd = new Etcd3({ hosts: ctx.etcd, grpcOptions: { 'grpc.max_receive_message_length': -1 } });
    const measured: { size: number; p99: number; p50: number; rps: number; rss: number; readyMs: number }[] = [];
    try {
      let loaded = 0;
      for (const size of SIZES) {
        const t = performance.now();
        await loadDirect(etcd, loaded / PER_SERVICE, (size - loaded) / PER_SERVICE, PER_SERVICE);
        ctx.log(`${size} instances in etcd (+${size - loaded} in ${((performance.now() - t) / 1000).toFixed(1)} s)`);
        loaded = size;
        const gw = await startGateway({ etcd: ctx.etcd, cpuProfDir: ctx.cpuProfDir });
        try {
          const url = `${gw.url}/services/${serviceName(7)}`;
          const check = (await (await fetch(url)).json()) as { instances: unknown[] };
          if (check.instances.length !== PER_SERVICE) throw new Error(`expected ${PER_SERVICE} instances, got ${check.instances.length}`);
          const load = (durationS: number) => wrk({ url, script: 'request.lua', connections: 50, threads: ctx.wrkThreads, durationS });
          await load(1);
          const r = await load(duration);
          if (r.errors) ctx.note(`${size}: ${r.errors} failed or unexpected answers`);
          measured.push({ size, p99: r.p99, p50: r.p50, rps: r.rps, rss: rssMb(gw.pid), readyMs: gw.readyMs });
          ctx.log(
            `${size}: ready in ${gw.readyMs.toFixed(0)} ms, ${r.rps.toFixed(0)} req/s, p99 ${r.p99.toFixed(2)} ms, RSS ${rssMb(gw.pid).toFixed(0)} MB`,
          );
        } finally {
          await gw.stop();
        }
      }
    } finally {
      etcd.close();
    }
    const first = measured[0]!;
    const last = measured[measured.length - 1]!;
    const rows: Row[] = [];
    for (const m of measured) {
      rows.push({
        metric: `${m.size.toLocaleString('en-US')} instances: p99 (p50 ${m.p50.toFixed(2)} ms, ${Math.round(m.rps)} req/s)`,
        ours: m.p99,
        unit: 'ms',
      });
    }
    const growth = last.p99 / first.p99;
    rows.push({
      metric: 'p99 growth 1k → 100k',
      ours: last.p99,
      baseline: first.p99,
      against: '1k',
      unit: 'ms',
      ratio: growth,
      target: '≤ 1.2×',
      pass: growth <= 1.2,
    });
    rows.push({
      metric: 'throughput 100k vs 1k',
      ours: last.rps,
      baseline: first.rps,
      against: '1k',
      unit: 'req/s',
      ratio: last.rps / first.rps,
    });
    for (const m of measured)
      rows.push({
        ...underRow(`gateway RSS, ${m.size.toLocaleString('en-US')} instances`, m.rss, 'MB', m.size === 100_000 ? 400 : undefined),
      });
    for (const m of measured)
      rows.push(
        underRow(`cold start to ready, ${m.size.toLocaleString('en-US')}`, m.readyMs / 1000, 's', m.size === 100_000 ? 5 : undefined),
      );
    ctx.note(
      `latency at 50 connections, saturated, wrk (${ctx.wrkThreads} thread(s), µs resolution), one ${duration} s run per size after a 1 s warm-up`,
    );
    ctx.note(
      'cold start = spawn of `node dist/main.js` to the first /health/ready 200 (Node start-up, paged etcd range, cache build, watch)',
    );
    return rows;
  },
};
