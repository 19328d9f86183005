// The soak's memory verdict: a flat but noisy series is "flat", a real leak of a few MB an
// hour is "leak", and a run too short to tell says so rather than guessing.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { LEAK_MB_PER_HOUR, perWindow, trendPerHour, verdict, type Point } from '../soak/trend.ts';

/** Samples every 5 s for `minutes`: a sawtooth like a heap between collections, plus `mbPerHour` of growth. */
function series(minutes: number, mbPerHour: number, seed = 1): Point[] {
  let state = seed;
  const noise = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 6;
  return Array.from({ length: (minutes * 60) / 5 }, (_, i) => {
    const at = i * 5000;
    return { at, v: 120 + (mbPerHour * at) / 3_600_000 + ((i % 24) / 24) * 15 + noise() };
  });
}

it('three flat hours of a noisy sawtooth are flat: the interval lies below a 2 MB/h leak', () => {
  const t = trendPerHour(perWindow(series(180, 0), 300_000, 'mean'));
  assert.equal(verdict(t), 'flat', JSON.stringify(t));
  assert.ok(t!.low < 0 && t!.high > 0, 'the interval holds the true slope, 0');
});

it('three hours leaking 4 MB/h are a leak', () => {
  const t = trendPerHour(perWindow(series(180, 4), 300_000, 'mean'));
  assert.equal(verdict(t), 'leak', JSON.stringify(t));
  assert.ok(t!.low < 4 && t!.high > 4, 'the interval holds the true slope, 4');
});

it('twenty minutes cannot tell flat from a leak of 2 MB/h', () => {
  assert.ok(LEAK_MB_PER_HOUR === 2);
  assert.equal(verdict(trendPerHour(perWindow(series(20, 0), 300_000, 'mean'))), 'undecided');
});

it('floors keep the lowest sample of each window and drop a ragged last one', () => {
  const points = [10, 12, 11, 9, 13, 14, 20].map((v, i) => ({ at: i * 1000, v }));
  assert.deepEqual(
    perWindow(points, 3000, 'floor').map((p) => p.v),
    [10, 9],
  );
});
