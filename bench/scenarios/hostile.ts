// Hostile clients (issue 27), measured from outside on one etcd member and one gateway:
// 1. 1,000 streams that never read (4 KB receive buffers, held by a Python child) on a
//    6 MB service: half resume `/services/big/events` from an old id, half name a
//    scope of their own; the gateway's RSS growth and unread bytes, refusals counted.
// 2. With more than 50,000 changes in etcd's history, one client resumes from
//    `Last-Event-ID: 1` 20 times: fence keys written, store replays, etcd CPU.
// 3. 100 concurrent `GET /services/big?minRevision=999999999`, a few rounds: store
//    requests per 3 s window.
// `/health/live` is polled every 50 ms through all three. --quick: 200 streams, 5 resumes, 2 rounds.
import { Etcd3 } from 'etcd3';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { encodeRecord, newRecord } from '../../src/registry/records.ts';
import { instanceId, instanceInput, keys, PREFIX } from '../lib/fixtures.ts';
import { pollHealth } from '../lib/health-poll.ts';
import { percentile, pool } from '../lib/load.ts';
import { cpuSeconds, rssMb, spawnCommand, startGateway, type Child, type Gateway } from '../lib/procs.ts';
import { sampleMax } from '../lib/sse-fleet.ts';
import { underRow, type Row, type Scenario } from '../lib/table.ts';

const BIG = 'big';
const BIG_INSTANCES = 400;
/** 30 entries of 500 characters: ~15 KB of metadata per instance (the limits are 64 × 512). */
const METADATA_ENTRIES = 30;
const CHURN = 'churn';
const CHURN_KEYS = 128;
/**
 * Changes written to etcd before the looping client: more than one replay keeps (50,000).
 * HOSTILE_CHURN_CHANGES=200000 makes the replay outlast its deadline (see BENCHMARKS.md, scenario 12).
 */
const CHURN_CHANGES = Number(process.env.HOSTILE_CHURN_CHANGES) || 55_000;
const FUTURE = 999_999_999;
const HEALTH_EVERY_MS = 50;
/** How long the non-reading streams are held before the gateway's memory is read again. */
const SETTLE_MS = 5000;
const STREAMS_SCRIPT = fileURLToPath(new URL('../lib/non-reading-streams.py', import.meta.url));

