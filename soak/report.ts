// The run's report: report.json (numbers), report.md (for people) and
// timeline.svg (faults as bands; write latency p99, delivery lag p99,
// heartbeat failures, RSS and V8 heap per replica over time).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROPERTIES, type CheckResult, type Property } from './checker.ts';
import { lagBreakdown, type LagBreakdown } from './lag.ts';
import { EVENT_RING, type FaultKind, type RunLog } from './observations.ts';
import { percentile, percentiles, type Percentiles } from './percentiles.ts';
import { LEAK_MB_PER_HOUR, perWindow, trendPerHour, verdict, type Point, type Trend, type Verdict } from './trend.ts';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGb: number;
  node: string;
  etcd: string;
  load: string;
}

interface Series {
  at: number[];
  writeP99: (number | null)[];
  lagP99: (number | null)[];
  liveLagP99: (number | null)[];
  loopDelayP99: (number | null)[];
  heartbeatFailures: number[];
  rss: (number | null)[][];
  heapUsedFloor: (number | null)[][];
}

export interface Summary {
  seed: number;
  minutes: number;
  actualMinutes: number;
  replicas: number;
  startedAt: string;
  machine: Machine;
  workload: Record<string, number>;
  faults: { injected: number; skipped: number; byKind: Record<string, number>; list: RunLog['faults'] };
  properties: { property: Property; meaning: string; violations: number }[];
  violations: CheckResult['violations'];
  latencyMs: { write: Percentiles; deliveryLag: Percentiles };
  /** Delivery lag by stage, over the run and between faults (absent in reports of older runs). */
  lag?: LagBreakdown;
  heartbeats: { ok: number; notFound: number; failed: number };
  /** Failed heartbeats by answer (0: none came) and how many waited longer than the driver's 5 s socket timeout (queued in its pool). */
  failedHeartbeats: { byStatus: Record<string, number>; waitedOver5s: number } | undefined;
  rss: MemoryTrend[];
  expiries: CheckResult['expiries'];
  stats: CheckResult['stats'];
  gatewayNodeOptions: string | undefined;
}

/** Least-squares slope of `points` in units per hour. */
function slopePerHour(points: Point[]): number | null {
  const n = points.length;
  if (n < 3) return null;
  const mx = points.reduce((a, p) => a + p.at, 0) / n;
  const my = points.reduce((a, p) => a + p.v, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.at - mx) * (p.v - my);
    den += (p.at - mx) ** 2;
  }
  return den ? (num / den) * 3_600_000 : null;
}

/** When the changes a process started at `startAt` has seen fill its event ring (Infinity if they never do). */
function ringFullAt(log: RunLog, startAt: number): number {
  let n = 0;
  for (const e of log.history.events) {
    if (e.at < startAt || e.key.startsWith('_/')) continue;
    if (++n >= EVENT_RING) return e.at;
  }
  return Infinity;
}

/**
 * The samples of a replica's longest-lived process once it is warm: `warmupMs`
 * after its start and its event ring full (a cache that grows until then by
 * design). Restarts begin a new warm-up.
 */
function longestLived(log: RunLog, samples: RunLog['rss'], warmupMs: number): RunLog['rss'] {
  const byPid = new Map<number, RunLog['rss']>();
  for (const s of samples) (byPid.get(s.pid) ?? byPid.set(s.pid, []).get(s.pid)!).push(s);
  let best: RunLog['rss'] = [];
  for (const list of byPid.values()) {
    const warmFrom = Math.max(list[0]!.at + warmupMs, ringFullAt(log, list[0]!.at));
    const kept = list.filter((s) => s.at >= warmFrom);
    if (kept.length > best.length) best = kept;
  }
  return best;
}

const FLOOR_WINDOW_MS = 120_000;
/** RSS is averaged over windows this long before its trend's interval is fitted (soak/trend.ts). */
const RSS_WINDOW_MS = 300_000;

