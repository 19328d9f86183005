// Where delivery lag goes: the time from a write to a subscriber reading its
// change, cut into the stages the soak can see from outside (its own clock) and
// the ones only the gateways can (their histograms, soak/gateway-lag.ts):
//
//   write answered → recorder's watch        outside: when etcd's watch has it, as a plain client sees it
//   gateway: write acknowledged → its watch   histogram: the gateway's own watch catching up with its write
//   gateway: watch → frames handed over       histogram: the fan-out and any wait for a full connection
//   recorder → subscriber, live               outside: everything after etcd, the driver's own loop included
//   recorder → subscriber, after a reconnect  outside: the same, plus the time the subscriber was away
//
// The steady state leaves out the start (the fleet registers at once) and each
// fault from its start until a while after it ends (reconnects, catching up).
import type { CheckResult } from './checker.ts';
import type { GatewayLagSample, RunLog } from './observations.ts';
import { percentile } from './percentiles.ts';

/** The steady-state p99 of live deliveries this machine should reach. */
export const STEADY_TARGET_MS = 100;
/** After a fault ends, subscribers reconnect and catch up: not the steady state for this long. */
const AFTER_FAULT_MS = 30_000;
/** The fleet's first registrations (thousands at once): not the steady state either. */
const START_MS = 60_000;

export interface Stage {
  stage: string;
  p50: number | null;
  p99: number | null;
  count: number;
  /** From a histogram: the values are the upper bounds of the buckets the percentiles fall in. */
  bucketed?: boolean;
}

export interface LagBreakdown {
  /** Over the whole run, then between faults only. */
  all: Stage[];
  steady: Stage[];
  /** p99 of live deliveries between faults (ms), against STEADY_TARGET_MS. */
  steadyP99: number | null;
  targetMs: number;
  /** How much of the run counted as steady. */
  steadyMinutes: number;
}

type Window = [from: number, to: number];

function unsteadyWindows(log: RunLog): Window[] {
  return [[0, START_MS], ...log.faults.map((f): Window => [f.start, f.end + AFTER_FAULT_MS])];
}

const inside = (at: number, windows: Window[]) => windows.some(([a, b]) => at >= a && at <= b);

export function lagBreakdown(log: RunLog, result: CheckResult): LagBreakdown {
  const unsteady = unsteadyWindows(log);
  const steadyOnly = (at: number) => !inside(at, unsteady);
  const stages = (keep: (at: number) => boolean): Stage[] => {
    const firstSeen = new Map<number, number>();
    for (const e of log.history.events) if (!firstSeen.has(e.revision)) firstSeen.set(e.revision, e.at);
    const recorderAfterAnswer: number[] = [];
    for (const w of log.writes) {
      const seen = firstSeen.get(w.revision);
      if (seen !== undefined && keep(w.answeredAt)) recorderAfterAnswer.push(seen - w.answeredAt);
    }
    const live = result.lags.filter((l) => !l.resumed && keep(l.at)).map((l) => l.ms);
    const resumed = result.lags.filter((l) => l.resumed && keep(l.at)).map((l) => l.ms);
    const loop = log.loopDelay.filter((d) => keep(d.at)).map((d) => d.p99);
    const hist = log.gatewayLag && histogramStages(log.gatewayLag.bounds, log.gatewayLag.samples, keep);
    return [
      plain('write answered → recorder’s watch (negative: the watch had it first)', recorderAfterAnswer),
      ...(hist ?? []),
      plain('recorder → subscriber, live', live),
      plain('recorder → subscriber, after a reconnect (includes the time away)', resumed),
      plain('driver event-loop delay (p99 of each 5 s)', loop),
    ];
  };
  const steady = stages(steadyOnly);
  const steadyMs = Math.max(0, log.durationMs - covered(unsteady, log.durationMs));
  return {
    all: stages(() => true),
    steady,
    steadyP99: steady.find((s) => s.stage === 'recorder → subscriber, live')!.p99,
    targetMs: STEADY_TARGET_MS,
    steadyMinutes: steadyMs / 60_000,
  };
}

function plain(stage: string, values: number[]): Stage {
  const s = values.sort((a, b) => a - b);
  return { stage, p50: percentile(s, 50), p99: percentile(s, 99), count: s.length };
}

/** How much of [0, end] the windows cover together. */
function covered(windows: Window[], end: number): number {
  let total = 0;
  let reached = 0;
  for (const [a, b] of [...windows].sort((x, y) => x[0] - y[0])) {
    const from = Math.max(a, reached);
    const to = Math.min(b, end);
    if (to > from) total += to - from;
    reached = Math.max(reached, to);
  }
  return total;
}

/**
 * The gateways' histograms over the scrape intervals `keep` accepts: each
 * interval's counts are the difference between two scrapes of one process
 * (a restarted gateway starts from zero again).
 */
function histogramStages(bounds: number[], samples: GatewayLagSample[], keep: (at: number) => boolean): Stage[] {
  const watch = new Array<number>(bounds.length).fill(0);
  const delivery = new Array<number>(bounds.length).fill(0);
  const last = new Map<number, GatewayLagSample>();
  for (const s of [...samples].sort((a, b) => a.at - b.at)) {
    const prev = last.get(s.pid);
    last.set(s.pid, s);
    // The first scrape of a process holds everything since its start: kept only if that was steady too.
    if (!keep(s.at) || (prev ? !keep(prev.at) : !keep(Math.max(0, s.at - 5000)))) continue;
    s.watch.forEach((n, i) => (watch[i]! += n - (prev?.watch[i] ?? 0)));
    s.delivery.forEach((n, i) => (delivery[i]! += n - (prev?.delivery[i] ?? 0)));
  }
  return [
    bucketed('gateway: write acknowledged → its watch applied it', bounds, watch),
    bucketed('gateway: watch applied → frames handed to the connections', bounds, delivery),
  ];
}

/** Percentiles of a cumulative histogram: the upper bound (ms) of the bucket each falls in. */
function bucketed(stage: string, bounds: number[], cumulative: number[]): Stage {
  const count = cumulative.at(-1) ?? 0;
  const at = (p: number) => {
    if (!count) return null;
    const i = cumulative.findIndex((n) => n >= (p / 100) * count);
    return bounds[i]! * 1000;
  };
  return { stage, p50: at(50), p99: at(99), count, bucketed: true };
}
