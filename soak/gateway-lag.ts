// The gateways' own account of delivery lag, read from their /metrics every
// 5 s: the histograms discovery_watch_lag_seconds (a write acknowledged → the
// gateway's watch applied it) and discovery_stream_delivery_seconds (the watch
// applied a change → its frame handed to the subscribers' connections). The
// soak cannot see those moments from outside; the differences between samples
// place them in time, so that the report can leave out the windows of faults.
import type { GatewayLagSample, RunLog } from './observations.ts';
import { Sampler, type Gateway } from './system.ts';

const HISTOGRAMS = { watch: 'discovery_watch_lag_seconds', delivery: 'discovery_stream_delivery_seconds' } as const;

/** Cumulative bucket counts of `name` in a Prometheus text exposition, in `le` order; the bounds in seconds. */
export function bucketsOf(text: string, name: string): { bounds: number[]; counts: number[] } | undefined {
  const bounds: number[] = [];
  const counts: number[] = [];
  const line = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, 'gm');
  for (const m of text.matchAll(line)) {
    bounds.push(m[1] === '+Inf' ? Infinity : Number(m[1]));
    counts.push(Number(m[2]));
  }
  return counts.length ? { bounds, counts } : undefined;
}

/** Scrapes both histograms of every running gateway into `into`. */
export function gatewayLagSampler(gateways: Gateway[], now: () => number, into: NonNullable<RunLog['gatewayLag']>): Sampler {
  return new Sampler(5000, async () => {
    await Promise.all(
      gateways.map(async (g) => {
        const pid = g.pid;
        if (!pid) return;
        try {
          const res = await fetch(`${g.url}/metrics`, { signal: AbortSignal.timeout(2000) });
          if (!res.ok) return;
          const text = await res.text();
          const watch = bucketsOf(text, HISTOGRAMS.watch);
          const delivery = bucketsOf(text, HISTOGRAMS.delivery);
          if (!watch || !delivery) return;
          into.bounds = watch.bounds;
          const sample: GatewayLagSample = { replica: g.index, pid, at: now(), watch: watch.counts, delivery: delivery.counts };
          into.samples.push(sample);
        } catch {}
      }),
    );
  });
}
