// 1. Cached discovery: GET /services/{name} (10 instances with tags and
// metadata) at 50 connections, driven by wrk, next to a plain fastify route
// answering the same bytes and to etcd's own JSON gateway (POST /v3/kv/range)
// for the same prefix; also `?tag=` filtered and If-None-Match (304).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { instanceId, instanceInput, keys, registerByBatch } from '../lib/fixtures.ts';
import { compare } from '../lib/load.ts';
import { logsDir, startBaseline, startGateway, type Child } from '../lib/procs.ts';
import { latencyRow, ratioRow, type Row, type Scenario } from '../lib/table.ts';
import { wrk, type WrkOptions } from '../lib/wrk.ts';

const SERVICE = 'payments';
const CONNECTIONS = 50;

const b64 = (s: string) => Buffer.from(s).toString('base64');

export const discovery: Scenario = {
  name: 'discovery',
  title: '1. Cached discovery (GET /services/{name}, 10 instances, 50 connections, wrk)',
  async run(ctx) {
    const durationS = ctx.durationS ?? (ctx.quick ? 5 : 10);
    const warmS = ctx.quick ? 1 : 3;
    const children: Child[] = [];
    try {
      const gw = await startGateway({ etcd: ctx.etcd, cpuProfDir: ctx.cpuProfDir });
      children.push(gw);
      await registerByBatch(
        gw.url,
        Array.from({ length: 10 }, (_, i) => ({ service: SERVICE, id: instanceId(i), input: instanceInput(i, 0) })),
      );
      const res = await fetch(`${gw.url}/services/${SERVICE}`);
      const body = await res.text();
      const etag = res.headers.get('etag')!;
      const bodyFile = join(await logsDir(), 'discovery-body.json');
      await writeFile(bodyFile, body);
      const base = await startBaseline(bodyFile);
      children.push(base);

      const prefix = keys.service(SERVICE);
      const rangeEnd = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
      const load = (url: string, args: WrkOptions['args'] = {}) => {
        const opts = { url, script: 'request.lua', args, connections: CONNECTIONS, threads: ctx.wrkThreads };
        return { warm: () => wrk({ ...opts, durationS: warmS }), run: () => wrk({ ...opts, durationS }) };
      };
      const r = await compare(
        ctx.rounds,
        {
          gateway: load(`${gw.url}/services/${SERVICE}`),
          fastify: load(`${base.url}/services/${SERVICE}`),
          tagged: load(`${gw.url}/services/${SERVICE}?tag=canary`),
          notModified: load(`${gw.url}/services/${SERVICE}`, { header: `If-None-Match:${etag}`, expect: 304 }),
          etcd: load(`${ctx.etcd}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: b64(prefix), range_end: b64(rangeEnd) }) }),
        },
        ctx.log,
      );
      for (const [what, s] of Object.entries(r)) {
        if (s.errors) ctx.note(`${what}: ${s.errors} failed or unexpected answers (statuses ${JSON.stringify(s.statuses)})`);
      }
      ctx.note(
        `answer body ${body.length} bytes; wrk, ${CONNECTIONS} connections, ${ctx.wrkThreads} thread(s); ${ctx.rounds} round(s) of ${durationS} s, ` +
          `contenders interleaved, median; ${warmS} s warm-up of each; wrk itself used ${Math.round((r.gateway.wrkCpuS / durationS) * 100)}% of a core against the gateway`,
      );
      const rows: Row[] = [
        ratioRow('GET /services/{name}', r.gateway.rps, r.fastify.rps, 'fastify', 'req/s', 0.85),
        latencyRow('  p99 latency at saturation', r.gateway.p99, r.fastify.p99, 'fastify', 1.2),
        {
          metric: '  p50 / p90 latency',
          ours: r.gateway.p50,
          baseline: r.fastify.p50,
          against: 'fastify',
          unit: 'ms',
          target: `p90 ${r.gateway.p90.toFixed(2)} vs ${r.fastify.p90.toFixed(2)} ms`,
        },
        { ...ratioRow('  vs etcd JSON gateway range', r.gateway.rps, r.etcd.rps, 'etcd /v3/kv/range', 'req/s'), target: 'report' },
        ratioRow('GET ?tag=canary (5 of 10)', r.tagged.rps, r.fastify.rps, 'fastify', 'req/s', 0.8),
        latencyRow('  p99 latency at saturation', r.tagged.p99, r.fastify.p99, 'fastify'),
        ratioRow('GET with If-None-Match (304)', r.notModified.rps, r.fastify.rps, 'fastify 200', 'req/s', 0.9),
        latencyRow('  p99 latency at saturation', r.notModified.p99, r.fastify.p99, 'fastify'),
        { metric: 'etcd range p50 / p99 at saturation', ours: r.etcd.p50, baseline: r.etcd.p99, against: 'p99', unit: 'ms' },
      ];
      return rows;
    } finally {
      await Promise.all(children.map((c) => c.stop()));
    }
  },
};
