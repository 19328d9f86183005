// One deadline for a whole write request (API.md "No request hangs on a silent
// store"): whatever store calls and retries a registration, heartbeat or
// deregistration makes inside (opening a keepalive stream, re-reading a record,
// a second renewal), it is answered 503 store-unavailable when the deadline passes.
import { StoreUnavailableError } from './errors.ts';

export class Deadline {
  private readonly end: number;

  constructor(ms: number) {
    this.end = Date.now() + ms;
  }

  get leftMs(): number {
    return Math.max(0, this.end - Date.now());
  }

  /** Before a retry or a further store call: work abandoned at the deadline stops here. */
  check(): void {
    if (this.leftMs === 0) throw this.expired();
  }

  /**
   * `work`'s result, or 503 once the deadline passes first. A store call cannot be
   * cancelled: it ends by its own timeout, and the work stops at its next check().
   */
  async run<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(this.expired()), this.leftMs)));
    try {
      return await Promise.race([work, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  private expired(): StoreUnavailableError {
    return new StoreUnavailableError('the store did not answer in time; retry');
  }
}