export interface MemoryTrend {
  replica: number;
  fittedMinutes: number;
  /** RSS, least squares over every sample. */
  slopeMbPerHour: number | null;
  lastMb: number | null;
  /** V8 heap reserved, least squares over every sample. */
  heapTotalSlope: number | null;
  /** V8 heap used and external memory: the slope of their 2-minute floors. */
  heapUsedFloorSlope: number | null;
  /** RSS (5-minute means) and heap used (2-minute floors) with 95% intervals, and what they say: flat, leak or undecided. */
  rssTrend: Trend | null;
  heapUsedTrend: Trend | null;
  verdict: Verdict;
  externalFloorSlope: number | null;
  /** The heap right after each full collection (V8's --trace-gc), when the gateways logged them. */
  liveAfterGc: {
    slope: number | null;
    count: number;
    firstMb: number | null;
    lastMb: number | null;
    /** live = a + perInstance × instances + residual × time: the cache's cost per instance (KB) and the trend left once the registry's size is accounted for (MB/hour). */
    perInstanceKb: number | null;
    residualSlope: number | null;
  };
  last: { heapUsedMb: number | null; heapTotalMb: number | null; externalMb: number | null };
}

/** How a replica's memory moved after warm-up (its longest-lived process), in MB per hour; "last" values are that process's. */
function memoryTrend(log: RunLog, replica: number, warmupMs: number): MemoryTrend {
  const kept = longestLived(
    log,
    log.rss.filter((s) => s.replica === replica),
    warmupMs,
  );
  const points = (field: 'mb' | 'heapUsedMb' | 'heapTotalMb' | 'externalMb'): Point[] =>
    kept.flatMap((s) => (s[field] === undefined ? [] : [{ at: s.at, v: s[field] }]));
  const lastOf = (field: 'heapUsedMb' | 'heapTotalMb' | 'externalMb') => points(field).at(-1)?.v ?? null;
  const rssTrend = trendPerHour(perWindow(points('mb'), RSS_WINDOW_MS, 'mean'));
  const heapUsedTrend = trendPerHour(perWindow(points('heapUsedMb'), FLOOR_WINDOW_MS, 'floor'));
  return {
    replica,
    fittedMinutes: kept.length ? (kept.at(-1)!.at - kept[0]!.at) / 60_000 : 0,
    slopeMbPerHour: slopePerHour(points('mb')),
    lastMb: kept.at(-1)?.mb ?? null,
    heapTotalSlope: slopePerHour(points('heapTotalMb')),
    heapUsedFloorSlope: slopePerHour(perWindow(points('heapUsedMb'), FLOOR_WINDOW_MS, 'floor')),
    externalFloorSlope: slopePerHour(perWindow(points('externalMb'), FLOOR_WINDOW_MS, 'floor')),
    rssTrend,
    heapUsedTrend,
    verdict: worse(verdict(rssTrend), verdict(heapUsedTrend)),
    liveAfterGc: liveAfterGc(log, kept),
    last: { heapUsedMb: lastOf('heapUsedMb'), heapTotalMb: lastOf('heapTotalMb'), externalMb: lastOf('externalMb') },
  };
}

/** A leak in either series is a leak; flat needs both. */
function worse(a: Verdict, b: Verdict): Verdict {
  if (a === 'leak' || b === 'leak') return 'leak';
  return a === 'flat' && b === 'flat' ? 'flat' : 'undecided';
}

const interval = (t: Trend | null) => (t ? `${fmt(t.slope, 1)} [${fmt(t.low, 1)}, ${fmt(t.high, 1)}]` : 'n/a');

