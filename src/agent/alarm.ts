// The agent's two timing tools. Each owns at most one timer and clears it when it is done,
// so an agent that has stopped holds no timer and its process can exit.

/**
 * A wakeable sleep for one waiter at a time: `wait(ms)` resolves after `ms` (never for Infinity)
 * or as soon as `wake()` is called, whichever comes first. A wake() with no waiter is kept
 * and ends the next wait() at once, so a wake that races a request in flight is never lost.
 */
export class Alarm {
  #timer: NodeJS.Timeout | undefined;
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
      if (Number.isFinite(ms)) this.#timer = setTimeout(() => this.#ring(), Math.max(0, ms));
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
