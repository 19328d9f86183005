// Time for the client. Every timer is unref'd (where the runtime has unref, as Node does), so a
// client never keeps a process alive by itself (only a watch being iterated does, see watch.ts),
// and every wait ends early on abort.

/** Resolves after `ms` (never for Infinity), or as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = Number.isFinite(ms) ? unref(setTimeout(done, Math.max(0, ms))) : undefined;
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Lets the process end while this timer is pending (Node); a no-op in browsers. */
export function unref<T>(timer: T): T {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}

/** Retry delays: `minMs`, doubling up to `maxMs`; `reset()` after a success. */
export class Backoff {
  #nextMs: number;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
  ) {
    this.#nextMs = minMs;
  }

  next(): number {
    const delay = this.#nextMs;
    this.#nextMs = Math.min(this.#nextMs * 2, this.maxMs);
    return delay;
  }

  reset(): void {
    this.#nextMs = this.minMs;
  }
}

/**
 * A wakeable sleep for one waiter at a time: `wait(ms)` resolves after `ms` (never for Infinity)
 * or as soon as `wake()` is called, whichever comes first. A wake() with no waiter is kept and
 * ends the next wait() at once, so a wake that races a request in flight is never lost.
 */
export class Alarm {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #resolve: (() => void) | undefined;
  #pending = false;

  wait(ms: number): Promise<void> {
    this.#ring(); // a previous waiter (there should be none) is released, not leaked
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.#resolve = resolve;
      if (Number.isFinite(ms)) this.#timer = unref(setTimeout(() => this.#ring(), Math.max(0, ms)));
    });
  }

  wake(): void {
    if (this.#resolve === undefined) this.#pending = true;
    else this.#ring();
  }

  #ring(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const resolve = this.#resolve;
    this.#resolve = undefined;
    resolve?.();
  }
}