export const hostile: Scenario = {
  name: 'hostile',
  title: 'Hostile clients (non-reading streams on a 6 MB service, a resume loop from id 1, minRevision from the future)',
  async run(ctx) {
    const streams = ctx.quick ? 200 : 1000;
    const resumes = ctx.quick ? 5 : 20;
    const bursts = ctx.quick ? 2 : 3;
    const etcd = new Etcd3({ hosts: ctx.etcd });
    const etcdPid = pidServing(ctx.etcd);
    let gw: Gateway | undefined;
    let holder: Child | undefined;
    let health: ReturnType<typeof pollHealth> | undefined;
    /** /health/live latencies of each part, sampled only while it runs. */
    const parts: { name: string; latencies: number[]; failed: number }[] = [];
    const sampleHealthDuring = async (name: string) => {
      if (health) parts.push({ name, ...(await health.stop()) });
      health = undefined;
    };
    try {
      gw = await startGateway({ etcd: ctx.etcd });
      health = pollHealth(`${gw.url}/health/live`, HEALTH_EVERY_MS);
      const rows: Row[] = [];

      // 1. Non-reading streams.
      const oldId = (await etcd.get(keys.revisionProbe).exec()).header.revision;
      const bigRevision = await loadBig(etcd);
      await waitForRevision(gw.url, BIG, bigRevision);
      await sleep(1000);
      const rssBefore = rssMb(gw.pid);
      const rssPeak = sampleMax(() => rssMb(gw!.pid), 100);
      const requests = Array.from({ length: streams }, (_, i) =>
        i % 2
          ? { path: `/events?service=${BIG}&service=z${i}` }
          : { path: `/services/${BIG}/events`, headers: { 'Last-Event-ID': String(oldId) } },
      );
      const t0 = performance.now();
      holder = await spawnCommand(
        'non-reading-streams',
        'python3',
        [STREAMS_SCRIPT, JSON.stringify({ port: Number(new URL(gw.url).port), requests })],
        {},
        0,
        {
          stdio: ['pipe', 'pipe', 'inherit'],
        },
      );
      const opened = await firstLine(holder);
      ctx.log(`${streams} non-reading streams opened in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${JSON.stringify(opened)}`);
      await sleep(SETTLE_MS);
      const rssAfter = rssMb(gw.pid);
      const unread = (await scrape(gw.url)).value('discovery_sse_unread_bytes');
      const peak = await rssPeak.stop();
      holder.proc.stdin?.end();
      await holder.stop(5000);
      const ok = opened.status['200'] ?? 0;
      const refused = opened.codes['too-many-streams'] ?? 0;
      rows.push(
        underRow(`${streams} non-reading streams: gateway RSS growth (after − before)`, rssAfter - rssBefore, 'MB', 300),
        { metric: '  gateway RSS after / before', ours: rssAfter, baseline: rssBefore, against: 'before', unit: 'MB' },
        { metric: '  gateway RSS peak while they opened', ours: peak, unit: 'MB' },
        { metric: '  discovery_sse_unread_bytes while held', ours: unread / 2 ** 20, unit: 'MiB' },
        { metric: '  streams answered 200 (held, never read)', ours: ok, unit: '' },
        { metric: '  streams refused 503 too-many-streams', ours: refused, unit: '' },
        { metric: '  streams with another answer or no answer', ours: streams - ok - refused, unit: '' },
      );

      // 2. A client looping on Last-Event-ID: 1.
      // The churn is setup, not a hostile client: /health/live is not sampled while the gateway applies it.
      await sampleHealthDuring('streams');
      let t = performance.now();
      const churnRevision = await loadChurn(etcd);
      await waitForRevision(gw.url, CHURN, churnRevision);
      health = pollHealth(`${gw.url}/health/live`, HEALTH_EVERY_MS);
      ctx.log(`${CHURN_CHANGES} changes written and seen by the gateway in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      const fences = await countPuts(etcd, `${PREFIX}/_/fence/`);
      const before = await scrape(gw.url);
      const etcdCpu0 = cpuSeconds(etcdPid);
      const t2 = performance.now();
      const firsts: FirstEvent[] = [];
      for (let i = 0; i < resumes; i++) firsts.push(await firstEvent(`${gw.url}/services/${CHURN}/events`, '1'));
      const etcdCpu = cpuSeconds(etcdPid) - etcdCpu0;
      const loopS = (performance.now() - t2) / 1000;
      await sleep(500); // the fence's watch event reaches the counter
      const after = await scrape(gw.url);
      const fenceWrites = await fences.stop();
      const replays = after.store('watch') - before.store('watch');
      const restMax = Math.max(...firsts.slice(1).map((f) => f.ms));
      const kinds = countBy(firsts.map((f) => f.event));
      rows.push(
        atMostOne(`Last-Event-ID: 1 × ${resumes} (${CHURN_CHANGES.toLocaleString('en-US')} changes behind): fence writes`, fenceWrites),
        atMostOne('  store replays (watches opened)', replays),
        { metric: '  store ranges', ours: after.store('range') - before.store('range'), unit: '' },
        { metric: '  etcd CPU during the loop', ours: etcdCpu, baseline: loopS, against: 'loop wall time', unit: 's' },
        {
          metric: '  first event: first resume / slowest of the rest',
          ours: firsts[0]?.ms ?? NaN,
          baseline: restMax,
          against: 'rest, max',
          unit: 'ms',
        },
        {
          metric: `  first events: ${Object.entries(kinds)
            .map(([k, n]) => `${n} ${k}`)
            .join(', ')}`,
          ours: firsts.length,
          unit: '',
        },
      );

      await sampleHealthDuring('resume loop');
      health = pollHealth(`${gw.url}/health/live`, HEALTH_EVERY_MS);

      // 3. minRevision from the future.
      const windows: { ops: number; statuses: Record<string, number> }[] = [];
      for (let b = 0; b < bursts; b++) {
        const s0 = await scrape(gw.url);
        t = performance.now();
        const statuses = await Promise.all(
          Array.from({ length: 100 }, async () => {
            const res = await fetch(`${gw!.url}/services/${BIG}?minRevision=${FUTURE}`, { signal: AbortSignal.timeout(30_000) });
            await res.arrayBuffer();
            return String(res.status);
          }),
        );
        // Each burst spans at least the 3 s the reads wait for the watch: one window.
        await sleep(Math.max(0, 3000 - (performance.now() - t)));
        const s1 = await scrape(gw.url);
        windows.push({ ops: STORE_READS.reduce((n, op) => n + s1.store(op) - s0.store(op), 0), statuses: countBy(statuses) });
      }
      const worst = Math.max(...windows.map((w) => w.ops));
      rows.push(atMostOne(`100 × minRevision=${FUTURE} (${bursts} bursts): store requests per 3 s window, most`, worst), {
        metric: `  answers: ${Object.entries(
          countBy(windows.flatMap((w) => Object.entries(w.statuses).flatMap(([s, n]) => Array<string>(n).fill(s)))),
        )
          .map(([s, n]) => `${n} × ${s}`)
          .join(', ')}`,
        ours: windows.reduce((n, w) => n + Object.values(w.statuses).reduce((a, b) => a + b, 0), 0),
        unit: '',
      });

      await sampleHealthDuring('minRevision bursts');
      const polls = { latencies: parts.flatMap((p) => p.latencies), failed: parts.reduce((n, p) => n + p.failed, 0) };
      const h = Float64Array.from(polls.latencies).sort();
      rows.push(
        underRow(`/health/live p99 during 1–3 (${polls.latencies.length} polls, ${polls.failed} failed)`, percentile(h, 99), 'ms', 50),
        { metric: '  /health/live p50 / max', ours: percentile(h, 50), baseline: h[h.length - 1], against: 'max', unit: 'ms' },
        ...parts.map((p) => {
          const l = Float64Array.from(p.latencies).sort();
          return { metric: `  p99 / max during ${p.name}`, ours: percentile(l, 99), baseline: l[l.length - 1], against: 'max', unit: 'ms' };
        }),
      );
      if (polls.failed) rows[rows.length - 2]!.pass = false;
      ctx.note(
        `service "${BIG}": ${BIG_INSTANCES} instances with ${METADATA_ENTRIES} metadata entries of 500 characters (~${Math.round((BIG_INSTANCES * METADATA_ENTRIES * 520) / 1e6)} MB), written straight into etcd (8 per transaction) after the gateway started; ` +
          `the streams from one Python child (SO_RCVBUF 4096, ${streams / 2} resuming /services/${BIG}/events from revision ${oldId}, ${streams / 2} on /events?service=${BIG}&service=z{i}), held ${SETTLE_MS / 1000} s before RSS (/proc VmRSS) and the gauge are read; ` +
          `the churn: ${CHURN_CHANGES.toLocaleString('en-US')} puts on ${CHURN_KEYS} keys of service "${CHURN}", ${CHURN_KEYS} per transaction; fence writes counted by an etcd watch on ${PREFIX}/_/fence/, replays and ranges from discovery_store_request_duration_seconds_count; ` +
          `minRevision: store requests = get + range + watch + txn (the health probe's status calls are not counted); etcd CPU from /proc/<pid>/stat; /health/live every ${HEALTH_EVERY_MS} ms from the bench process during parts 1–3, not while the gateway applies the churn`,
      );
      ctx.note(
        `the resumes from id 1, in order (first event, ms to it): ${firsts.map((f) => `${f.event} ${Math.round(f.ms)}`).join('; ')}`,
      );
      if (ctx.quick) ctx.note(`--quick: ${streams} streams, ${resumes} resumes, ${bursts} bursts`);
      return rows;
    } finally {
      await health?.stop();
      if (holder) {
        holder.proc.stdin?.end();
        await holder.stop(2000);
      }
      await gw?.stop();
      etcd.close();
    }
  },
};

const STORE_READS = ['get', 'range', 'watch', 'txn'];

const atMostOne = (metric: string, ours: number): Row => ({ metric, ours, unit: '', target: '≤ 1', pass: ours <= 1 });

/** Write the big service straight into etcd; resolves the last revision. */
async function loadBig(etcd: Etcd3): Promise<number> {
  const metadata = Object.fromEntries(Array.from({ length: METADATA_ENTRIES }, (_, k) => [`m${k}`, 'x'.repeat(500)]));
  const at = new Date().toISOString();
  const puts = Array.from({ length: BIG_INSTANCES }, (_, i) => ({
    key: keys.instance(BIG, instanceId(i)),
    value: encodeRecord(newRecord(BIG, instanceId(i), { ...instanceInput(i, 0), metadata }, 0, at)),
  }));
  return putAll(etcd, puts, 8, 4);
}

/** CHURN_CHANGES puts over CHURN_KEYS keys (small records); resolves the last revision. */
async function loadChurn(etcd: Etcd3): Promise<number> {
  const at = new Date().toISOString();
  const puts = Array.from({ length: CHURN_CHANGES }, (_, i) => {
    const id = instanceId(i % CHURN_KEYS);
    return { key: keys.instance(CHURN, id), value: encodeRecord(newRecord(CHURN, id, instanceInput(i, 0), 0, at)) };
  });
  return putAll(etcd, puts, CHURN_KEYS, 8);
}

async function putAll(etcd: Etcd3, puts: { key: string; value: string }[], perTxn: number, parallel: number): Promise<number> {
  const txns: (typeof puts)[] = [];
  for (let i = 0; i < puts.length; i += perTxn) txns.push(puts.slice(i, i + perTxn));
  let last = 0;
  await pool(txns, parallel, async (ops) => {
    const res = await etcd.kv.txn({
      compare: [],
      success: ops.map((p) => ({ request_put: { key: Buffer.from(p.key), value: Buffer.from(p.value) } })),
      failure: [],
    });
    last = Math.max(last, Number(res.header.revision));
  });
  return last;
}

/** Until the gateway answers `service` at `revision` or later (its watch has caught up). */
async function waitForRevision(url: string, service: string, revision: number, withinMs = 120_000): Promise<void> {
  for (const t0 = Date.now(); Date.now() - t0 < withinMs; await sleep(250)) {
    try {
      const res = await fetch(`${url}/services/${service}`, { signal: AbortSignal.timeout(10_000) });
      await res.arrayBuffer();
      if (Number(res.headers.get('x-registry-revision')) >= revision) return;
    } catch {
      // busy: try again
    }
  }
  throw new Error(`the gateway did not reach revision ${revision} of ${service} within ${withinMs / 1000} s`);
}

interface Metrics {
  value(name: string): number;
  /** discovery_store_request_duration_seconds_count for one op (0 when never seen). */
  store(op: string): number;
}

async function scrape(url: string): Promise<Metrics> {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const find = (series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line ? Number(line.slice(series.length + 1)) : 0;
  };
  return { value: find, store: (op) => find(`discovery_store_request_duration_seconds_count{op="${op}"}`) };
}

interface FirstEvent {
  event: string;
  ms: number;
}

/** Open a stream with `Last-Event-ID`, read until its first event with data, close it. */
async function firstEvent(url: string, lastEventId: string): Promise<FirstEvent> {
  const t0 = performance.now();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 60_000);
  try {
    const res = await fetch(url, { headers: { 'Last-Event-ID': lastEventId }, signal: abort.signal });
    if (res.status !== 200 || !res.body) {
      const code = /"code"\s*:\s*"([^"]+)"/.exec(await res.text())?.[1] ?? '';
      return { event: `${res.status} ${code}`.trim(), ms: performance.now() - t0 };
    }
    const decoder = new TextDecoder();
    let text = '';
    for await (const chunk of res.body) {
      text += decoder.decode(chunk as Uint8Array, { stream: true });
      for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
        const block = text.slice(0, end);
        text = text.slice(end + 2);
        if (!/^data:/m.test(block)) continue;
        const kind = /^event: ?(.*)$/m.exec(block)?.[1] ?? 'message';
        const reset = kind === 'snapshot' && block.includes('"reset":true') ? ' (reset)' : '';
        return { event: `${kind}${reset}`, ms: performance.now() - t0 };
      }
    }
    return { event: 'closed', ms: performance.now() - t0 };
  } catch {
    return { event: 'timeout', ms: performance.now() - t0 };
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

/** Count puts under `prefix` from now on; stop() resolves the count. */
async function countPuts(etcd: Etcd3, prefix: string): Promise<{ stop(): Promise<number> }> {
  let n = 0;
  const watcher = await etcd.watch().prefix(prefix).create();
  watcher.on('put', () => n++);
  return {
    async stop() {
      await watcher.cancel();
      return n;
    },
  };
}

function countBy(items: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of items) out[x] = (out[x] ?? 0) + 1;
  return out;
}

/** The pid of the etcd process serving `clientUrl` (its command line names it). */
function pidServing(clientUrl: string): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args.includes('--listen-client-urls') && args.includes(clientUrl)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no etcd process serving ${clientUrl}`);
}

/** The holder's report: the first line it writes once every stream is open or refused. */
async function firstLine(child: Child): Promise<{ status: Record<string, number>; codes: Record<string, number>; failed: number }> {
  if (!child.proc.stdout) throw new Error('the stream holder has no stdout');
  const lines = createInterface({ input: child.proc.stdout });
  for await (const line of lines)
    return JSON.parse(line) as { status: Record<string, number>; codes: Record<string, number>; failed: number };
  throw new Error(`the stream holder exited (${child.proc.exitCode ?? child.proc.signalCode}) without a report`);
}
