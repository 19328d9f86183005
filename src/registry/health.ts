// The store as this gateway sees it. A background probe keeps "is the store
// reachable" current with no traffic at all: a cheap status call (no data read,
// short deadline) at a fixed interval. MonitoredStore flips its reachability on
// the result of any call, and with it discovery_store_up, the once-per-change
// log line and the stale marking of cached answers; without the probe an idle
// gateway would go on saying "up" after the store died (a frozen member is not
// noticed by the watch stream: LIBRARIES.md pitfall 17). Readiness checks ask
// the same way, on demand.
import type { Cache } from './cache.ts';
import type { MonitoredStore } from './store/monitored.ts';
import type { StoreStatus } from './store/store.ts';
import type { WatchSync } from './sync.ts';

/** Deadline of every status call, background or on demand. */
const STATUS_TIMEOUT_MS = 1000;
/** Readiness checks closer together than this share one store round trip. */
const CHECK_REUSE_MS = 250;

export interface StoreHealth {
  kind: string;
  reachable: boolean;
  revision: number;
  latencyMs: number;
  inSync: boolean;
  appliedRevision: number;
  error?: string;
  /** Alarms raised in the store ('nospace': full), when there are any. */
  alarms?: string[];
  details?: Record<string, unknown>;
}

export class Health {
  private timer: NodeJS.Timeout | undefined;
  private probing = false;
  private last: { at: number; view: string; result: Promise<StoreHealth> } | undefined;

  constructor(
    private readonly store: MonitoredStore,
    private readonly sync: WatchSync,
    private readonly cache: Cache,
    /** Every status answer, probe or readiness check (RestoreCheck looks at each). */
    private readonly onStatus: (status: StoreStatus) => void = () => {},
  ) {}

  /** Probe the store every `intervalMs` in the background. */
  start(intervalMs: number): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.probe(), intervalMs);
    this.timer.unref(); // never what keeps the process alive
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Ready = the store answers and the cache is in sync. One status call at a time, shared by concurrent checks. */
  check(): Promise<StoreHealth> {
    const now = Date.now();
    // Not shared past a change the gateway has seen since: a store that has just stopped
    // answering (cached answers already marked stale) is not reported ready from before.
    const view = `${this.store.reachable}/${this.sync.inSync}`;
    if (this.last && now - this.last.at < CHECK_REUSE_MS && this.last.view === view) return this.last.result;
    const result = this.status();
    this.last = { at: now, view, result };
    return result;
  }

  /** At most one background call at a time: a slow store does not pile them up. */
  private probe(): void {
    if (this.probing) return;
    this.probing = true;
    this.store
      .status(STATUS_TIMEOUT_MS)
      .then(this.onStatus)
      .catch(() => {}) // the MonitoredStore already recorded the failure
      .finally(() => {
        this.probing = false;
      });
  }

  private async status(): Promise<StoreHealth> {
    const { store, sync, cache } = this;
    const start = process.hrtime.bigint();
    const base = { kind: store.kind, inSync: sync.inSync, appliedRevision: cache.appliedRevision };
    try {
      const status = await store.status(STATUS_TIMEOUT_MS);
      this.onStatus(status);
      const latencyMs = Number(process.hrtime.bigint() - start) / 1e6;
      return {
        ...base,
        reachable: true,
        revision: status.revision,
        latencyMs: Math.round(latencyMs * 1000) / 1000,
        inSync: sync.inSync,
        ...(status.alarms?.length ? { alarms: status.alarms } : {}),
        details: status.warnings?.length ? { ...status.details, warnings: status.warnings } : status.details,
      };
    } catch {
      return {
        ...base,
        reachable: false,
        revision: cache.appliedRevision,
        latencyMs: STATUS_TIMEOUT_MS,
        inSync: false,
        error: 'the store did not answer',
      };
    }
  }
}
