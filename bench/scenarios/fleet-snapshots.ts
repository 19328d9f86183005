// 10. Big snapshots (issue 14): 100k instances (10,000 services of 10, written
// straight into etcd), then 50 `/events` subscribers open at once while
// `/health/live` is polled every 50 ms (its worst latency) and the gateway's
// RSS is sampled (its growth); meanwhile one more subscriber reads at 1 MB/s
// (its socket paused between reads) and must get the whole snapshot and then
// every live change written meanwhile (5/s), on one connection. --quick: 10k instances.
import { Etcd3 } from 'etcd3';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadDirect, serviceName } from '../lib/fixtures.ts';
import { pollHealth } from '../lib/health-poll.ts';
import { percentile } from '../lib/load.ts';
import { freePort, rssMb } from '../lib/procs.ts';
import { clock, pacedWrites, sampleMax, startFleetGateway, SubscriberFleet } from '../lib/sse-fleet.ts';
import { underRow, type Row, type Scenario } from '../lib/table.ts';

const PER_SERVICE = 10;
const SUBSCRIBERS = 50;
const SLOW_BYTES_PER_S = 1_000_000;
const WRITE_RATE = 5;
const HEALTH_EVERY_MS = 50;
const OPEN_WITHIN_MS = 300_000;

export const fleetSnapshots: Scenario = {
  name: 'fleet-snapshots',
  title: `10. Big snapshots (100k instances, ${SUBSCRIBERS} /events subscribers at once, one reading at 1 MB/s)`,
  async run(ctx) {
    const services = ctx.quick ? 1000 : 10_000;
    const instances = services * PER_SERVICE;
    const etcd = new Etcd3({ hosts: ctx.etcd });
    const t = performance.now();
    await loadDirect(etcd, 0, services, PER_SERVICE).finally(() => etcd.close());
    ctx.log(`${instances} instances in etcd in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const gw = await startFleetGateway(ctx.etcd, await freePort(), SUBSCRIBERS + 1);
    const fast = await SubscriberFleet.start(SUBSCRIBERS);
    const slow = await SubscriberFleet.start(1);
    let stopWrites = false;
    /** Background loops, stopped on every way out (a failed open included). */
    const loops: { stop(): Promise<unknown> }[] = [];
    try {
      await sleep(1000);
      const rssBefore = rssMb(gw.pid);
      const rss = sampleMax(() => rssMb(gw.pid), 100);
      const health = pollHealth(`${gw.url}/health/live`, HEALTH_EVERY_MS);
      loops.push(rss, health);
      const writing = pacedWrites(gw.url, {
        rate: WRITE_RATE,
        stop: () => stopWrites,
        pick: (n) => serviceName(n % services),
        idPrefix: 'live',
      });
      const t0 = clock();
      const slowOpened = slow.open(
        gw.port,
        ['/events'],
        { reconnect: false, throttleBytesPerS: SLOW_BYTES_PER_S, keepSnapshot: true },
        OPEN_WITHIN_MS,
      );
      slowOpened.catch(() => {}); // its failure is thrown by `await slowOpened` below, not as an unhandled rejection meanwhile
      const fastOpened = await fast.open(gw.port, Array<string>(SUBSCRIBERS).fill('/events'), { reconnect: false }, OPEN_WITHIN_MS);
      ctx.log(
        `${fastOpened.ok} of ${SUBSCRIBERS} subscribers have the snapshot, ${fastOpened.failed} cut, after ${((clock() - t0) / 1000).toFixed(1)} s`,
      );
      const slowResult = await slowOpened;
      ctx.log(`the 1 MB/s reader has the snapshot after ${((clock() - t0) / 1000).toFixed(1)} s (${slowResult.ok ? 'ok' : 'failed'})`);
      await sleep(2000);
      stopWrites = true;
      const { writes, failed } = await writing;
      const last = writes[writes.length - 1]?.revision ?? 0;
      await slow.until((s) => s.caughtUp >= 1, 30_000, { '/events': last });
      const polls = await health.stop();
      const rssMax = await rss.stop();
      const [reader] = await slow.collect();
      const fastStreams = await fast.collect();
      if (!reader) throw new Error('the slow reader reported nothing');

      // Changes after the snapshot's revision (all of them if no snapshot arrived).
      const from = reader.snapshots ? reader.snapshotId : 0;
      const expectedChanges = writes.filter((w) => w.revision > from).map((w) => w.revision);
      const inSnapshot = instances + writes.filter((w) => w.revision <= from).length;
      const exactChanges = reader.ids.length === expectedChanges.length && reader.ids.every((id, i) => id === expectedChanges[i]);
      const oneConnection = reader.connects === 1 && reader.open;
      const readS = (reader.snapshotAt - t0) / 1000;
      const h = Float64Array.from(polls.latencies).sort();
      const healthMax = h[h.length - 1] ?? NaN;
      const whole = fastStreams.filter((s) => s.snapshots > 0);
      const lastWholeS = whole.length ? Math.max(...whole.map((s) => (s.snapshotAt - t0) / 1000)) : NaN;
      const rows: Row[] = [
        {
          metric: `subscribers that got the whole snapshot`,
          ours: whole.length,
          baseline: SUBSCRIBERS,
          against: 'opened',
          unit: '',
          ratio: whole.length / SUBSCRIBERS,
          target: '= 1',
          pass: whole.length === SUBSCRIBERS,
        },
        { metric: '  the last of them complete after', ours: lastWholeS, unit: 's' },
        { metric: '  streams cut before their snapshot was complete', ours: SUBSCRIBERS - whole.length, unit: '' },
        {
          metric: `/health/live max latency (${polls.latencies.length} polls, ${polls.failed} failed)`,
          ours: healthMax,
          unit: 'ms',
          target: '≤ 250 ms',
          pass: healthMax <= 250 && polls.failed === 0,
        },
        { metric: '  /health/live p50 / p99', ours: percentile(h, 50), baseline: percentile(h, 99), against: 'p99', unit: 'ms' },
        underRow('gateway RSS growth (peak − before)', rssMax - rssBefore, 'MB', 400),
        { metric: '  gateway RSS peak', ours: rssMax, baseline: rssBefore, against: 'before', unit: 'MB' },
        {
          metric: '1 MB/s reader: instances in its snapshot',
          ours: reader.snapshotInstances,
          baseline: inSnapshot,
          against: 'expected',
          unit: '',
          ratio: reader.snapshotInstances / inSnapshot,
          target: '= 1',
          pass: reader.snapshotInstances === inSnapshot,
        },
        {
          metric: '1 MB/s reader: live changes after it, exactly once, in order',
          ours: reader.ids.length,
          baseline: expectedChanges.length,
          against: 'written',
          unit: '',
          ratio: expectedChanges.length ? reader.ids.length / expectedChanges.length : NaN,
          target: '= 1',
          pass: exactChanges && failed === 0 && expectedChanges.length > 0,
        },
        {
          metric: '1 MB/s reader: on one connection (connections made)',
          ours: reader.connects,
          unit: '',
          target: '= 1, open',
          pass: oneConnection,
        },
        { metric: '  bytes read (all of the stream)', ours: reader.bytesRead / 1e6, unit: 'MB' },
        {
          metric: '  snapshot size (any stream that got it whole)',
          ours: Math.max(reader.snapshotBytes, ...whole.map((s) => s.snapshotBytes)) / 1e6,
          unit: 'MB',
        },
        { metric: '  snapshot read in', ours: readS, unit: 's' },
        { metric: '  read rate', ours: reader.snapshotBytes / 1e6 / readS, unit: 'MB/s' },
      ];
      ctx.note(
        `${instances.toLocaleString('en-US')} instances (${services.toLocaleString('en-US')} services × ${PER_SERVICE}, ttl 0) written straight into etcd before the gateway starts; ` +
          `the ${SUBSCRIBERS} subscribers in one child process, the 1 MB/s reader in another (socket paused until its byte budget allows the next read); ` +
          `GET /health/live every ${HEALTH_EVERY_MS} ms from the bench process (fetch, keep-alive) and RSS every 100 ms, from just before the streams open until the slow reader has the last change; ` +
          `live changes: a new ttl-0 instance ${WRITE_RATE}/s through the gateway, from the opening until 2 s after the slow reader's snapshot (or its stream's end): ${writes.length} answered 201, ${failed} failed or timed out (10 s)`,
      );
      if (ctx.quick) ctx.note('--quick: 10k instances (1,000 services × 10)');
      return rows;
    } finally {
      stopWrites = true;
      await Promise.all(loops.map((l) => l.stop()));
      await Promise.all([fast.stop(), slow.stop()]);
      await gw.stop();
    }
  },
};
