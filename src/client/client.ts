// The client: one object per application, holding the gateway URLs, the token and the
// read-your-writes session. Registrations and watches it creates run on their own; close()
// ends the watches it made for pick().
import { GatewayRefusedError, GatewayUnreachableError } from './errors.ts';
import { filterQuery } from './filters.ts';
import { Registration, instancePath, type RegistrationOptions } from './registration.ts';
import { Session } from './session.ts';
import { Transport, withTimeout } from './transport.ts';
import type { DiscoveryFilters, Instance, InstanceRegistration, ServiceList, ServiceView } from './types.ts';
import { Watch, type WatchOptions } from './watch.ts';

/** Options of `new DiscoveryClient()`. */
export interface ClientOptions {
  /** One gateway URL or several replicas: a call that gets no answer moves on to the next. */
  readonly gateways: string | readonly string[];
  /** Sent as `Authorization: Bearer` when the gateway has tokens configured. */
  readonly token?: string;
  /** Deadline for each call's answer (default 5 s); a change stream's only for its headers. */
  readonly timeoutMs?: number;
  /** Share one Session between clients to read, through any of them, what any of them wrote. */
  readonly session?: Session;
  /**
   * Over HTTPS with a private CA: the CA's certificate(s), PEM text, trusted instead of the
   * default CAs (Node only; e.g. `ca: readFileSync('ca.crt', 'utf8')`).
   */
  readonly ca?: string | readonly string[];
}

/** Options of the discovery reads. */
export interface ReadOptions {
  /** Abandons the read. */
  readonly signal?: AbortSignal;
  /** Read from the store (linearizable), not from the gateway's cache: discover() only (API.md). */
  readonly consistent?: boolean;
}

/** Answers kept for conditional reads (If-None-Match); the oldest is dropped past this many. */
const MAX_CACHED_ANSWERS = 256;

/** A client of the gateway's HTTP API: register, discover, watch, pick. */
export class DiscoveryClient {
  /** The highest revision this client's writes were answered with; its reads wait for it. */
  readonly session: Session;
  readonly #transport: Transport;
  readonly #timeoutMs: number;
  readonly #answers = new Map<string, { etag: string; body: unknown }>();
  readonly #pickWatches = new Map<string, Watch>();

  /** Makes no request until asked. */
  constructor(options: ClientOptions) {
    this.session = options.session ?? new Session();
    this.#timeoutMs = options.timeoutMs ?? 5_000;
    this.#transport = new Transport({
      gateways: typeof options.gateways === 'string' ? [options.gateways] : options.gateways,
      token: options.token,
      timeoutMs: this.#timeoutMs,
      session: this.session,
      ca: options.ca,
    });
  }

  /** Registers the instance and keeps it registered until `close()` on the answer (or its signal). */
  register(instance: InstanceRegistration, options?: RegistrationOptions): Registration {
    return new Registration(this.#transport, instance, options);
  }

  /** The service's instances; an unchanged answer is reused (ETag, 304) and reflects this session's writes. */
  async discover(service: string, filters?: DiscoveryFilters, options: ReadOptions = {}): Promise<ServiceView> {
    const query = { ...filterQuery(filters), ...(options.consistent ? { consistent: 'true' } : {}) };
    return this.#read(`services/${encodeURIComponent(service)}`, query, options.signal);
  }

  /** Every service with its instance count (from the gateway's cache: API.md has no consistent read of the list). */
  async services(options: Pick<ReadOptions, 'signal'> = {}): Promise<ServiceList> {
    return this.#read('services', {}, options.signal);
  }

  /** One instance, or undefined when the gateway does not have it (from the cache, like services()). */
  async instance(service: string, id: string, options: Pick<ReadOptions, 'signal'> = {}): Promise<Instance | undefined> {
    try {
      return await this.#read(instancePath(service, id), {}, options.signal);
    } catch (err) {
      if (err instanceof GatewayRefusedError && err.status === 404) return undefined;
      throw err;
    }
  }

  /** A live view of one service (or of all, or of `options.services`, when `service` is undefined). */
  watch(service?: string, options: WatchOptions = {}): Watch {
    return new Watch(this.#transport, service, options, this.#timeoutMs);
  }

  /**
   * One instance chosen as GET /services/{name}/pick would, answered locally from a watch of the
   * service that the first call starts (and waits for, up to the client's timeout: then
   * GatewayUnreachableError) and close() ends: no request per call.
   */
  async pick(
    service: string,
    filters?: Omit<DiscoveryFilters, 'status'>,
    options: { signal?: AbortSignal } = {},
  ): Promise<Instance | undefined> {
    let watch = this.#pickWatches.get(service);
    if (watch === undefined || watch.error !== undefined) {
      watch = this.watch(service);
      this.#pickWatches.set(service, watch);
    }
    // Like every call, the first one has the client's deadline; the watch keeps trying for later calls.
    const deadline = withTimeout(options.signal, this.#timeoutMs);
    try {
      await abortable(watch.ready(), deadline.signal);
    } catch (err) {
      if (deadline.timedOut())
        throw new GatewayUnreachableError(`no view of ${service} within ${this.#timeoutMs / 1000} s`, { cause: err });
      throw err;
    } finally {
      deadline.dispose();
    }
    return watch.pick(service, filters);
  }

  /** Ends the watches pick() started. Registrations are closed through their own close(). */
  close(): void {
    for (const watch of this.#pickWatches.values()) watch.close();
    this.#pickWatches.clear();
  }

  async #read<T>(path: string, query: Record<string, string | readonly string[]>, signal: AbortSignal | undefined): Promise<T> {
    const key = `${path}?${new URLSearchParams(Object.entries(query).flatMap(([k, v]) => (typeof v === 'string' ? [[k, v]] : v.map((x) => [k, x]))))}`;
    const cached = this.#answers.get(key);
    const answer = await this.#transport.call('GET', path, {
      query,
      signal,
      readYourWrites: true,
      headers: cached === undefined ? {} : { 'if-none-match': cached.etag },
    });
    if (answer.status === 304 && cached !== undefined) return cached.body as T;
    const etag = answer.headers.get('etag');
    this.#answers.delete(key);
    if (etag !== null) {
      this.#answers.set(key, { etag, body: answer.body });
      if (this.#answers.size > MAX_CACHED_ANSWERS) this.#answers.delete(this.#answers.keys().next().value!);
    }
    return answer.body as T;
  }
}

/** `promise`, or a rejection as soon as `signal` aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