function countBy(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

/** The live heap after each full collection of the same process, over the same warm stretch. */
function liveAfterGc(log: RunLog, kept: RunLog['rss']): MemoryTrend['liveAfterGc'] {
  const first = kept[0];
  const gcs = first ? (log.majorGcs ?? []).filter((g) => g.pid === first.pid && g.at >= first.at) : [];
  const sizes = instancesAt(
    log,
    gcs.map((g) => g.at),
  );
  const fit = fitTwo(gcs.map((g, i) => [sizes[i]!, g.at / 3_600_000, g.liveMb]));
  return {
    slope: slopePerHour(gcs.map((g) => ({ at: g.at, v: g.liveMb }))),
    count: gcs.length,
    firstMb: gcs[0]?.liveMb ?? null,
    lastMb: gcs.at(-1)?.liveMb ?? null,
    perInstanceKb: fit && fit[0] * 1024,
    residualSlope: fit && fit[1],
  };
}

/** How many instances etcd held at each of `times` (ascending), from the history. */
function instancesAt(log: RunLog, times: number[]): number[] {
  const live = new Set<string>();
  const out: number[] = [];
  let i = 0;
  for (const at of times) {
    for (; i < log.history.events.length && log.history.events[i]!.at <= at; i++) {
      const e = log.history.events[i]!;
      if (e.key.startsWith('_/')) continue;
      if (e.type === 'put') live.add(e.key);
      else live.delete(e.key);
    }
    out.push(live.size);
  }
  return out;
}

/** Least squares of z = a + b·x + c·y over [x, y, z] rows: [b, c], or null when the rows cannot tell them apart. */
function fitTwo(rows: [number, number, number][]): [number, number] | null {
  if (rows.length < 5) return null;
  const mean = (k: 0 | 1 | 2) => rows.reduce((a, r) => a + r[k], 0) / rows.length;
  const [mx, my, mz] = [mean(0), mean(1), mean(2)];
  let sxx = 0;
  let syy = 0;
  let sxy = 0;
  let sxz = 0;
  let syz = 0;
  for (const [x, y, z] of rows) {
    sxx += (x - mx) ** 2;
    syy += (y - my) ** 2;
    sxy += (x - mx) * (y - my);
    sxz += (x - mx) * (z - mz);
    syz += (y - my) * (z - mz);
  }
  const det = sxx * syy - sxy * sxy;
  if (det <= 1e-9 * sxx * syy) return null; // x and y move together: no telling them apart
  return [(sxz * syy - syz * sxy) / det, (syz * sxx - sxz * sxy) / det];
}

export function summarize(
  log: RunLog,
  result: CheckResult,
  machine: Machine,
  workload: Record<string, number>,
  rssWarmupMs: number,
): Summary {
  const injected = log.faults.filter((f) => !f.detail?.startsWith('skipped') && !f.detail?.startsWith('failed'));
  const byKind: Record<string, number> = {};
  for (const f of injected) byKind[f.kind] = (byKind[f.kind] ?? 0) + 1;
  const hb = log.heartbeats.reduce((a, b) => ({ ok: a.ok + b.ok, notFound: a.notFound + b.notFound, failed: a.failed + b.failed }), {
    ok: 0,
    notFound: 0,
    failed: 0,
  });
  return {
    seed: log.seed,
    minutes: log.minutes,
    actualMinutes: log.durationMs / 60_000,
    replicas: log.replicas,
    startedAt: log.startedAt,
    machine,
    workload,
    faults: { injected: injected.length, skipped: log.faults.length - injected.length, byKind, list: log.faults },
    properties: (Object.keys(PROPERTIES) as Property[]).map((p) => ({ property: p, meaning: PROPERTIES[p], violations: result.counts[p] })),
    violations: result.violations.slice(0, 200),
    latencyMs: {
      write: percentiles(log.writes.map((w) => w.answeredAt - w.sentAt)),
      deliveryLag: percentiles(result.lags.map((l) => l.ms)),
    },
    lag: lagBreakdown(log, result),
    heartbeats: hb,
    failedHeartbeats: log.failedHeartbeats && {
      byStatus: countBy(log.failedHeartbeats.map((f) => String(f.status))),
      waitedOver5s: log.failedHeartbeats.filter((f) => f.answeredAt - f.sentAt > 5000).length,
    },
    rss: Array.from({ length: log.replicas }, (_, replica) => memoryTrend(log, replica, rssWarmupMs)),
    expiries: result.expiries,
    stats: result.stats,
    gatewayNodeOptions: log.gatewayNodeOptions,
  };
}

function series(log: RunLog, result: CheckResult, bucketMs: number): Series {
  const n = Math.max(1, Math.ceil(log.durationMs / bucketMs));
  const idx = (at: number) => Math.min(n - 1, Math.max(0, Math.floor(at / bucketMs)));
  const writes: number[][] = Array.from({ length: n }, () => []);
  for (const w of log.writes) writes[idx(w.sentAt)]!.push(w.answeredAt - w.sentAt);
  const lags: number[][] = Array.from({ length: n }, () => []);
  const live: number[][] = Array.from({ length: n }, () => []);
  for (const l of result.lags) {
    lags[idx(l.at)]!.push(l.ms);
    if (!l.resumed) live[idx(l.at)]!.push(l.ms);
  }
  const loop: number[][] = Array.from({ length: n }, () => []);
  for (const d of log.loopDelay ?? []) loop[idx(d.at)]!.push(d.p99);
  const hb = new Array<number>(n).fill(0);
  for (const b of log.heartbeats) hb[idx(b.at)]! += b.failed + b.notFound;
  const rss = Array.from({ length: log.replicas }, () => Array.from({ length: n }, () => [] as number[]));
  const heap = Array.from({ length: log.replicas }, () => Array.from({ length: n }, () => [] as number[]));
  for (const s of log.rss) {
    rss[s.replica]?.[idx(s.at)]?.push(s.mb);
    if (s.heapUsedMb !== undefined) heap[s.replica]?.[idx(s.at)]?.push(s.heapUsedMb);
  }
  const p99 = (v: number[]) =>
    percentile(
      v.sort((a, b) => a - b),
      99,
    );
  return {
    at: Array.from({ length: n }, (_, i) => i * bucketMs),
    writeP99: writes.map(p99),
    lagP99: lags.map(p99),
    liveLagP99: live.map(p99),
    loopDelayP99: loop.map((v) => (v.length ? Math.max(...v) : null)),
    heartbeatFailures: hb,
    rss: rss.map((r) => r.map((v) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : null))),
    heapUsedFloor: heap.map((r) => r.map((v) => (v.length ? Math.min(...v) : null))),
  };
}

