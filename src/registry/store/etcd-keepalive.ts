// The etcd side of Store.keepAlive: lease renewals over a small pool of
// long-lived leaseKeepAlive() streams. Private to the etcd store, like
// etcd-watch.ts.
//
// Why several streams: etcd answers the requests of one keepalive stream one at
// a time, and a follower forwards each renewal to the leader before it reads
// the next one, so one stream through a follower is bound by that round trip.
// Each stream is opened on a host of its own choosing (etcd3 shuffles hosts),
// so the pool also spreads the renewals over the members.

import { castGrpcError, type IDuplexStream, type ILeaseKeepAliveRequest, type ILeaseKeepAliveResponse } from 'etcd3';
import { StoreUnavailableError } from '../errors.ts';

const num = (s: string | number | undefined): number => Number(s ?? 0);

type KeepAliveCall = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

export class KeepAlivePool {
  private readonly streams: (Promise<KeepAliveStream> | undefined)[];
  /** Renewals on their way, by lease id: a heartbeat of a lease already being renewed shares that renewal. */
  private readonly inFlight = new Map<string, Promise<number>>();
  private closed = false;

  constructor(
    private readonly open: () => Promise<KeepAliveCall>,
    size: number,
    private readonly timeoutMs: number,
  ) {
    this.streams = new Array<undefined>(size).fill(undefined);
  }

  /** Renew a lease once; resolves its remaining TTL (0 when the lease is gone). */
  renew(leaseId: string): Promise<number> {
    const running = this.inFlight.get(leaseId);
    if (running) return running;
    const renewal = this.stream(this.slotOf(leaseId))
      .then((s) => s.renew(leaseId))
      .finally(() => this.inFlight.delete(leaseId));
    this.inFlight.set(leaseId, renewal);
    return renewal;
  }

  /** A lease always goes to the same slot; etcd's lease ids end in a counter, so slots fill evenly. */
  private slotOf(leaseId: string): number {
    return Number(BigInt(leaseId) % BigInt(this.streams.length));
  }

  private stream(slot: number): Promise<KeepAliveStream> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('the store client is closed'));
    let p = this.streams[slot];
    if (!p) {
      const forget = () => this.streams[slot] === p && (this.streams[slot] = undefined);
      p = this.open().then((call) => new KeepAliveStream(call, this.timeoutMs, forget));
      p.catch(forget);
      this.streams[slot] = p;
    }
    return p;
  }

  /**
   * New renewals open new streams (through `open`, on the store's current client
   * after a reconnect); the current streams end once their pending renewals are
   * answered (or timed out). Leases live in etcd: any stream renews any lease id.
   */
  async reopen(): Promise<void> {
    const open = [...this.streams];
    this.streams.fill(undefined);
    await Promise.all(open.map((p) => p?.then((s) => s.retire()).catch(() => {})));
  }

  /** Ends every stream once its pending renewals are answered (or timed out). */
  async close(): Promise<void> {
    this.closed = true;
    await this.reopen();
  }
}

interface Waiter {
  resolve(ttl: number): void;
  reject(err: unknown): void;
  timer: NodeJS.Timeout;
}

/**
 * One leaseKeepAlive() duplex stream. etcd answers each request with the lease
 * ID; the pool sends at most one renewal per lease at a time, so one waiter per
 * ID. A request that times out retires the stream (everything behind it is
 * stuck too): new renewals go to a fresh stream, this one ends once its last
 * waiter settles.
 */
class KeepAliveStream {
  private readonly pending = new Map<string, Waiter>();
  private retired = false;
  private ended = false;

  constructor(
    private readonly call: KeepAliveCall,
    private readonly timeoutMs: number,
    private readonly onRetire: () => void,
  ) {
    call.on('data', (r) => this.answer(String(r.ID), num(r.TTL)));
    call.on('error', (err) => this.fail(castGrpcError(err)));
    call.on('end', () => this.fail(new StoreUnavailableError('the store ended the keepalive stream')));
  }

  renew(id: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.retire();
        reject(new StoreUnavailableError('the store did not answer in time'));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.call.write({ ID: id });
    });
  }

  private answer(id: string, ttl: number): void {
    const w = this.pending.get(id);
    if (!w) return; // its waiter timed out
    clearTimeout(w.timer);
    this.pending.delete(id);
    w.resolve(ttl); // etcd answers TTL 0 for an expired or revoked lease
    this.endIfIdle();
  }

  private fail(err: unknown): void {
    this.retire();
    for (const w of this.pending.values()) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.pending.clear();
  }

  retire(): void {
    if (!this.retired) {
      this.retired = true;
      this.onRetire();
    }
    this.endIfIdle();
  }

  private endIfIdle(): void {
    // end() half-closes so etcd ends the stream cleanly; cancel() would surface as an error
    // that etcd3 counts against the host (and resets every channel to it, watches included).
    if (this.retired && this.pending.size === 0 && !this.ended) {
      this.ended = true;
      this.call.end();
    }
  }
}
