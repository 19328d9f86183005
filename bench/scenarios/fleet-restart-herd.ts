// 9. Restart herd (issue 14): 10,000 streams on gateway A; A is SIGKILLed and
// started again on the same port while 50 changes/s go on through a second
// replica B (one etcd). The streams come back as EventSource does (after their
// `retry:`, with Last-Event-ID). Checked: every stream gets every change of
// its service exactly once, in order (against the revisions the writes were
// answered with); all resumed within 15 s of A being ready again; what the
// resumes cost etcd, from etcd's side: watchers (its /metrics gauge, sampled)
// and revisions beyond the clients' own writes. --quick: a tenth of the fleet.
import { Etcd3 } from 'etcd3';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadDirect, serviceName } from '../lib/fixtures.ts';
import { percentile } from '../lib/load.ts';
import { freePort } from '../lib/procs.ts';
import {
  clock,
  etcdMetric,
  etcdRevision,
  pacedWrites,
  sampleMax,
  startFleetGateway,
  SubscriberFleet,
  type CollectedStream,
  type FleetGateway,
  type Write,
} from '../lib/sse-fleet.ts';
import { underRow, type Row, type Scenario } from '../lib/table.ts';

const STREAMS_PER_SERVICE = 10;
const WRITE_RATE = 50;
const RESUME_WITHIN_S = 15;
const WATCHERS = 'etcd_debugging_mvcc_watcher_total';