const FAULT_COLORS: Record<FaultKind, string> = {
  'leader-kill': '#d62728',
  'member-freeze': '#1f77b4',
  'gateway-kill': '#ff7f0e',
  'gateway-term': '#bcbd22',
  compaction: '#9467bd',
  burst: '#2ca02c',
  'client-partition': '#17becf',
  'link-delay': '#8c564b',
  'packet-loss': '#e377c2',
  'minority-leader': '#7f7f7f',
  'asymmetric-cut': '#aec7e8',
  'long-partition': '#393b79',
  'store-full': '#ffbb78',
  'store-restore': '#c5b0d5',
  'member-replace': '#98df8a',
};
const LINE_COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd'];

/** The timeline picture: one panel per measure, faults drawn as bands across all of them. */
export function timelineSvg(log: RunLog, s: Series, bucketMs: number): string {
  const W = 1100;
  const left = 70;
  const right = 20;
  const panelH = 130;
  const gap = 40;
  const top = 60;
  const panels: { title: string; unit: string; lines: { name: string; values: (number | null)[] }[] }[] = [
    { title: 'write latency p99', unit: 'ms', lines: [{ name: 'p99', values: s.writeP99 }] },
    {
      title: 'delivery lag p99 (history → subscriber)',
      unit: 'ms',
      lines: [
        { name: 'lag p99', values: s.lagP99 },
        { name: 'live only', values: s.liveLagP99 },
        { name: 'driver loop delay', values: s.loopDelayP99 },
      ],
    },
    { title: `heartbeat failures + 404s per ${bucketMs / 1000} s`, unit: '', lines: [{ name: 'failures', values: s.heartbeatFailures }] },
    { title: 'gateway RSS', unit: 'MB', lines: s.rss.map((values, i) => ({ name: `g${i}`, values })) },
    {
      title: 'gateway V8 heap used, lowest in each bucket',
      unit: 'MB',
      lines: s.heapUsedFloor.map((values, i) => ({ name: `g${i}`, values })),
    },
  ];
  const H = top + panels.length * (panelH + gap) + 20;
  const span = Math.max(log.durationMs, 1);
  const x = (at: number) => left + ((W - left - right) * at) / span;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(
    `<text x="${left}" y="18" font-size="14" font-weight="bold">soak seed ${log.seed}: ${(log.durationMs / 60_000).toFixed(1)} min, ${log.faults.length} faults</text>`,
  );
  let lx = left;
  for (const [kind, color] of Object.entries(FAULT_COLORS)) {
    out.push(
      `<rect x="${lx}" y="30" width="12" height="12" fill="${color}" fill-opacity="0.35"/><text x="${lx + 16}" y="40">${kind}</text>`,
    );
    lx += 130;
  }
  panels.forEach((p, pi) => {
    const y0 = top + pi * (panelH + gap);
    const all = p.lines.flatMap((l) => l.values.filter((v): v is number => v !== null));
    const max = Math.max(1, ...all) * 1.1;
    const y = (v: number) => y0 + panelH - (panelH * v) / max;
    out.push(`<text x="${left}" y="${y0 - 6}" font-weight="bold">${p.title}</text>`);
    for (const f of log.faults) {
      const w = Math.max(2, x(f.end) - x(f.start));
      out.push(
        `<rect x="${x(f.start).toFixed(1)}" y="${y0}" width="${w.toFixed(1)}" height="${panelH}" fill="${FAULT_COLORS[f.kind]}" fill-opacity="0.25"><title>${f.kind} ${f.target} ${f.detail ?? ''}</title></rect>`,
      );
    }
    out.push(`<rect x="${left}" y="${y0}" width="${W - left - right}" height="${panelH}" fill="none" stroke="#888"/>`);
    out.push(
      `<text x="${left - 6}" y="${y0 + 10}" text-anchor="end">${max.toFixed(max < 10 ? 1 : 0)}${p.unit ? ' ' + p.unit : ''}</text><text x="${left - 6}" y="${y0 + panelH}" text-anchor="end">0</text>`,
    );
    p.lines.forEach((l, li) => {
      const pts: string[] = [];
      l.values.forEach((v, i) => {
        if (v !== null) pts.push(`${x(s.at[i]! + bucketMs / 2).toFixed(1)},${y(v).toFixed(1)}`);
      });
      if (pts.length)
        out.push(`<polyline fill="none" stroke="${LINE_COLORS[li % LINE_COLORS.length]}" stroke-width="1.5" points="${pts.join(' ')}"/>`);
      if (p.lines.length > 1)
        out.push(
          `<text x="${W - right - 120 * (p.lines.length - li)}" y="${y0 - 6}" fill="${LINE_COLORS[li % LINE_COLORS.length]}">${l.name}</text>`,
        );
    });
    const stepMin = Math.max(1, Math.ceil(span / 60_000 / 12));
    for (let m = 0; m * 60_000 <= span; m += stepMin) {
      out.push(`<text x="${x(m * 60_000).toFixed(1)}" y="${y0 + panelH + 14}" text-anchor="middle">${m} min</text>`);
    }
  });
  out.push('</svg>');
  return out.join('\n');
}

