// The lease that bookkeeping keys ({prefix}/_/…) are bound to, so they expire by
// themselves. One lease serves many keys: it is granted for LEASE_TTL seconds and
// reused for half of that, so every key lives between LEASE_TTL/2 and LEASE_TTL.
import { LeaseNotFoundError } from './errors.ts';
import type { Store } from './store/store.ts';

const LEASE_TTL_SECONDS = 120;

export class BookkeepingLease {
  private current: { id: Promise<string>; grantedAt: number } | undefined;

  constructor(private readonly store: Store) {}

  /**
   * Run a write that binds a bookkeeping key to the shared lease. If that lease
   * is gone (revoked by an operator, store restored from a backup), the write
   * fails as a whole: forget the lease and try once more with a new one, rather
   * than answering 404 for an instance that exists.
   */
  async bind<T>(write: (lease: string) => Promise<T>): Promise<T> {
    try {
      return await write(await this.id());
    } catch (err) {
      if (!(err instanceof LeaseNotFoundError)) throw err;
      this.forget();
      return write(await this.id());
    }
  }

  /** Grant a new lease next time (the old one is gone, or the registry closes). */
  forget(): void {
    this.current = undefined;
  }

  private id(): Promise<string> {
    const now = Date.now();
    if (!this.current || now - this.current.grantedAt > (LEASE_TTL_SECONDS * 1000) / 2) {
      const id = this.store.grantLease(LEASE_TTL_SECONDS).then((l) => l.id);
      const entry = { id, grantedAt: now };
      this.current = entry;
      id.catch(() => {
        if (this.current === entry) this.current = undefined; // ask again next time
      });
    }
    return this.current.id;
  }
}