export const fleetRestartHerd: Scenario = {
  name: 'fleet-restart-herd',
  title: '9. Restart herd (10,000 streams, gateway SIGKILLed and restarted, 50 changes/s through a second replica)',
  async run(ctx) {
    const services = ctx.quick ? 100 : 1000;
    const subscribers = services * STREAMS_PER_SERVICE;
    const etcd = new Etcd3({ hosts: ctx.etcd });
    await loadDirect(etcd, 0, services, 1).finally(() => etcd.close());
    const portA = await freePort();
    const gateways: FleetGateway[] = [
      await startFleetGateway(ctx.etcd, portA, subscribers),
      await startFleetGateway(ctx.etcd, await freePort(), subscribers),
    ];
    const fleet = await SubscriberFleet.start(subscribers);
    let stopWrites = false;
    /** Background loops, stopped on every way out. */
    const loops: { stop(): Promise<unknown> }[] = [];
    try {
      const paths: string[] = [];
      for (let s = 0; s < services; s++) for (let k = 0; k < STREAMS_PER_SERVICE; k++) paths.push(`/services/${serviceName(s)}/events`);
      const opened = await fleet.open(portA, paths, { reconnect: true }, 180_000);
      ctx.log(`${opened.ok} streams open on gateway A`);
      const watchersBefore = await etcdMetric(ctx.etcd, WATCHERS);
      const revStart = await etcdRevision(ctx.etcd);

      // Writes through B from before the kill until a few seconds after every stream resumed.
      const writing = pacedWrites(gateways[1]!.url, {
        rate: WRITE_RATE,
        stop: () => stopWrites,
        pick: (n) => serviceName(n % services),
        idPrefix: 'herd',
      });
      await sleep(3000);
      const revBeforeKill = await etcdRevision(ctx.etcd);

      const watchers = sampleMax(() => etcdMetric(ctx.etcd, WATCHERS), 100);
      loops.push(watchers);
      const killedAt = clock();
      const a = gateways[0]!;
      a.proc.kill('SIGKILL');
      await once(a.proc, 'exit');
      gateways[0] = await startFleetGateway(ctx.etcd, portA, subscribers);
      const readyAt = gateways[0].readyAt;
      ctx.log(`gateway A killed and ready again in ${((readyAt - killedAt) / 1000).toFixed(1)} s`);
      const resumed = await fleet.until((s) => s.resumed >= subscribers, (RESUME_WITHIN_S + 15) * 1000);
      ctx.log(`${resumed.resumed} of ${subscribers} streams resumed ${((clock() - readyAt) / 1000).toFixed(1)} s after ready`);
      await sleep(3000);
      const peakWatchers = await watchers.stop();
      const watchersAfter = await etcdMetric(ctx.etcd, WATCHERS);
      stopWrites = true;
      const { writes, failed } = await writing;
      const revEnd = await etcdRevision(ctx.etcd);

      const perService = new Map<string, Write[]>();
      for (const w of writes)
        perService
          .set(w.service, perService.get(w.service) ?? [])
          .get(w.service)!
          .push(w);
      const want: Record<string, number> = {};
      for (const [service, ws] of perService) want[`/services/${service}/events`] = ws[ws.length - 1]!.revision;
      const expectingAny = paths.filter((p) => want[p] !== undefined).length;
      const caught = await fleet.until((s) => s.caughtUp >= expectingAny, 30_000, want);
      ctx.log(`${writes.length} writes (${failed} failed); ${caught.caughtUp} of ${expectingAny} streams have their service's last change`);
      const streams = await fleet.collect();

      const check = checkDelivery(streams, perService);
      const resumeS = streams.filter((s) => s.open && !Number.isNaN(s.resumedAt)).map((s) => (s.resumedAt - readyAt) / 1000);
      const r = Float64Array.from(resumeS).sort();
      const writesBeforeKill = writes.filter((w) => w.revision <= revBeforeKill).length;
      const extraRevisions = revEnd - revStart - writes.length;
      const rows: Row[] = [
        {
          metric: 'streams that got every change exactly once, in order',
          ours: check.exact,
          baseline: subscribers,
          against: 'streams',
          unit: '',
          ratio: check.exact / subscribers,
          target: '= 1',
          pass: check.exact === subscribers && failed === 0,
        },
        { metric: '  changes missing', ours: check.missing, unit: '' },
        { metric: '  changes received twice', ours: check.duplicates, unit: '' },
        { metric: '  changes out of order', ours: check.outOfOrder, unit: '' },
        { metric: '  reset snapshots on resume', ours: check.resets, unit: '' },
        {
          metric: 'streams resumed (open again at the end)',
          ours: resumeS.length,
          baseline: subscribers,
          against: 'streams',
          unit: '',
          ratio: resumeS.length / subscribers,
          target: '= 1',
          pass: resumeS.length === subscribers,
        },
        { metric: 'resumed after A ready: p50', ours: percentile(r, 50), unit: 's' },
        { metric: 'resumed after A ready: p99', ours: percentile(r, 99), unit: 's' },
        {
          metric: 'resumed after A ready: last',
          ours: r[r.length - 1] ?? NaN,
          unit: 's',
          target: `≤ ${RESUME_WITHIN_S} s`,
          pass: resumeS.length === subscribers && (r[r.length - 1] ?? Infinity) <= RESUME_WITHIN_S,
        },
        {
          metric: 'etcd watchers added by the resumes (peak − before)',
          ours: peakWatchers - watchersBefore,
          baseline: watchersBefore,
          against: 'before',
          unit: '',
          target: '≤ 10',
          pass: peakWatchers - watchersBefore <= 10,
        },
        { metric: '  etcd watchers after − before', ours: watchersAfter - watchersBefore, unit: '' },
        {
          metric: 'etcd revisions beyond the clients’ writes',
          ours: extraRevisions,
          baseline: writes.length,
          against: 'writes',
          unit: '',
          target: '≤ 10',
          pass: extraRevisions <= 10 && failed === 0,
        },
        { metric: '  of them before the kill (control)', ours: revBeforeKill - revStart - writesBeforeKill, unit: '' },
        { metric: 'non-200 answers to reconnects', ours: check.non200, unit: '' },
        { metric: 'streams cut again after a 200 resume', ours: check.cutAgain, unit: '' },
        underRow('gateway A: SIGKILL → ready again', (readyAt - killedAt) / 1000, 's'),
        { metric: 'writes through B answered / failed', ours: writes.length, baseline: failed, against: 'failed', unit: '' },
      ];
      ctx.note(
        `${subscribers.toLocaleString('en-US')} streams on /services/{name}/events (10 per service) held by child processes that reconnect as EventSource does ` +
          `(after the stream's retry:, with Last-Event-ID; a refused connect or a non-200 retries after the same delay); ` +
          `writes: a new ttl-0 instance per write, ${WRITE_RATE}/s through gateway B, round robin over the services, from 3 s before the kill to 3 s after the last resume; ` +
          `watchers: ${WATCHERS} from etcd's /metrics sampled every 100 ms from the kill on; revisions: etcd's revision delta minus the writes answered`,
      );
      if (ctx.quick) ctx.note('--quick: a tenth of the fleet (100 services, 1,000 streams)');
      return rows;
    } finally {
      stopWrites = true;
      await Promise.all(loops.map((l) => l.stop()));
      await fleet.stop();
      await Promise.all(gateways.map((gw) => gw.stop()));
    }
  },
};

/** Each stream against the revisions written to its service: exactly once and in order, or what went wrong. */
function checkDelivery(streams: CollectedStream[], perService: Map<string, Write[]>) {
  let exact = 0;
  let missing = 0;
  let duplicates = 0;
  let outOfOrder = 0;
  let resets = 0;
  let non200 = 0;
  let cutAgain = 0;
  for (const s of streams) {
    const service = /^\/services\/([^/]+)\/events$/.exec(s.path)?.[1] ?? '';
    const expected = (perService.get(service) ?? []).map((w) => w.revision);
    const got = new Set(s.ids);
    missing += expected.filter((rev) => !got.has(rev)).length;
    duplicates += s.ids.length - got.size;
    outOfOrder += s.ids.filter((id, i) => i > 0 && id < s.ids[i - 1]!).length;
    resets += s.snapshotsOnResume;
    non200 += s.non200;
    // The first stream and one resume: any further 200 means a resumed stream was cut.
    if (s.ok200 > 2) cutAgain++;
    if (s.snapshotsOnResume === 0 && s.ids.length === expected.length && s.ids.every((id, i) => id === expected[i])) exact++;
  }
  return { exact, missing, duplicates, outOfOrder, resets, non200, cutAgain };
}
