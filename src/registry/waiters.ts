// Parked requests: blocking queries wait for a service to change, read-your-writes
// and minRevision wait for the watch to reach a revision. A waiter costs one
// timer for its whole wait (none per tick) and is dropped when its client leaves.

interface Waiter {
  done: (reached: boolean) => void;
}

function park<W extends Waiter>(
  add: (w: W) => void,
  remove: (w: W) => void,
  make: (done: (r: boolean) => void) => W,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const finish = (reached: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      remove(w);
      resolve(reached);
    };
    const onAbort = () => finish(false);
    const w = make(finish);
    add(w);
    const timer = setTimeout(() => finish(false), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Waiters for "the cache has applied revision R". */
export class RevisionWaiters {
  private waiting = new Set<Waiter & { revision: number }>();

  /** Resolves true once `release(r)` is called with r >= revision, false on timeout or abort. */
  wait(revision: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return park<Waiter & { revision: number }>(
      (w) => this.waiting.add(w),
      (w) => this.waiting.delete(w),
      (done) => ({ revision, done }),
      timeoutMs,
      signal,
    );
  }

  release(applied: number): void {
    if (!this.waiting.size) return;
    for (const w of [...this.waiting]) if (w.revision <= applied) w.done(true);
  }
}

/** Waiters for "this service changed". */
export class ServiceWaiters {
  private byService = new Map<string, Set<Waiter>>();

  /** Resolves true when `notify(service)` is called, false on timeout or abort. */
  wait(service: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return park(
      (w) => {
        let set = this.byService.get(service);
        if (!set) this.byService.set(service, (set = new Set()));
        set.add(w);
      },
      (w) => {
        const set = this.byService.get(service);
        set?.delete(w);
        if (set && !set.size) this.byService.delete(service);
      },
      (done) => ({ done }),
      timeoutMs,
      signal,
    );
  }

  /** Shutdown: answer every parked request now. */
  releaseAll(): void {
    for (const set of [...this.byService.values()]) for (const w of [...set]) w.done(false);
  }

  notify(service: string): void {
    const set = this.byService.get(service);
    if (set) for (const w of [...set]) w.done(true);
  }
}
