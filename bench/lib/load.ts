// What every load run reports, the median over rounds, and the Node-side load
// for what wrk cannot drive (the raw etcd3 client): a closed loop of async
// workers timed with performance.now().
import { setTimeout as sleep } from 'node:timers/promises';

export interface LoadStats {
  /** Successful operations per second. */
  rps: number;
  ok: number;
  /** Failed operations: for HTTP, socket errors and every unexpected status. */
  errors: number;
  /** Latency percentiles and maximum, in ms. */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  seconds: number;
}

/** Percentile (0-100) of sorted values. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(latencies: number[], seconds: number, errors = 0): LoadStats {
  const sorted = Float64Array.from(latencies).sort();
  return {
    rps: latencies.length / seconds,
    ok: latencies.length,
    errors,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? NaN,
    seconds,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median of each figure over rounds (errors and counts summed). */
export function medianOf<S extends LoadStats>(runs: S[]): S {
  const m = (k: keyof LoadStats) => median(runs.map((r) => r[k]));
  const sum = (k: keyof LoadStats) => runs.reduce((n, r) => n + r[k], 0);
  return {
    ...runs[0]!,
    rps: m('rps'),
    p50: m('p50'),
    p90: m('p90'),
    p99: m('p99'),
    max: m('max'),
    ok: sum('ok'),
    errors: sum('errors'),
    seconds: sum('seconds'),
  };
}

export interface Contender<S extends LoadStats> {
  /** Run once before the measured rounds (JIT, caches, connection pools). */
  warm?: () => Promise<unknown>;
  run: (round: number) => Promise<S>;
}

/** The median of each figure, and every round's run (for ratios taken within a round). */
export type Compared<S extends LoadStats> = S & { rounds: S[] };

/**
 * Warm every contender, then `rounds` rounds in which each runs once in turn
 * (interleaved, so drift in the machine's load hits all alike); the median of each.
 * With `settleMs`, each measured run starts that long after the one before, so the
 * work a run leaves behind (a server's garbage collection, closing its connections)
 * does not land in the next contender's run.
 */
export async function compare<K extends string, S extends LoadStats>(
  rounds: number,
  contenders: Record<K, Contender<S>>,
  log?: (m: string) => void,
  settleMs = 0,
): Promise<Record<K, Compared<S>>> {
  const names = Object.keys(contenders) as K[];
  for (const k of names) await contenders[k].warm?.();
  const runs = Object.fromEntries(names.map((k) => [k, [] as S[]])) as Record<K, S[]>;
  for (let r = 0; r < rounds; r++) {
    for (const k of names) {
      if (settleMs) await sleep(settleMs);
      const s = await contenders[k].run(r);
      runs[k].push(s);
      log?.(`round ${r + 1}/${rounds} ${k}: ${Math.round(s.rps)}/s, p99 ${s.p99.toFixed(2)} ms${s.errors ? `, ${s.errors} errors` : ''}`);
    }
  }
  return Object.fromEntries(names.map((k) => [k, { ...medianOf(runs[k]), rounds: runs[k] }])) as Record<K, Compared<S>>;
}

/**
 * `concurrency` workers each run `op(n)` back to back (n counts up across all
 * workers) until `durationMs` passed or `amount` operations were started.
 */
export async function closedLoop(
  op: (n: number) => Promise<unknown>,
  opts: { concurrency: number; durationMs?: number; amount?: number },
): Promise<LoadStats> {
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const start = performance.now();
  const end = opts.durationMs === undefined ? Infinity : start + opts.durationMs;
  const amount = opts.amount ?? Infinity;
  const worker = async () => {
    while (next < amount && performance.now() < end) {
      const n = next++;
      const t = performance.now();
      try {
        await op(n);
        latencies.push(performance.now() - t);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  return summarize(latencies, (performance.now() - start) / 1000, errors);
}

/** Run `fn` over `items` with at most `limit` in flight. */
export async function pool<T>(items: T[], limit: number, fn: (item: T, i: number) => Promise<unknown>): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < items.length) {
      const k = i++;
      await fn(items[k]!, k);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * ours / baseline within each round (adjacent runs), the median over rounds:
 * when the machine's load drifts between rounds, a ratio of two medians can
 * pair a busy round's run with a quiet one's.
 */
export function roundRatio(ours: Compared<LoadStats>, baseline: Compared<LoadStats>): number {
  return median(ours.rounds.map((r, i) => r.rps / baseline.rounds[i]!.rps));
}

/**
 * A baseline run just before and just after the runs compared with it, as one run
 * per round: the mean of the two, so a steady drift of the machine's load in
 * between cancels instead of favouring whichever side ran first.
 */
export function bracketed<S extends LoadStats>(before: Compared<S>, after: Compared<S>): Compared<S> {
  const mean = (a: S, b: S, k: keyof LoadStats) => (a[k] + b[k]) / 2;
  const rounds = before.rounds.map((a, i) => {
    const b = after.rounds[i]!;
    return {
      ...a,
      rps: mean(a, b, 'rps'),
      p50: mean(a, b, 'p50'),
      p90: mean(a, b, 'p90'),
      p99: mean(a, b, 'p99'),
      max: Math.max(a.max, b.max),
      ok: a.ok + b.ok,
      errors: a.errors + b.errors,
      seconds: a.seconds + b.seconds,
    };
  });
  return { ...medianOf(rounds), rounds };
}
