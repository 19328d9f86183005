// 8. Fleet subscribers (issue 14): 10,000 change streams on one gateway
// (1,000 services, 10 per-service streams each, held by child processes on raw
// sockets), one change per service; every delivery checked, answer → receipt
// timed, and the gateway's memory per stream. --quick: a tenth of the fleet.
import { Etcd3 } from 'etcd3';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadDirect, serviceName } from '../lib/fixtures.ts';
import { percentile } from '../lib/load.ts';
import { freePort, rssMb } from '../lib/procs.ts';
import { clock, fdLimit, pacedWrites, startFleetGateway, SubscriberFleet } from '../lib/sse-fleet.ts';
import { underRow, type Row, type Scenario } from '../lib/table.ts';

const STREAMS_PER_SERVICE = 10;
/** Changes per second: one event at a time per service, not a burst that would time queueing. */
const WRITE_RATE = 50;

export const fleetSubscribers: Scenario = {
  name: 'fleet-subscribers',
  title: '8. Fleet subscribers (10,000 streams: 1,000 services × 10, one change per service)',
  async run(ctx) {
    const services = ctx.quick ? 100 : 1000;
    const subscribers = services * STREAMS_PER_SERVICE;
    const etcd = new Etcd3({ hosts: ctx.etcd });
    await loadDirect(etcd, 0, services, 1).finally(() => etcd.close());
    const gw = await startFleetGateway(ctx.etcd, await freePort(), subscribers);
    const fleet = await SubscriberFleet.start(subscribers);
    try {
      await sleep(1000);
      const rssBefore = rssMb(gw.pid);
      const paths: string[] = [];
      for (let s = 0; s < services; s++) for (let k = 0; k < STREAMS_PER_SERVICE; k++) paths.push(`/services/${serviceName(s)}/events`);
      const t0 = clock();
      const opened = await fleet.open(gw.port, paths, { reconnect: false }, 180_000);
      const openS = (clock() - t0) / 1000;
      if (opened.failed) throw new Error(`${opened.failed} of ${subscribers} streams did not open (fd limit ${fdLimit(gw.pid)})`);
      await sleep(2000);
      const rssAfter = rssMb(gw.pid);
      ctx.log(`${subscribers} streams open in ${openS.toFixed(1)} s; gateway RSS ${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MB`);

      const { writes, failed } = await pacedWrites(gw.url, {
        rate: WRITE_RATE,
        count: services,
        pick: (n) => serviceName(n),
        idPrefix: 'change',
      });
      if (failed) ctx.note(`${failed} of ${services} writes failed`);
      const want: Record<string, number> = {};
      for (const w of writes) want[`/services/${w.service}/events`] = w.revision;
      const expected = writes.length * STREAMS_PER_SERVICE;
      const status = await fleet.until((s) => s.caughtUp >= expected, 30_000, want);
      ctx.log(`${writes.length} changes written; ${status.caughtUp} of ${expected} streams have theirs`);
      const streams = await fleet.collect();

      const byRevision = new Map(writes.map((w) => [w.revision, w]));
      const fromAnswer: number[] = [];
      let delivered = 0;
      let wrong = 0;
      for (const s of streams) {
        const w = byRevision.get(want[s.path] ?? NaN);
        const at = w ? s.ids.indexOf(w.revision) : -1;
        if (at >= 0) {
          delivered++;
          fromAnswer.push(s.times[at]! - w!.answered);
        }
        wrong += s.ids.filter((id) => id !== w?.revision).length;
      }
      const a = Float64Array.from(fromAnswer).sort();
      const rows: Row[] = [
        {
          metric: 'deliveries received / expected',
          ours: delivered,
          baseline: subscribers,
          against: 'streams',
          unit: 'events',
          ratio: delivered / subscribers,
          target: '= 1',
          pass: delivered === subscribers && writes.length === services,
        },
        { metric: 'events of another service or twice', ours: wrong, unit: 'events', target: '= 0', pass: wrong === 0 },
        { metric: 'answer → receipt p50', ours: percentile(a, 50), unit: 'ms' },
        underRow('answer → receipt p99', percentile(a, 99), 'ms', 250),
        { metric: 'answer → receipt max', ours: a[a.length - 1] ?? NaN, unit: 'ms' },
        underRow('gateway RSS per subscriber', ((rssAfter - rssBefore) * 1024) / subscribers, 'KB', 20),
        { metric: 'gateway RSS with the streams open', ours: rssAfter, baseline: rssBefore, against: 'before', unit: 'MB' },
        { metric: 'time to open every stream (snapshot received)', ours: openS, unit: 's' },
      ];
      ctx.note(
        `${subscribers.toLocaleString('en-US')} streams on /services/{name}/events in ${Math.ceil(subscribers / 2000)} child processes (raw HTTP/1.1 sockets, ≤ 200 connecting at once per child); ` +
          `${services} changes (a new ttl-0 instance per service) through the same gateway at ${WRITE_RATE}/s; times are timeOrigin + now in both processes (the gateway publishes a change before it answers the write, so answer → receipt can be negative); ` +
          `RSS per subscriber = RSS delta (2 s after the last stream opened) ÷ streams; the gateway's descriptor limit: ${fdLimit(gw.pid)}`,
      );
      if (ctx.quick) ctx.note('--quick: a tenth of the fleet (100 services, 1,000 streams)');
      return rows;
    } finally {
      await fleet.stop();
      await gw.stop();
    }
  },
};
