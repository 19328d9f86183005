// --check URL: polled every second for as long as the agent runs. A failure is a non-2xx
// answer or none within the timeout. The check reports every result; the agent decides.
import { Alarm } from '../client/timers.ts';

export interface CheckResult {
  readonly ok: boolean;
  /** Why it failed ("HTTP 503", "no answer within 2 s", "ECONNREFUSED"), or "HTTP 200". */
  readonly detail: string;
}

export const CHECK_INTERVAL_MS = 1_000;
export const CHECK_TIMEOUT_MS = 2_000;

export class HealthCheck {
  readonly #url: URL;
  readonly #onResult: (result: CheckResult) => void;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #alarm = new Alarm();
  #inFlight: AbortController | undefined;
  #stopped = false;
  #loop: Promise<void> | undefined;

  constructor(url: URL, onResult: (result: CheckResult) => void, intervalMs = CHECK_INTERVAL_MS, timeoutMs = CHECK_TIMEOUT_MS) {
    this.#url = url;
    this.#onResult = onResult;
    this.#intervalMs = intervalMs;
    this.#timeoutMs = timeoutMs;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Ends the polling and any check in flight; resolves when the loop has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#inFlight?.abort();
    this.#alarm.wake();
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const startedAt = Date.now();
      const result = await this.#probe();
      if (this.#stopped) return;
      this.#onResult(result);
      // Every interval from the start of the previous check; a slow check is followed at once.
      await this.#alarm.wait(this.#intervalMs - (Date.now() - startedAt));
    }
  }

  async #probe(): Promise<CheckResult> {
    const controller = new AbortController();
    this.#inFlight = controller;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.#timeoutMs);
    try {
      const response = await fetch(this.#url, { signal: controller.signal, headers: { 'user-agent': 'discovery-agent' } });
      await response.body?.cancel(); // the status is the answer; free the connection
      return { ok: response.ok, detail: `HTTP ${response.status}` };
    } catch (err) {
      if (timedOut) return { ok: false, detail: `no answer within ${this.#timeoutMs / 1000} s` };
      const cause = (err as { cause?: { code?: unknown } }).cause;
      return { ok: false, detail: typeof cause?.code === 'string' ? cause.code : err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
      this.#inFlight = undefined;
    }
  }
}
