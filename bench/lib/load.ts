// Load generation: autocannon for HTTP (its latency histogram has 1 ms
// resolution), and a closed loop of async workers for the raw etcd client,
// timed with performance.now() and summarized the same way.
import autocannon, { type Options, type Result } from 'autocannon';

export interface LoadStats {
  /** Completed operations per second. */
  rps: number;
  /** Latency percentiles and mean, in ms. */
  p50: number;
  p99: number;
  mean: number;
  total: number;
  /** Failed operations (network errors, timeouts, and for HTTP non-2xx unless allowed). */
  errors: number;
  seconds: number;
}

/** Run autocannon; non-2xx answers count as errors unless their status is in `okStatus`. */
export async function cannon(opts: Options, okStatus: number[] = []): Promise<LoadStats & { raw: Result }> {
  const r = await autocannon({ timeout: 10, ...opts });
  const allowed = okStatus.reduce((n, s) => n + (r.statusCodeStats[String(s)]?.count ?? 0), 0);
  const total = r.requests.total;
  return {
    rps: total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    mean: r.latency.mean,
    total,
    errors: r.errors + r.timeouts + r.non2xx - allowed,
    seconds: r.duration,
    raw: r,
  };
}

/** Percentile (0-100) of sorted values. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(latencies: number[], seconds: number, errors = 0): LoadStats {
  const sorted = Float64Array.from(latencies).sort();
  const sum = latencies.reduce((a, b) => a + b, 0);
  return {
    rps: latencies.length / seconds,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: latencies.length ? sum / latencies.length : NaN,
    total: latencies.length,
    errors,
    seconds,
  };
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
