// What a scenario reports: rows of (ours, baseline, ratio, target, pass), printed
// as a plain-text table at the end of the run and as Markdown in BENCHMARKS.md.
import type { BenchEtcd } from './etcd.ts';

export interface Row {
  metric: string;
  ours: number;
  unit: string;
  baseline?: number;
  /** What the baseline is (e.g. "fastify", "etcd3 client"). */
  against?: string;
  /** ours / baseline (or the growth factor for size independence). */
  ratio?: number;
  target?: string;
  /** undefined: informational row, no target. */
  pass?: boolean;
  /** The load generator's rate against a trivial route with the same load (wrk-driven rows). */
  ceiling?: number;
  /** The faster side came within 10% of the ceiling: the ratio measured the generator too. */
  invalid?: boolean;
}

/** A side within this share of the generator's ceiling makes a ratio invalid. */
const CEILING_MARGIN = 0.9;

/** Shows the generator's ceiling beside a ratio, and refuses the ratio when a side came within 10% of it. */
export function guarded(row: Row, ceiling: number): Row {
  const fastest = Math.max(row.ours, row.baseline ?? 0);
  const invalid = fastest >= CEILING_MARGIN * ceiling;
  return { ...row, ceiling, invalid, pass: invalid && row.pass !== undefined ? false : row.pass };
}

export interface ScenarioResult {
  name: string;
  title: string;
  rows: Row[];
  seconds: number;
  error?: string;
  notes: string[];
}

export interface ScenarioContext {
  quick: boolean;
  /** --duration: seconds of each measured run, instead of the scenario's own (for profiling one path longer). */
  durationS?: number;
  /** Measured rounds per comparison (the median is reported). */
  rounds: number;
  /** wrk threads per run (1 loads the machine least: see BENCHMARKS.md). */
  wrkThreads: number;
  /** The etcd client URL this scenario owns (fresh per scenario; member 0 of a cluster). */
  etcd: string;
  /** The same etcd with every member, to kill one or find the leader. */
  cluster: BenchEtcd;
  /** When set, the gateway writes a V8 CPU profile here on exit. */
  cpuProfDir?: string;
  log(message: string): void;
  /** A remark shown under the scenario's table (method detail, anomaly). */
  note(message: string): void;
}

export interface Scenario {
  name: string;
  title: string;
  /** etcd members the scenario needs (default 1). */
  members?: 1 | 3;
  run(ctx: ScenarioContext): Promise<Row[]>;
}

/**
 * A throughput row compared with a baseline: pass when ours ≥ min × baseline.
 * `ratio` when given (the median of per-round ratios) instead of ours / baseline.
 */
export function ratioRow(
  metric: string,
  ours: number,
  baseline: number,
  against: string,
  unit: string,
  min?: number,
  ratio = ours / baseline,
): Row {
  return {
    metric,
    ours,
    baseline,
    against,
    ratio,
    unit,
    target: min === undefined ? undefined : `≥ ${min}×`,
    pass: min === undefined ? undefined : ratio >= min,
  };
}

/** A latency row compared with a baseline: pass when ours ≤ max × baseline. */
export function latencyRow(metric: string, ours: number, baseline: number, against: string, max?: number): Row {
  const ratio = ours / baseline;
  return {
    metric,
    ours,
    baseline,
    against,
    ratio,
    unit: 'ms',
    target: max === undefined ? undefined : `≤ ${max}×`,
    pass: max === undefined ? undefined : ratio <= max,
  };
}

/** A row with an upper bound: pass when ours < max. */
export function underRow(metric: string, ours: number, unit: string, max?: number): Row {
  return {
    metric,
    ours,
    unit,
    target: max === undefined ? undefined : `< ${max} ${unit}`,
    pass: max === undefined ? undefined : ours < max,
  };
}

export function fmt(n: number | undefined): string {
  if (n === undefined) return '';
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 1000) return Math.round(n).toLocaleString('en-US');
  if (a >= 100) return n.toFixed(0);
  if (a >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

const verdict = (r: Row) => (r.invalid ? 'INVALID' : r.pass === undefined ? '' : r.pass ? 'pass' : 'FAIL');

function cells(r: Row): string[] {
  return [
    r.metric,
    `${fmt(r.ours)} ${r.unit}`,
    r.baseline === undefined ? '' : `${fmt(r.baseline)} ${r.unit}${r.against ? ` (${r.against})` : ''}`,
    r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}×`,
    r.target ?? '',
    verdict(r),
    r.ceiling === undefined ? '' : `${fmt(r.ceiling)} ${r.unit}`,
  ];
}

const HEAD = ['metric', 'ours', 'baseline', 'ratio', 'target', 'result', 'wrk ceiling'];

export function textTable(result: ScenarioResult): string {
  const rows = [HEAD, ...result.rows.map(cells)];
  const widths = HEAD.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const out = [`== ${result.title} (${result.seconds.toFixed(0)} s)`, line(HEAD), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of rows.slice(1)) out.push(line(r));
  if (result.error) out.push(`!! scenario failed: ${result.error}`);
  for (const n of result.notes) out.push(`   note: ${n}`);
  return out.join('\n');
}

export function markdownTable(result: ScenarioResult): string {
  const out = [`### ${result.title}`, '', `| ${HEAD.join(' | ')} |`, `| ${HEAD.map(() => '---').join(' | ')} |`];
  // Markdown drops leading spaces: sub-rows get an arrow instead.
  for (const r of result.rows) out.push(`| ${cells({ ...r, metric: r.metric.replace(/^\s+/, '↳ ') }).join(' | ')} |`);
  if (result.error) out.push('', `**Scenario failed:** ${result.error}`);
  if (result.notes.length) out.push('', ...result.notes.map((n) => `- ${n}`));
  return out.join('\n');
}

/** Every row with a pass/fail target, over all scenarios: the run's verdict at a glance (shown first). */
export function targetsSummary(results: ScenarioResult[]): ScenarioResult {
  const rows = results.flatMap((r) =>
    r.rows.filter((row) => row.pass !== undefined).map((row) => ({ ...row, metric: `${r.name}: ${row.metric.trim()}` })),
  );
  const failed = results.filter((r) => r.error).map((r) => `${r.name} failed (no rows): ${r.error}`);
  return { name: 'targets', title: 'Targets', rows, seconds: results.reduce((s, r) => s + r.seconds, 0), notes: failed };
}
