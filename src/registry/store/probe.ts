// Keeps "is the store reachable" current with no traffic at all: a cheap status
// call (no data read, short deadline) at a fixed interval. MonitoredStore flips
// its reachability on the result of any call, and with it discovery_store_up,
// the once-per-change log line and the stale marking of cached answers; without
// this probe an idle gateway would go on saying "up" after the store died (a
// frozen member is not noticed by the watch stream: LIBRARIES.md pitfall 17).
// A member that lost its leader refuses the status call (require-leader), so a
// partitioned member counts as unreachable too.
import type { MonitoredStore } from './monitored.ts';

export class StoreProbe {
  private timer: NodeJS.Timeout | undefined;
  private inFlight = false;

  constructor(
    private readonly store: MonitoredStore,
    private readonly intervalMs: number,
    private readonly timeoutMs: number,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref(); // never what keeps the process alive
  }

  /** At most one status call at a time: a slow store does not pile them up. */
  private tick(): void {
    if (this.inFlight) return;
    this.inFlight = true;
    this.store
      .status(this.timeoutMs)
      .catch(() => {}) // the MonitoredStore already recorded the failure
      .finally(() => {
        this.inFlight = false;
      });
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