const fmt = (v: number | null, digits = 0) => (v === null ? 'n/a' : v.toFixed(digits));

export function markdown(s: Summary): string {
  const total = s.properties.reduce((a, p) => a + p.violations, 0);
  const lines = [
    `# Soak run, seed ${s.seed}`,
    '',
    `Started ${s.startedAt}; ran ${s.actualMinutes.toFixed(1)} of ${s.minutes} planned minutes with ${s.replicas} gateway replicas over a 3-member etcd cluster.`,
    `Machine: ${s.machine.cpu}, ${s.machine.cores} cores, ${s.machine.memoryGb} GB; Node ${s.machine.node}; etcd ${s.machine.etcd}; load at start ${s.machine.load}.${s.gatewayNodeOptions ? ` Gateways ran as \`node ${s.gatewayNodeOptions} --import tsx src/main.ts\`.` : ''}`,
    '',
    `**${total === 0 ? 'No violations' : `${total} violations`}.** ${s.faults.injected} faults injected (${Object.entries(s.faults.byKind)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')})${s.faults.skipped ? `, ${s.faults.skipped} skipped or failed` : ''}.`,
    '',
    '![timeline](timeline.svg)',
    '',
    '## Properties',
    '',
    '| property | promise | violations |',
    '| --- | --- | ---: |',
    ...s.properties.map((p) => `| ${p.property} | ${p.meaning} | ${p.violations} |`),
    '',
  ];
  if (s.violations.length) {
    lines.push('### First violations', '', ...s.violations.slice(0, 40).map((v) => `- **${v.property}**: ${v.detail}`), '');
  }
  lines.push(
    '## Workload and checks',
    '',
    '| measure | value |',
    '| --- | ---: |',
    ...Object.entries(s.workload).map(([k, v]) => `| ${k} | ${v} |`),
    `| store revisions | ${s.stats.revisions} |`,
    `| changes in the history | ${s.stats.changes} (expiries ${s.stats.expiries}) |`,
    `| acknowledged writes checked | ${s.stats.writesChecked} |`,
    `| events delivered to subscribers | ${s.stats.deliveries} |`,
    `| subscriber connections | ${s.stats.connections} (resets ${s.stats.resets}) |`,
    `| snapshots and reads compared with the history | ${s.stats.snapshotsChecked} |`,
    `| renewals (registrations + heartbeats answered) | ${s.stats.renewalsChecked} |`,
    `| blocking queries a lagging replica answered at the end of wait below their index (allowed by API.md) | ${s.stats.blockingBelowIndexAtWaitEnd} |`,
    `| changes not checked: the subscriber's replica had not applied them when the quiet phase ended (its store watch not back) | ${s.stats.unsettledChanges} |`,
    `| heartbeats ok / 404 / failed | ${s.heartbeats.ok} / ${s.heartbeats.notFound} / ${s.heartbeats.failed} |`,
    ...(s.failedHeartbeats
      ? [
          `| failed heartbeats by answer | ${Object.entries(s.failedHeartbeats.byStatus)
            .map(([status, n]) => `${status === '0' ? 'none' : status} ${n}`)
            .join(', ')} |`,
          `| failed heartbeats answered (or given up) after more than 5 s | ${s.failedHeartbeats.waitedOver5s} |`,
        ]
      : []),
    ...(s.expiries
      ? [
          `| expiries (agents' aside): left to expire / after a deregistration that got no answer or a 5xx / never acknowledged / kept by heartbeats | ${s.expiries.abandoned} / ${s.expiries.afterUnansweredDeregistration} / ${s.expiries.neverAcknowledged} / ${s.expiries.kept.length} (of ${s.expiries.total}) |`,
        ]
      : []),
    '',
    ...keptExpiries(s.expiries),
    '## Latency',
    '',
    '| | p50 ms | p99 ms | max ms | count |',
    '| --- | ---: | ---: | ---: | ---: |',
    `| acknowledged write | ${fmt(s.latencyMs.write.p50)} | ${fmt(s.latencyMs.write.p99)} | ${fmt(s.latencyMs.write.max)} | ${s.latencyMs.write.count} |`,
    `| delivery lag (recorder saw it → subscriber got it) | ${fmt(s.latencyMs.deliveryLag.p50)} | ${fmt(s.latencyMs.deliveryLag.p99)} | ${fmt(s.latencyMs.deliveryLag.max)} | ${s.latencyMs.deliveryLag.count} |`,
    '',
    ...lagSection(s.lag),
    '## Gateway memory',
    '',
    `Slopes in MB/hour over the longest-lived process of each replica once warm (${EVENT_RING} changes through its event ring, a cache that grows until full): RSS and V8 heap reserved by least squares over every sample;`,
    'V8 heap used and external memory (Buffers) by least squares over their lowest value in each 2-minute window, what survives garbage collection.',
    '',
    'Live heap after full GCs: the V8 heap right after each mark-compact (when the gateways ran with --trace-gc), least squares, with how many and the first and last size;',
    "then fitted against the number of instances etcd held and time together: the cost per instance, and the trend beside the registry's size (MB/hour).",
    '',
    '| replica | fitted over (min) | RSS slope | heap reserved slope | heap used floor slope | external floor slope | live heap after full GCs | last RSS / heap reserved / heap used / external (MB) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...s.rss.map(
      (r) =>
        `| g${r.replica} | ${r.fittedMinutes.toFixed(1)} | ${fmt(r.slopeMbPerHour, 1)} | ${fmt(r.heapTotalSlope, 1)} | ${fmt(r.heapUsedFloorSlope, 1)} | ${fmt(r.externalFloorSlope, 1)} | ${r.liveAfterGc.count ? `${fmt(r.liveAfterGc.slope, 1)} (${r.liveAfterGc.count}, ${fmt(r.liveAfterGc.firstMb, 1)} → ${fmt(r.liveAfterGc.lastMb, 1)}); ${fmt(r.liveAfterGc.perInstanceKb, 1)} KB per instance, ${fmt(r.liveAfterGc.residualSlope, 1)} beside` : 'n/a'} | ${[r.lastMb, r.last.heapTotalMb, r.last.heapUsedMb, r.last.externalMb].map((v) => fmt(v, 0)).join(' / ')} |`,
    ),
    '',
    `Verdict per replica: the RSS trend (${RSS_WINDOW_MS / 60_000}-minute means) and the heap-used trend (${FLOOR_WINDOW_MS / 60_000}-minute floors) with their 95% intervals in MB/hour,`,
    `fitted over those window values only (samples seconds apart are not independent). flat: both intervals lie below a leak of ${LEAK_MB_PER_HOUR} MB/hour; leak: either lies at or above it; undecided: the run is too short or noisy to tell.`,
    '',
    '| replica | RSS MB/h [95%] | heap used MB/h [95%] | verdict |',
    '| --- | ---: | ---: | --- |',
    ...s.rss.map((r) => `| g${r.replica} | ${interval(r.rssTrend)} | ${interval(r.heapUsedTrend)} | ${r.verdict} |`),
    '',
    '## Faults',
    '',
    '| start (s) | end (s) | kind | target | detail |',
    '| ---: | ---: | --- | --- | --- |',
    ...s.faults.list.map(
      (f) => `| ${(f.start / 1000).toFixed(1)} | ${(f.end / 1000).toFixed(1)} | ${f.kind} | ${f.target} | ${f.detail ?? ''} |`,
    ),
    '',
  );
  return lines.join('\n');
}

