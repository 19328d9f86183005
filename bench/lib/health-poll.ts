// A probe polled throughout a scenario: GET a health route on a fixed period, one
// request at a time, and keep every answer's latency.
import { setTimeout as sleep } from 'node:timers/promises';

/** GET `url` every `everyMs` (one at a time) until stopped: each answer's latency; a failure or non-200 is counted. */
export function pollHealth(url: string, everyMs: number): { stop(): Promise<{ latencies: number[]; failed: number }> } {
  const latencies: number[] = [];
  let failed = 0;
  let running = true;
  const loop = (async () => {
    for (let next = performance.now(); running;) {
      const t0 = performance.now();
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
        await res.arrayBuffer();
        if (res.status === 200) latencies.push(performance.now() - t0);
        else failed++;
      } catch {
        failed++;
      }
      next += everyMs;
      await sleep(Math.max(0, next - performance.now()));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { latencies, failed };
    },
  };
}
