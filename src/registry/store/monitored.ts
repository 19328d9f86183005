// A Store wrapper that times every call and keeps track of whether the store
// answers: the one place that knows "is the store reachable, since when".
// Reachability changes are logged once per change, not once per request, and
// warnings about the store's version once each.
import type { GatewayEvents } from '../../events.ts';
import { StoreUnavailableError } from '../errors.ts';
import type { Compare, Store, StoreStatus, TxnOp, Watch, WatchHandlers } from './store.ts';

export class MonitoredStore implements Store {
  private up = false;
  private lastContactMs = 0;
  private closed = false;
  private readonly warned = new Set<string>();
  private raised: string[] = [];

  constructor(
    private readonly inner: Store,
    private readonly events: GatewayEvents,
  ) {}

  get kind(): Store['kind'] {
    return this.inner.kind;
  }

  get reachable(): boolean {
    return this.up;
  }

  /** Whole seconds since the store last answered (for the Age header of stale answers). */
  secondsSinceContact(now = Date.now()): number {
    return this.lastContactMs ? Math.max(0, Math.floor((now - this.lastContactMs) / 1000)) : 0;
  }

  /** The watch heard from the store: it is reachable. */
  heardFrom(): void {
    this.mark(true);
  }

  /** The store is known to be unreachable (a watch lost its connection). */
  lost(err: unknown): void {
    this.mark(false, err);
  }

  private mark(up: boolean, err?: unknown): void {
    if (up) this.lastContactMs = Date.now();
    if (up === this.up || this.closed) return; // a call failing because we closed is no outage
    this.up = up;
    this.events.storeReachable(up, err);
  }

  private async timed<T>(op: string, call: () => Promise<T>): Promise<T> {
    const start = process.hrtime.bigint();
    try {
      const result = await call();
      this.mark(true);
      return result;
    } catch (err) {
      if (err instanceof StoreUnavailableError) this.mark(false, err);
      throw err;
    } finally {
      this.events.storeRequest(op, Number(process.hrtime.bigint() - start) / 1e9);
    }
  }

  grantLease(ttl: number) {
    return this.timed('lease_grant', () => this.inner.grantLease(ttl));
  }
  keepAlive(id: string) {
    return this.timed('lease_keepalive', () => this.inner.keepAlive(id));
  }
  revokeLease(id: string) {
    return this.timed('lease_revoke', () => this.inner.revokeLease(id));
  }
  get(key: string) {
    return this.timed('get', () => this.inner.get(key));
  }
  range(prefix: string) {
    return this.timed('range', () => this.inner.range(prefix));
  }
  txn(compares: Compare[], success: TxnOp[]) {
    return this.timed('txn', () => this.inner.txn(compares, success));
  }
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Promise<Watch> {
    return this.timed('watch', () => this.inner.watch(prefix, fromRevision, handlers));
  }
  async status(timeoutMs: number): Promise<StoreStatus> {
    const status = await this.timed('status', () => this.inner.status(timeoutMs));
    const alarms = status.alarms ?? [];
    if (alarms.join() !== this.raised.join()) {
      this.raised = alarms;
      this.events.storeAlarms(alarms);
    }
    // Each status call may reach another member: a member left on an old version is named when it answers.
    for (const message of status.warnings ?? []) {
      if (this.warned.has(message)) continue;
      this.warned.add(message);
      this.events.storeWarning(message);
    }
    return status;
  }
  close() {
    this.closed = true;
    return this.inner.close();
  }
}
