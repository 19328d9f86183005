// 1. Cached discovery: GET /services/{name} (10 instances with tags and
// metadata) at 50 connections, next to a plain fastify route answering the same
// bytes and to etcd's own JSON gateway (POST /v3/kv/range) for the same prefix.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { instanceId, instanceInput, keys, registerByBatch } from '../lib/fixtures.ts';
import { cannon } from '../lib/load.ts';
import { logsDir, startBaseline, startGateway, type Child } from '../lib/procs.ts';
import { ratioRow, underRow, type Row, type Scenario } from '../lib/table.ts';

const SERVICE = 'payments';
const CONNECTIONS = 50;

const b64 = (s: string) => Buffer.from(s).toString('base64');

export const discovery: Scenario = {
  name: 'discovery',
  title: '1. Cached discovery (GET /services/{name}, 10 instances, 50 connections)',
  async run(ctx) {
    const duration = ctx.quick ? 2 : 6;
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
      ctx.note(`answer body ${body.length} bytes; ${duration} s per measurement after a ${Math.min(duration, 3)} s warm-up of each server`);

      const get = (url: string, headers: Record<string, string> = {}, ok: number[] = []) =>
        cannon({ url, connections: CONNECTIONS, duration, headers }, ok);
      const warm = (url: string) => cannon({ url, connections: CONNECTIONS, duration: Math.min(duration, 3) });

      await warm(`${gw.url}/services/${SERVICE}`);
      const ours = await get(`${gw.url}/services/${SERVICE}`);
      await warm(`${base.url}/services/${SERVICE}`);
      const fastify = await get(`${base.url}/services/${SERVICE}`);
      const prefix = keys.service(SERVICE);
      const rangeEnd = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
      const etcd = await cannon({
        url: `${ctx.etcd}/v3/kv/range`,
        method: 'POST',
        connections: CONNECTIONS,
        duration,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ key: b64(prefix), range_end: b64(rangeEnd) }),
      });
      const tagged = await get(`${gw.url}/services/${SERVICE}?tag=canary`);
      const notModified = await get(`${gw.url}/services/${SERVICE}`, { 'if-none-match': etag }, [304]);
      // Latency at a fixed offered load (half of what the framework alone sustains), not at saturation,
      // where latency is just connections / throughput.
      const rate = Math.max(100, Math.round(fastify.rps / 2));
      const paced = await cannon({ url: `${gw.url}/services/${SERVICE}`, connections: CONNECTIONS, duration, overallRate: rate });
      if (notModified.raw['3xx'] !== notModified.total) ctx.note(`If-None-Match run: only ${notModified.raw['3xx']} of ${notModified.total} answers were 304`);
      for (const [what, s] of [['gateway', ours], ['fastify', fastify], ['etcd', etcd], ['tag filter', tagged], ['304', notModified]] as const) {
        if (s.errors) ctx.note(`${what}: ${s.errors} failed requests of ${s.total}`);
      }

      const rows: Row[] = [
        ratioRow('GET /services/{name}', ours.rps, fastify.rps, 'fastify', 'req/s', 0.85),
        underRow(`  p99 latency at ${rate} req/s (half the fastify max)`, paced.p99, 'ms', 5),
        { metric: '  p99 latency at saturation', ours: ours.p99, baseline: fastify.p99, against: 'fastify', unit: 'ms', ratio: ours.p99 / fastify.p99 },
        { ...ratioRow('  vs etcd JSON gateway range', ours.rps, etcd.rps, 'etcd /v3/kv/range', 'req/s'), target: 'report' },
        { metric: '  p50 latency (gateway / fastify / etcd)', ours: ours.p50, unit: 'ms', baseline: fastify.p50, against: `fastify; etcd ${etcd.p50} ms` },
        ratioRow('GET ?tag=canary (5 of 10)', tagged.rps, fastify.rps, 'fastify', 'req/s', 0.85),
        { metric: '  p99 latency at saturation', ours: tagged.p99, baseline: fastify.p99, against: 'fastify', unit: 'ms' },
        ratioRow('GET with If-None-Match (304)', notModified.rps, fastify.rps, 'fastify 200', 'req/s', 0.85),
        { metric: '  p99 latency at saturation', ours: notModified.p99, baseline: fastify.p99, against: 'fastify', unit: 'ms' },
        { metric: 'etcd range p99 at saturation', ours: etcd.p99, unit: 'ms' },
      ];
      return rows;
    } finally {
      await Promise.all(children.map((c) => c.stop()));
    }
  },
};