/** Delivery lag by stage (soak/lag.ts), over the run and between faults, and the steady-state p99 against its target. */
function lagSection(lag: LagBreakdown | undefined): string[] {
  if (!lag) return [];
  const v = (x: number | null, bucketed?: boolean) => (x === null ? 'n/a' : `${bucketed ? '≤ ' : ''}${x.toFixed(x < 10 ? 1 : 0)}`);
  const met = lag.steadyP99 !== null && lag.steadyP99 <= lag.targetMs;
  return [
    '### Delivery lag by stage',
    '',
    `**Steady state (between faults, ${lag.steadyMinutes.toFixed(1)} min): live deliveries p99 ${v(lag.steadyP99)} ms against a target of ${lag.targetMs} ms: ${met ? 'met' : 'missed'}.**`,
    'Outside stages are times in the driver process; gateway stages come from their histograms (the upper bound of the bucket the percentile falls in).',
    '',
    '| stage | p50 ms | p99 ms | count | between faults: p50 ms | p99 ms | count |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...lag.all.map((a, i) => {
      const b = lag.steady[i]!;
      return `| ${a.stage} | ${v(a.p50, a.bucketed)} | ${v(a.p99, a.bucketed)} | ${a.count} | ${v(b.p50, b.bucketed)} | ${v(b.p99, b.bucketed)} | ${b.count} |`;
    }),
    '',
  ];
}

