// Percentiles of plain samples (times in ms): the nearest rank, no interpolation.

export type Percentiles = { p50: number | null; p99: number | null; max: number | null; count: number };

export function percentile(sorted: number[], p: number): number | null {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function percentiles(values: number[]): Percentiles {
  const s = [...values].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), max: s.at(-1) ?? null, count: s.length };
}
