// A registration kept alive (API.md "Registration"): register, heartbeat at the interval the
// gateway answers (else a third of the TTL), register again after a 404, retry with backoff on
// 5xx and network errors, and on close() set status `draining`, then DELETE. One loop owns the
// time: it waits on one Alarm, woken by a status change or by close(). While the gateway is
// away, retries are paced by the TTL left, so that a restart shorter than the TTL never lets the
// instance expire; a 400, 401 or 403 stops the registration (no retry can fix it).
import { GatewayRefusedError } from './errors.ts';
import type { Transport } from './transport.ts';
import { Alarm, Backoff } from './timers.ts';
import type { HeartbeatAnswer, Instance, InstanceRegistration, InstanceStatus, RegisteredInstance } from './types.ts';

/** Where a registration stands. */
export type RegistrationState = 'registering' | 'registered' | 'unreachable' | 'refused' | 'closed';

/** What happened to a registration, one event per change (the agent logs one line per event). */
export type RegistrationEvent =
  | { readonly type: 'registered'; readonly instance: Instance; /** true after a 404: the gateway had lost it */ readonly again: boolean }
  | { readonly type: 'status'; readonly from: InstanceStatus; readonly to: InstanceStatus }
  /** The first failed call in a row (5xx or no answer); retried with backoff. */
  | { readonly type: 'unreachable'; readonly error: Error }
  | { readonly type: 'reachable' }
  /** 400, 401 or 403 to the registration or a heartbeat: no retry can fix it; the registration stops. */
  | { readonly type: 'refused'; readonly error: GatewayRefusedError; readonly during: 'register' | 'heartbeat' }
  | { readonly type: 'draining-failed'; readonly error: Error }
  /** `known` is false when the gateway no longer had it; `inDoubt` when it may never have landed. */
  | { readonly type: 'deregistered'; readonly known: boolean; readonly inDoubt: boolean }
  | { readonly type: 'deregister-failed'; readonly error: Error; readonly ttl: number };

/** Options of `client.register()`. */
export interface RegistrationOptions {
  /** Called once per event, synchronously; an exception it throws is ignored. */
  readonly onEvent?: (event: RegistrationEvent) => void;
  /** Closes the registration and abandons calls in flight, without deregistering (the TTL ends it). */
  readonly signal?: AbortSignal;
  /** First retry delay after a 5xx or no answer (default 500 ms), doubling… */
  readonly backoffMinMs?: number;
  /** …up to this (default 5 s), and never past a quarter of the TTL the instance has left. */
  readonly backoffMaxMs?: number;
}

/** Options of `Registration.close()`. */
export interface CloseOptions {
  /** Send status `draining` before the DELETE (default true). */
  readonly drain?: boolean;
  /** How long the DELETE is retried before giving up (default 5 s; the TTL then ends it). */
  readonly deadlineMs?: number;
}

/** Answers that no retry can fix. */
const FATAL_STATUS = new Set([400, 401, 403]);

/** The shortest wait between retries while the instance's TTL runs out. */
const MIN_RETRY_MS = 100;

/** A registration kept alive until close(); create it with `client.register()`. */
export class Registration {
  /** The service the instance belongs to. */
  readonly service: string;
  /** The instance id (default `{address}:{port}`). */
  readonly id: string;
  readonly #transport: Transport;
  readonly #body: Omit<InstanceRegistration, 'service' | 'id'>;
  readonly #onEvent: (event: RegistrationEvent) => void;
  readonly #signal: AbortSignal | undefined;
  readonly #backoff: Backoff;
  readonly #backoffLimits: readonly [number, number];
  readonly #alarm = new Alarm();
  readonly #loop: Promise<void>;
  readonly #firstRegistration: Promise<Instance>;
  #settleFirst: { resolve(instance: Instance): void; reject(err: Error): void } | undefined;

  #state: RegistrationState = 'registering';
  #stopping = false;
  #instance: Instance | undefined;
  #wantedStatus: InstanceStatus;
  #gatewayStatus: InstanceStatus;
  #grantedTtl: number;
  /** When the gateway's store will expire the instance unless a heartbeat lands (ms since epoch; Infinity: never). */
  #expiresAt = Infinity;
  /** The gateway holds the instance, as far as the client knows (false again after a 404). */
  #registered = false;
  #troubled = false;
  /** A registration got no answer: it may have landed, so close() deletes it to be sure. */
  #inDoubt = false;
  #closing: Promise<boolean> | undefined;

