// The lease that bookkeeping keys ({prefix}/_/…) are bound to, so they expire by
// themselves. One lease serves many keys: it is granted for LEASE_TTL seconds and
// reused for half of that, so every key lives between LEASE_TTL/2 and LEASE_TTL.
import type { Store } from './store/store.ts';

const LEASE_TTL_SECONDS = 120;

export class BookkeepingLease {
  private current: { id: Promise<string>; grantedAt: number } | undefined;

  constructor(private readonly store: Store) {}

  id(): Promise<string> {
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

  /** A write failed because the lease is gone (store restored from a backup, say): grant a new one next time. */
  forget(): void {
    this.current = undefined;
  }
}
