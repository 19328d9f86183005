// HTTP to one of several gateway replicas. A call that gets no answer moves on to the next
// replica (every write the client sends is idempotent: PUT, heartbeat, DELETE); an answer, even
// an error, ends the call. Writes feed the Session; reads may carry its revision as minRevision.
import { GatewayRefusedError, GatewayUnreachableError } from './errors.ts';
import type { Session } from './session.ts';
import { unref } from './timers.ts';
import { dispatcherTrusting } from './tls.ts';

/** Query parameters; an array repeats the parameter. */
export type Query = Record<string, string | readonly string[] | undefined>;

/** One call's options. */
export interface CallOptions {
  readonly query?: Query;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  readonly signal?: AbortSignal | undefined;
  /** Send the session's revision as `minRevision` (read-your-writes). */
  readonly readYourWrites?: boolean;
}

/** A gateway's answer: 2xx or 304. */
export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  /** The parsed JSON body; undefined for an empty body or a 304. */
  readonly body: unknown;
}

/** Where and how to call: the replicas, the token, the deadline, the session writes feed. */
export interface TransportOptions {
  readonly gateways: readonly string[];
  readonly token: string | undefined;
  readonly timeoutMs: number;
  readonly session: Session;
  /** PEM certificates to trust instead of the default CAs (Node only). */
  readonly ca?: string | readonly string[] | undefined;
}

/** Calls to the gateway replicas, failing over to the next one on no answer. */
export class Transport {
  readonly #gateways: readonly URL[];
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly session: Session;
  readonly #dispatcher: Promise<object> | undefined;
  /** The replica that answered last: calls start there. */
  #current = 0;

  constructor(options: TransportOptions) {
    if (options.gateways.length === 0) throw new TypeError('at least one gateway URL is needed');
    this.#gateways = options.gateways.map((g) => new URL(g.endsWith('/') ? g : `${g}/`));
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs;
    this.session = options.session;
    this.#dispatcher = options.ca === undefined ? undefined : dispatcherTrusting(options.ca);
    this.#dispatcher?.catch(() => undefined); // reported by the first call
  }

  /** fetch, trusting the configured CA when there is one. */
  readonly fetch = async (url: URL, init: RequestInit): Promise<Response> => {
    const dispatcher = await this.#dispatcher;
    return fetch(url, dispatcher === undefined ? init : ({ ...init, dispatcher } as RequestInit));
  };

  /** How many replica URLs there are. */
  get gatewayCount(): number {
    return this.#gateways.length;
  }

  /** The next call starts at the next replica (the current one answered, but not usefully: a 5xx). */
  failover(): void {
    this.#current = (this.#current + 1) % this.#gateways.length;
  }

  /** The URL of `path` (relative, no leading slash) on replica `index`. */
  url(index: number, path: string, query: Query = {}): URL {
    const url = new URL(path, this.#gateways[index % this.#gateways.length]);
    for (const [key, value] of Object.entries(query)) {
      for (const v of typeof value === 'string' ? [value] : (value ?? [])) url.searchParams.append(key, v);
    }
    return url;
  }

  /** Request headers: JSON, and the bearer token when there is one (never logged). */
  headers(extra: Record<string, string> = {}): Record<string, string> {
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json', ...extra };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    return headers;
  }

  /** One call; answers 2xx and 304, throws GatewayRefusedError for other statuses. */
  async call(method: string, path: string, options: CallOptions = {}): Promise<Answer> {
    const query = { ...options.query };
    if (options.readYourWrites && this.session.revision > 0) query.minRevision = String(this.session.revision);
    const headers = this.headers(options.headers);
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    let lastError: unknown;
    for (let tried = 0; tried < this.#gateways.length; tried++) {
      const index = (this.#current + tried) % this.#gateways.length;
      try {
        const answer = await this.#fetch(method, this.url(index, path, query), headers, options);
        this.#current = index;
        return answer;
      } catch (err) {
        if (!(err instanceof GatewayUnreachableError) || options.signal?.aborted) throw err;
        lastError = err;
      }
    }
    throw lastError;
  }

  async #fetch(method: string, url: URL, headers: Record<string, string>, options: CallOptions): Promise<Answer> {
    const deadline = withTimeout(options.signal, this.#timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await this.fetch(url, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: deadline.signal,
      });
      text = await response.text();
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw new GatewayUnreachableError(describeNetworkError(err, deadline.timedOut(), this.#timeoutMs), { cause: err });
    } finally {
      deadline.dispose();
    }
    const body = parseJson(text);
    if (response.status === 304 || response.ok) {
      const revision = Number(response.headers.get('x-registry-revision'));
      if (response.ok && method !== 'GET' && method !== 'HEAD') this.session.observe(revision);
      return { status: response.status, headers: response.headers, body };
    }
    const problem = (body ?? {}) as { code?: unknown; detail?: unknown; title?: unknown };
    const detail = typeof problem.detail === 'string' ? problem.detail : typeof problem.title === 'string' ? problem.title : '';
    throw new GatewayRefusedError(response.status, typeof problem.code === 'string' ? problem.code : undefined, detail);
  }
}

/** An AbortSignal that fires on the caller's abort or after `ms`; dispose() clears its timer. */
export function withTimeout(signal: AbortSignal | undefined, ms: number): { signal: AbortSignal; timedOut(): boolean; dispose(): void } {
  const controller = new AbortController();
  let timedOut = false;
  const onAbort = () => controller.abort(signal?.reason);
  const timer = unref(
    setTimeout(() => {
      timedOut = true;
      controller.abort(new Error(`no answer within ${ms / 1000} s`));
    }, ms),
  );
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    dispose: () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    },
  };
}

/** The JSON in `text`, or undefined for an empty or unreadable body. */
export function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Why fetch got no answer: fetch's own message is a bare "fetch failed"; the useful part (ECONNREFUSED, ENOTFOUND…) is in the cause. */
export function describeNetworkError(err: unknown, timedOut: boolean, timeoutMs: number): string {
  if (timedOut) return `no answer within ${timeoutMs / 1000} s`;
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return err instanceof Error ? err.message : String(err);
}