  /** Starts registering at once; use `client.register()`. */
  constructor(transport: Transport, instance: InstanceRegistration, options: RegistrationOptions = {}) {
    const { service, id, ...body } = instance;
    this.service = service;
    this.id = id ?? `${instance.address}:${instance.port}`;
    this.#transport = transport;
    this.#body = body;
    this.#onEvent = options.onEvent ?? (() => undefined);
    this.#signal = options.signal;
    this.#backoffLimits = [options.backoffMinMs ?? 500, options.backoffMaxMs ?? 5_000];
    this.#backoff = new Backoff(...this.#backoffLimits);
    this.#wantedStatus = body.status ?? 'up';
    this.#gatewayStatus = this.#wantedStatus;
    this.#grantedTtl = body.ttl ?? 30;
    this.#firstRegistration = new Promise<Instance>((resolve, reject) => (this.#settleFirst = { resolve, reject }));
    this.#firstRegistration.catch(() => undefined); // only a caller of registered() hears of it
    // An abort closes without deregistering: close() sees the aborted signal and sends nothing.
    if (this.#signal?.aborted) this.#stopping = true;
    this.#loop = this.#keepRegistered();
    if (this.#signal?.aborted) void this.close();
    else this.#signal?.addEventListener('abort', () => void this.close(), { once: true });
  }

  /** Where the registration stands now. */
  get state(): RegistrationState {
    return this.#state;
  }

  /** The record the gateway answered last (registration), or undefined before the first one. */
  get instance(): Instance | undefined {
    return this.#instance;
  }

  /** The status the gateway holds, as far as the client knows. */
  get status(): InstanceStatus {
    return this.#gatewayStatus;
  }

  /** Resolves with the record once registered; rejects when refused or closed before that. */
  registered(): Promise<Instance> {
    return this.#firstRegistration;
  }

  /** Changes the instance's status with the next heartbeat, sent at once. */
  setStatus(status: InstanceStatus): void {
    this.#wantedStatus = status;
    this.#alarm.wake();
  }

  /**
   * Stops heartbeating, sets status `draining` (unless `drain: false`), deregisters. True when it
   * deregistered the instance; false when there was nothing to deregister or the DELETE kept
   * failing until the deadline (the TTL then ends it).
   */
  close(options: CloseOptions = {}): Promise<boolean> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  async #close(options: CloseOptions): Promise<boolean> {
    this.#stop();
    await this.#loop;
    const mayExist = this.#state !== 'refused' && (this.#registered || this.#inDoubt);
    const drain = (options.drain ?? true) && this.#registered;
    const deregistered = mayExist && !this.#signal?.aborted ? await this.#deregister(drain, options.deadlineMs ?? 5_000) : false;
    this.#setState('closed');
    return deregistered;
  }

  #stop(): void {
    this.#stopping = true;
    this.#alarm.wake();
    this.#settleFirst?.reject(new Error(`registration of ${this.service}/${this.id} closed before it was registered`));
    this.#settleFirst = undefined;
  }

