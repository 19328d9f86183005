// A live view of services, fed by one change stream (API.md "Change events"). The contract:
// `revision` is the id of the last event applied (a snapshot's, a change's or a progress
// event's); when the stream breaks, the watch reconnects, to the next gateway URL, with
// Last-Event-ID = revision, and the gateway replays every change after it, none twice, none
// missing (ids are store revisions, the same on every replica). When the gateway can no longer
// replay (compaction) it sends a snapshot with `reset: true`, which replaces the view.
import type { EventSourceMessage } from 'eventsource-parser';
import { GatewayRefusedError } from './errors.ts';
import { pickWeighted, matches } from './filters.ts';
import { openStream, readEvents } from './stream.ts';
import { Backoff, sleep } from './timers.ts';
import { parseJson, type Transport } from './transport.ts';
import type { DiscoveryFilters, Instance } from './types.ts';

/** What the watch saw, in order. */
export type WatchEvent =
  | {
      readonly type: 'snapshot';
      readonly revision: number;
      /** true when the gateway could not replay the changes since the last revision: the view was replaced. */
      readonly reset: boolean;
      readonly services: Readonly<Record<string, readonly Instance[]>>;
    }
  | {
      readonly type: 'register' | 'update' | 'deregister';
      readonly service: string;
      readonly id: string;
      readonly revision: number;
      /** The new record; for `deregister` the last one known, or absent. */
      readonly instance?: Instance;
      /** For `deregister`: `deregistered` (through the API) or `expired` (TTL ran out). */
      readonly reason?: 'deregistered' | 'expired';
    };

/** Options of `client.watch()`. */
export interface WatchOptions {
  /** With no service: only these services (all the token may read when absent). */
  readonly services?: readonly string[];
  /** Resume after this revision instead of starting with a snapshot. */
  readonly after?: number;
  /** Ends the watch: iterators finish, the stream closes, no timer is left. */
  readonly signal?: AbortSignal;
  /** First retry delay (default 500 ms), doubling… */
  readonly backoffMinMs?: number;
  /** …up to this (default 5 s). */
  readonly backoffMaxMs?: number;
  /** Deadline for a gateway to answer a stream's headers (default the client's timeout). */
  readonly timeoutMs?: number;
}

const CHANGE_TYPES = new Set(['register', 'update', 'deregister']);

/** A live view of one service or of all, always current; iterate it for the events. Create it with `client.watch()`. */
export class Watch implements AsyncIterable<WatchEvent> {
  readonly #transport: Transport;
  readonly #path: string;
  readonly #query: Record<string, readonly string[]>;
  readonly #abort = new AbortController();
  readonly #backoff: Backoff;
  readonly #timeoutMs: number;
  readonly #view = new Map<string, Map<string, Instance>>();
  readonly #queues = new Set<EventQueue>();
  readonly #listeners = new Set<(event: WatchEvent) => void>();
  readonly #ready: Promise<void>;
  #settleReady: { resolve(): void; reject(err: Error): void } | undefined;
  #revision: number;
  #error: Error | undefined;
  #gateway = 0;
  /** Held while someone iterates: the client's own timers are unref'd, and between two connections nothing else keeps Node running. */
  #keepAlive: ReturnType<typeof setInterval> | undefined;

