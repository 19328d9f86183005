// A memory trend with its uncertainty: is a replica's memory flat, or does it leak at least
// LEAK_MB_PER_HOUR? Samples a few seconds apart are strongly correlated (one GC cycle spans
// several), so a least-squares slope over them claims far more certainty than it has. The
// samples are first reduced to one value per window (its mean, or its floor for a heap that
// rises between collections), and the slope's 95% interval comes from those values alone.

export type Point = { at: number; v: number };

/** A leak this size or larger must be told apart from flat (MB per hour). */
export const LEAK_MB_PER_HOUR = 2;

export interface Trend {
  /** Least-squares slope, units per hour. */
  slope: number;
  /** Its 95% confidence interval. */
  low: number;
  high: number;
  /** How many window values it was fitted over. */
  windows: number;
}

/**
 * flat: the whole interval is below a leak of LEAK_MB_PER_HOUR; leak: the whole interval
 * is at or above it; undecided: the run is too short or too noisy to say.
 */
export type Verdict = 'flat' | 'leak' | 'undecided';

export function verdict(t: Trend | null): Verdict {
  if (!t) return 'undecided';
  if (t.high < LEAK_MB_PER_HOUR) return 'flat';
  if (t.low >= LEAK_MB_PER_HOUR) return 'leak';
  return 'undecided';
}

/** One value per whole window of `windowMs` from the first point: the mean, or the lowest. */
export function perWindow(points: Point[], windowMs: number, reduce: 'mean' | 'floor'): Point[] {
  if (!points.length) return [];
  const start = points[0]!.at;
  const windows = new Map<number, Point[]>();
  for (const p of points) {
    const w = Math.floor((p.at - start) / windowMs);
    (windows.get(w) ?? windows.set(w, []).get(w)!).push(p);
  }
  // A ragged window (the end, a scrape gap) with under half the points of the fullest is left out.
  const fullest = Math.max(...[...windows.values()].map((list) => list.length));
  return [...windows.values()]
    .filter((list) => list.length * 2 >= fullest)
    .map((list) =>
      reduce === 'floor'
        ? list.reduce((low, p) => (p.v < low.v ? p : low))
        : { at: list.reduce((a, p) => a + p.at, 0) / list.length, v: list.reduce((a, p) => a + p.v, 0) / list.length },
    );
}

/** Least-squares slope of `points` per hour with its 95% interval; null under 4 points. */
export function trendPerHour(points: Point[]): Trend | null {
  const n = points.length;
  if (n < 4) return null;
  const hours = points.map((p) => p.at / 3_600_000);
  const mx = hours.reduce((a, x) => a + x, 0) / n;
  const my = points.reduce((a, p) => a + p.v, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (hours[i]! - mx) ** 2;
    sxy += (hours[i]! - mx) * (points[i]!.v - my);
  }
  if (!sxx) return null;
  const slope = sxy / sxx;
  let sse = 0;
  for (let i = 0; i < n; i++) sse += (points[i]!.v - (my + slope * (hours[i]! - mx))) ** 2;
  const halfWidth = tQuantile975(n - 2) * Math.sqrt(sse / (n - 2) / sxx);
  return { slope, low: slope - halfWidth, high: slope + halfWidth, windows: n };
}

/** Student's t 97.5% quantile for `df` degrees of freedom (Cornish–Fisher expansion; within 1% from df 3). */
function tQuantile975(df: number): number {
  const z = 1.959964;
  return (
    z +
    (z ** 3 + z) / (4 * df) +
    (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2) +
    (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3)
  );
}