  #emit(event: RegistrationEvent): void {
    try {
      this.#onEvent(event);
    } catch {}
  }

  #setState(state: RegistrationState): void {
    if (this.#state !== 'closed') this.#state = state;
  }

  async #keepRegistered(): Promise<void> {
    while (!this.#stopping) {
      const nextMs = this.#registered ? await this.#heartbeat() : await this.#register();
      if (this.#stopping) return;
      await this.#alarm.wait(nextMs);
    }
  }

  /** One registration attempt; answers the delay before the next step. */
  async #register(): Promise<number> {
    try {
      this.#inDoubt = true;
      const answer = await this.#transport.call('PUT', instancePath(this.service, this.id), {
        body: { ...this.#body, status: this.#wantedStatus },
        signal: this.#signal,
      });
      this.#inDoubt = false;
      const { interval, ...instance } = answer.body as RegisteredInstance;
      const again = this.#instance !== undefined;
      this.#instance = instance;
      this.#registered = true;
      this.#grantedTtl = instance.ttl;
      this.#renewed();
      this.#gatewayStatus = instance.status;
      this.#reachable();
      this.#setState('registered');
      this.#emit({ type: 'registered', instance, again });
      this.#settleFirst?.resolve(instance);
      this.#settleFirst = undefined;
      return this.#heartbeatDelayMs(interval);
    } catch (err) {
      if (err instanceof GatewayRefusedError) {
        this.#inDoubt = false;
        if (FATAL_STATUS.has(err.status)) return this.#refused(err, 'register');
      }
      return this.#unreachable(err);
    }
  }

  /** A refusal no retry can fix: the registration stops (the TTL ends the instance, if it exists). */
  #refused(error: GatewayRefusedError, during: 'register' | 'heartbeat'): number {
    this.#stopping = true;
    this.#setState('refused');
    this.#emit({ type: 'refused', error, during });
    this.#settleFirst?.reject(error);
    this.#settleFirst = undefined;
    return Infinity;
  }

  /** The store's lease was just renewed (or granted) for the whole TTL. */
  #renewed(): void {
    this.#expiresAt = this.#grantedTtl > 0 ? Date.now() + this.#grantedTtl * 1000 : Infinity;
  }

  /** One heartbeat, carrying the status when it changed; answers the delay before the next step (0: register again). */
  async #heartbeat(): Promise<number> {
    const change = this.#wantedStatus !== this.#gatewayStatus ? this.#wantedStatus : undefined;
    // A ttl-0 instance never expires: it hears from us only when its status changes.
    if (this.#grantedTtl === 0 && change === undefined) return Infinity;
    try {
      const answer = await this.#sendHeartbeat(change);
      this.#reachable();
      this.#setState('registered');
      if (change !== undefined) this.#emit({ type: 'status', from: this.#gatewayStatus, to: answer.status });
      this.#gatewayStatus = answer.status;
      if (answer.ttl > 0) this.#grantedTtl = answer.ttl;
      this.#renewed();
      return this.#heartbeatDelayMs(answer.interval);
    } catch (err) {
      if (err instanceof GatewayRefusedError && err.status === 404) {
        this.#registered = false; // expired, or the store forgot it: register again now
        return 0;
      }
      if (err instanceof GatewayRefusedError && FATAL_STATUS.has(err.status)) return this.#refused(err, 'heartbeat');
      return this.#unreachable(err);
    }
  }

  async #sendHeartbeat(status: InstanceStatus | undefined): Promise<HeartbeatAnswer> {
    const answer = await this.#transport.call('PUT', `${instancePath(this.service, this.id)}/heartbeat`, {
      body: status === undefined ? {} : { status },
      signal: this.#signal,
    });
    return answer.body as HeartbeatAnswer;
  }

  #heartbeatDelayMs(intervalSeconds: number | undefined): number {
    if (this.#grantedTtl === 0) return Infinity;
    return (intervalSeconds !== undefined && intervalSeconds > 0 ? intervalSeconds : this.#grantedTtl / 3) * 1000;
  }

  /** The delay before the next try: the backoff, but never past a quarter of the TTL left. */
  #unreachable(err: unknown): number {
    if (!this.#troubled && !this.#signal?.aborted) this.#emit({ type: 'unreachable', error: asError(err) });
    this.#troubled = true;
    this.#setState('unreachable');
    // A replica that answered 5xx (a store outage, a drain) may not be the only one: try the next first.
    if (err instanceof GatewayRefusedError) this.#transport.failover();
    const backoff = this.#backoff.next();
    const left = this.#expiresAt - Date.now();
    return left > 0 ? Math.max(MIN_RETRY_MS, Math.min(backoff, left / 4)) : backoff;
  }

  #reachable(): void {
    if (this.#troubled) this.#emit({ type: 'reachable' });
    this.#troubled = false;
    this.#backoff.reset();
  }

  /** Status `draining` (when asked), then DELETE, retried until the deadline; true if it was done. */
  async #deregister(drain: boolean, deadlineMs: number): Promise<boolean> {
    if (drain && this.#gatewayStatus !== 'draining') {
      try {
        const answer = await this.#sendHeartbeat('draining');
        this.#emit({ type: 'status', from: this.#gatewayStatus, to: answer.status });
        this.#gatewayStatus = answer.status;
      } catch (err) {
        this.#emit({ type: 'draining-failed', error: asError(err) });
      }
    }
    const deadline = Date.now() + deadlineMs;
    const backoff = new Backoff(...this.#backoffLimits);
    const alarm = new Alarm();
    for (;;) {
      try {
        const known = await this.#deregisterOnce();
        this.#registered = false;
        this.#emit({ type: 'deregistered', known, inDoubt: this.#inDoubt });
        return true;
      } catch (err) {
        const delay = backoff.next();
        const hopeless = err instanceof GatewayRefusedError && err.status < 500 && err.status !== 429;
        if (hopeless || Date.now() + delay > deadline) {
          this.#emit({ type: 'deregister-failed', error: asError(err), ttl: this.#grantedTtl });
          return false;
        }
        await alarm.wait(delay);
      }
    }
  }

  /** DELETE; false when the gateway did not know the instance (404). */
  async #deregisterOnce(): Promise<boolean> {
    try {
      await this.#transport.call('DELETE', instancePath(this.service, this.id));
      return true;
    } catch (err) {
      if (err instanceof GatewayRefusedError && err.status === 404) return false;
      throw err;
    }
  }
}

/** The path of one instance, its name and id encoded. */
export function instancePath(service: string, id: string): string {
  return `services/${encodeURIComponent(service)}/instances/${encodeURIComponent(id)}`;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