  /** Connects at once; use `client.watch()`. */
  constructor(transport: Transport, service: string | undefined, options: WatchOptions, timeoutMs: number) {
    this.#transport = transport;
    this.#path = service === undefined ? 'events' : `services/${encodeURIComponent(service)}/events`;
    this.#query = service === undefined && options.services !== undefined ? { service: options.services } : {};
    this.#revision = options.after ?? 0;
    this.#backoff = new Backoff(options.backoffMinMs ?? 500, options.backoffMaxMs ?? 5_000);
    this.#timeoutMs = options.timeoutMs ?? timeoutMs;
    this.#ready = new Promise<void>((resolve, reject) => (this.#settleReady = { resolve, reject }));
    this.#ready.catch(() => undefined); // only a caller of ready() hears of it
    if (options.signal?.aborted) this.close();
    else options.signal?.addEventListener('abort', () => this.close(), { once: true, signal: this.#abort.signal });
    void this.#follow();
  }

  /** The id of the last event applied: resume after it. */
  get revision(): number {
    return this.#revision;
  }

  /** Why the watch stopped for good (a 400, 401, 403 or 404 answer), if it did. */
  get error(): Error | undefined {
    return this.#error;
  }

  /**
   * Resolves once the view holds the first snapshot, or, for a watch resumed with `after`, once
   * the stream is open; rejects if the watch stops for good before.
   */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** The service's instances as of `revision`, sorted by id, optionally filtered. */
  instances(service: string, filters?: DiscoveryFilters): Instance[] {
    const instances = [...(this.#view.get(service)?.values() ?? [])].filter((i) => matches(i, filters));
    return instances.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Names of the services with instances in the view, sorted. */
  services(): string[] {
    return [...this.#view.keys()].sort();
  }

  /** One instance chosen locally as GET /services/{name}/pick would: weighted, status up, weight > 0; no request. */
  pick(service: string, filters?: Omit<DiscoveryFilters, 'status'>): Instance | undefined {
    return pickWeighted(this.#view.get(service)?.values() ?? [], filters);
  }

  /** Calls `listener` after each event is applied to the view; returns the function that stops it. */
  onChange(listener: (event: WatchEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The events from now on, buffered until read; ends when the watch closes, throws if it stopped
   * on an error. While an iteration runs, the watch keeps a Node process alive, through failover
   * and reconnects. Leaving the last iteration early (`break`, `return`) closes the watch, as
   * leaving a stream's iteration ends the stream, so the process can exit.
   */
  [Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    const queue = new EventQueue(() => {
      this.#queues.delete(queue);
      if (this.#queues.size === 0) this.close();
    });
    if (this.#abort.signal.aborted) queue.end(this.#error);
    else this.#queues.add(queue);
    this.#holdProcess();
    return queue;
  }

  /** Closes the stream and ends every iterator. */
  close(): void {
    this.#stop(undefined);
  }

  #stop(error: Error | undefined): void {
    if (this.#abort.signal.aborted) return;
    this.#error = error;
    this.#abort.abort();
    this.#settleReady?.reject(error ?? new Error('watch closed'));
    for (const queue of this.#queues) queue.end(error);
    this.#queues.clear();
    this.#holdProcess();
  }

  /** Keeps the process alive exactly while an iteration runs (a no-op timer, never fired). */
  #holdProcess(): void {
    if (this.#queues.size > 0) this.#keepAlive ??= setInterval(() => undefined, 2 ** 30);
    else {
      clearInterval(this.#keepAlive);
      this.#keepAlive = undefined;
    }
  }

  /** Connect, apply events until the stream ends or breaks, move to the next gateway, resume; until closed. */
  async #follow(): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      try {
        const headers = this.#transport.headers(this.#revision > 0 ? { 'last-event-id': String(this.#revision) } : {});
        const url = this.#transport.url(this.#gateway, this.#path, this.#query);
        const response = await openStream(this.#transport.fetch, url, headers, signal, this.#timeoutMs);
        if (this.#revision > 0) this.#settleReady?.resolve(); // resumed: no snapshot comes, only what changed since
        for await (const batch of readEvents(response, signal)) {
          for (const message of batch) this.#apply(message);
          this.#backoff.reset();
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof GatewayRefusedError && [400, 401, 403, 404].includes(err.status)) return this.#stop(err);
      }
      this.#gateway = (this.#gateway + 1) % this.#transport.gatewayCount;
      await sleep(this.#backoff.next(), signal);
    }
  }

  #apply(message: EventSourceMessage): void {
    const data = parseJson(message.data);
    if (data === undefined) return;
    if (message.event === 'snapshot') {
      const snapshot = data as { revision: number; reset?: boolean; services: Record<string, Instance[]> };
      this.#view.clear();
      for (const [service, instances] of Object.entries(snapshot.services)) {
        if (instances.length > 0) this.#view.set(service, new Map(instances.map((i) => [i.id, i])));
      }
      this.#revision = snapshot.revision;
      this.#publish({ type: 'snapshot', revision: snapshot.revision, reset: snapshot.reset === true, services: snapshot.services });
    } else if (message.event === 'progress') {
      this.#revision = Math.max(this.#revision, (data as { revision: number }).revision);
    } else if (message.event !== undefined && CHANGE_TYPES.has(message.event)) {
      const change = data as Exclude<WatchEvent, { type: 'snapshot' }>;
      const instances = this.#view.get(change.service) ?? new Map<string, Instance>();
      if (change.type === 'deregister') instances.delete(change.id);
      else if (change.instance !== undefined) instances.set(change.id, change.instance);
      if (instances.size > 0) this.#view.set(change.service, instances);
      else this.#view.delete(change.service);
      this.#revision = change.revision;
      this.#publish(change);
    }
  }

  #publish(event: WatchEvent): void {
    this.#settleReady?.resolve();
    for (const queue of this.#queues) queue.push(event);
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {}
    }
  }
}

/** One iterator's events: pushed by the watch, pulled by the reader. */
class EventQueue implements AsyncIterator<WatchEvent> {
  readonly #events: WatchEvent[] = [];
  readonly #onReturn: () => void;
  #waiting: { resolve(result: IteratorResult<WatchEvent>): void; reject(err: Error): void } | undefined;
  #ended = false;
  #error: Error | undefined;

  constructor(onReturn: () => void) {
    this.#onReturn = onReturn;
  }

  push(event: WatchEvent): void {
    if (this.#waiting === undefined) this.#events.push(event);
    else this.#take().resolve({ value: event, done: false });
  }

  end(error: Error | undefined): void {
    this.#ended = true;
    this.#error = error;
    if (this.#waiting === undefined) return;
    if (error === undefined) this.#take().resolve({ value: undefined, done: true });
    else this.#take().reject(error);
  }

  next(): Promise<IteratorResult<WatchEvent>> {
    const event = this.#events.shift();
    if (event !== undefined) return Promise.resolve({ value: event, done: false });
    if (this.#ended) {
      const error = this.#error;
      this.#error = undefined; // thrown once; then done
      return error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error);
    }
    return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
  }

  return(): Promise<IteratorResult<WatchEvent>> {
    this.#ended = true;
    this.#events.length = 0;
    this.#onReturn();
    return Promise.resolve({ value: undefined, done: true });
  }

  #take(): { resolve(result: IteratorResult<WatchEvent>): void; reject(err: Error): void } {
    const waiting = this.#waiting!;
    this.#waiting = undefined;
    return waiting;
  }
}