/** Fleet instances that expired while the driver still heartbeated them, with what their heartbeats got. */
function keptExpiries(expiries: Summary['expiries']): string[] {
  if (!expiries?.kept.length) return [];
  const t = (ms: number | undefined) => (ms === undefined ? 'none' : (ms / 1000).toFixed(1));
  return [
    '### Instances kept by heartbeats that expired',
    '',
    'Not violations (no answered renewal was within its TTL), but for a whole TTL every heartbeat failed. Each heartbeat that failed since the last answered renewal was sent: replica, answer (0: none), sent at (s), waited (s).',
    '',
    '| instance | expired at (s) | last answered renewal sent at (s) | failed heartbeats after it |',
    '| --- | ---: | ---: | --- |',
    ...expiries.kept
      .slice(0, 40)
      .map(
        (k) =>
          `| ${k.key} | ${t(k.at)} | ${t(k.lastRenewalSentAt)} | ${k.failedHeartbeats.map((f) => `g${f.replica} ${f.status} @${t(f.sentAt)} ${t(f.answeredAt - f.sentAt)}`).join('; ')} |`,
      ),
    ...(expiries.kept.length > 40 ? ['', `(${expiries.kept.length - 40} more in report.json)`] : []),
    '',
  ];
}

export function writeReport(
  dir: string,
  log: RunLog,
  result: CheckResult,
  machine: Machine,
  workload: Record<string, number>,
  rssWarmupMs: number,
): Summary {
  const summary = summarize(log, result, machine, workload, rssWarmupMs);
  const bucketMs = Math.max(5000, Math.round(log.durationMs / 150 / 5000) * 5000);
  const s = series(log, result, bucketMs);
  writeFileSync(join(dir, 'report.json'), JSON.stringify({ ...summary, bucketMs, series: s }, null, 1) + '\n');
  writeFileSync(join(dir, 'report.md'), markdown(summary));
  writeFileSync(join(dir, 'timeline.svg'), timelineSvg(log, s, bucketMs) + '\n');
  return summary;
}
