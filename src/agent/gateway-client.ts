// The agent's side of the gateway's HTTP API (API.md "Registration"): register, heartbeat, deregister.
// Every call ends in a value or in one of two errors: GatewayRefusedError (the gateway answered
// with an error status) or GatewayUnreachableError (no answer: network error or timeout).

export type InstanceStatus = 'up' | 'draining' | 'down';

export interface Registration {
  readonly address: string;
  readonly port: number;
  readonly ttl: number;
  readonly tags: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly weight?: number;
  readonly status: InstanceStatus;
}

/** The parts of the gateway's instance record the agent reads. */
export interface RegisteredInstance {
  readonly ttl: number;
  readonly status: InstanceStatus;
}

export interface HeartbeatAnswer {
  readonly ttl: number;
  readonly status: InstanceStatus;
  /** Seconds until the next heartbeat, as the gateway suggests; absent for ttl 0. */
  readonly interval: number | undefined;
}

/** The gateway answered with an error status (problem+json when it is the gateway). */
export class GatewayRefusedError extends Error {
  override readonly name = 'GatewayRefusedError';
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    detail: string,
  ) {
    super(`HTTP ${status}${code === undefined ? '' : ` ${code}`}${detail === '' ? '' : `: ${detail}`}`);
  }
}

/** No answer: connection refused or reset, DNS failure, or no answer within the timeout. */
export class GatewayUnreachableError extends Error {
  override readonly name = 'GatewayUnreachableError';
}

export const REQUEST_TIMEOUT_MS = 5_000;

export class GatewayClient {
  readonly #base: URL;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;

  /** `base` ends in `/`; the token is sent as `Authorization: Bearer` and never logged. */
  constructor(base: URL, token: string | undefined, timeoutMs = REQUEST_TIMEOUT_MS) {
    this.#base = base;
    this.#token = token;
    this.#timeoutMs = timeoutMs;
  }

  async register(service: string, id: string, registration: Registration): Promise<RegisteredInstance> {
    const body = await this.#request('PUT', instancePath(service, id), registration);
    const record = body as Partial<RegisteredInstance> | undefined;
    return { ttl: typeof record?.ttl === 'number' ? record.ttl : registration.ttl, status: record?.status ?? registration.status };
  }

  /** Renews the instance's TTL, and changes its status when `status` is given. */
  async heartbeat(service: string, id: string, status?: InstanceStatus): Promise<HeartbeatAnswer> {
    const body = (await this.#request('PUT', `${instancePath(service, id)}/heartbeat`, status === undefined ? {} : { status })) as
      { ttl?: unknown; status?: unknown; interval?: unknown } | undefined;
    return {
      ttl: typeof body?.ttl === 'number' ? body.ttl : 0,
      status: isStatus(body?.status) ? body.status : (status ?? 'up'),
      interval: typeof body?.interval === 'number' && body.interval > 0 ? body.interval : undefined,
    };
  }

  /** Deletes the instance; false when the gateway did not know it (404). */
  async deregister(service: string, id: string): Promise<boolean> {
    try {
      await this.#request('DELETE', instancePath(service, id), undefined);
      return true;
    } catch (err) {
      if (err instanceof GatewayRefusedError && err.status === 404) return false;
      throw err;
    }
  }

  async #request(method: string, path: string, body: unknown): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    const url = new URL(path, this.#base);

    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.#timeoutMs);
    try {
      let response: Response;
      let text: string;
      try {
        response = await fetch(url, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: timeout.signal,
        });
        text = await response.text();
      } catch (err) {
        throw new GatewayUnreachableError(describeNetworkError(err, timeout.signal.aborted, this.#timeoutMs), { cause: err });
      }
      const parsed = parseJson(text);
      if (response.ok) return parsed;
      const problem = (parsed ?? {}) as { code?: unknown; detail?: unknown; title?: unknown };
      const detail = typeof problem.detail === 'string' ? problem.detail : typeof problem.title === 'string' ? problem.title : '';
      throw new GatewayRefusedError(response.status, typeof problem.code === 'string' ? problem.code : undefined, detail);
    } finally {
      clearTimeout(timer);
    }
  }
}

function instancePath(service: string, id: string): string {
  return `services/${encodeURIComponent(service)}/instances/${encodeURIComponent(id)}`;
}

function isStatus(value: unknown): value is InstanceStatus {
  return value === 'up' || value === 'draining' || value === 'down';
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

// fetch's own message is a bare "fetch failed"; the useful part (ECONNREFUSED, ENOTFOUND…) is in the cause.
function describeNetworkError(err: unknown, timedOut: boolean, timeoutMs: number): string {
  if (timedOut) return `no answer within ${timeoutMs / 1000} s`;
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return err instanceof Error ? err.message : String(err);
}
