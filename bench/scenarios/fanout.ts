// 4. SSE fan-out: 1,000 subscribers on one service (held by a child process,
// lib/sse-subscribers.ts); for each of a series of registrations, the time from
// the register call's answer to each subscriber's receipt of the event; and the
// gateway's memory per open stream.
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { instanceId, instanceInput } from '../lib/fixtures.ts';
import { percentile } from '../lib/load.ts';
import { freePort, rssMb, spawnChild, startGateway } from '../lib/procs.ts';
import { underRow, type Row, type Scenario } from '../lib/table.ts';

const SUBSCRIBERS = 1000;
const SERVICE = 'fan';

export const fanout: Scenario = {
  name: 'fanout',
  title: `4. SSE fan-out (${SUBSCRIBERS} subscribers on one service)`,
  async run(ctx) {
    const registrations = ctx.quick ? 10 : 40;
    const gw = await startGateway({ etcd: ctx.etcd, cpuProfDir: ctx.cpuProfDir, env: { SSE_MAX_STREAMS: String(SUBSCRIBERS * 2) } });
    const subs = await spawnChild('subscribers', ['--import', 'tsx', 'bench/lib/sse-subscribers.ts'], {}, await freePort(), {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    try {
      await sleep(500);
      const rssBefore = rssMb(gw.pid);
      const ready = once(subs.proc, 'message', { signal: AbortSignal.timeout(60_000) });
      subs.proc.send({ url: `${gw.url}/services/${SERVICE}/events`, count: SUBSCRIBERS });
      await ready;
      await sleep(1000);
      const rssAfter = rssMb(gw.pid);
      ctx.log(`${SUBSCRIBERS} streams open; gateway RSS ${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MB`);

      const answered = new Map<string, { sent: number; answered: number }>();
      for (let i = 0; i < registrations; i++) {
        const sent = performance.timeOrigin + performance.now();
        const res = await fetch(`${gw.url}/services/${SERVICE}/instances/${instanceId(i)}`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(instanceInput(i, 0)),
        });
        const at = performance.timeOrigin + performance.now();
        await res.arrayBuffer();
        if (res.status !== 201) throw new Error(`register answered ${res.status}`);
        answered.set(res.headers.get('x-registry-revision')!, { sent, answered: at });
        await sleep(100); // one event at a time: measures delivery, not queueing behind the previous event
      }
      await sleep(1000);
      const collected = once(subs.proc, 'message', { signal: AbortSignal.timeout(30_000) });
      subs.proc.send({ type: 'collect' });
      const [{ times }] = (await collected) as [{ times: Record<string, number[]> }];

      const fromAnswer: number[] = [];
      const fromRequest: number[] = [];
      for (const [revision, t] of answered) {
        for (const got of times[revision] ?? []) {
          fromAnswer.push(got - t.answered);
          fromRequest.push(got - t.sent);
        }
      }
      const expected = registrations * SUBSCRIBERS;
      const a = Float64Array.from(fromAnswer).sort();
      const r = Float64Array.from(fromRequest).sort();
      const rows: Row[] = [
        {
          metric: 'events received / expected',
          ours: fromAnswer.length,
          baseline: expected,
          unit: 'events',
          ratio: fromAnswer.length / expected,
          target: '= 1',
          pass: fromAnswer.length === expected,
        },
        { metric: 'answer → receipt p50', ours: percentile(a, 50), unit: 'ms' },
        underRow('answer → receipt p99', percentile(a, 99), 'ms', 100),
        { metric: 'answer → receipt max', ours: a[a.length - 1] ?? NaN, unit: 'ms' },
        { metric: 'request sent → receipt p50 / p99', ours: percentile(r, 50), baseline: percentile(r, 99), against: 'p99', unit: 'ms' },
        { metric: 'gateway RSS per subscriber', ours: ((rssAfter - rssBefore) * 1024) / SUBSCRIBERS, unit: 'KB' },
        { metric: 'gateway RSS with the streams open', ours: rssAfter, baseline: rssBefore, against: 'before', unit: 'MB' },
      ];
      ctx.note(
        `${registrations} registrations 100 ms apart; times are wall clock (performance.timeOrigin + now) in two processes on one machine; ` +
          'the gateway publishes a change to streams before it answers the write, so "answer → receipt" can be negative',
      );
      return rows;
    } finally {
      if (subs.proc.connected) subs.proc.disconnect();
      await subs.stop(2000);
      await gw.stop();
    }
  },
};
