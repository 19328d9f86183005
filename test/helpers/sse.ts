// A Server-Sent Events client for tests: a parser that follows the HTML
// spec's event-stream rules (fields id/event/data/retry, comments, CR/LF/CRLF
// line ends, a leading space after the colon stripped, multi-line data, the
// last event id kept across events), a stream opened with fetch, and a
// subscriber that reconnects (to the same or another gateway) with its
// Last-Event-ID, as a browser's EventSource does.
import { EventEmitter, once } from 'node:events';

export interface SseEvent {
  /** The stream's last event id when this event was dispatched ('' if none yet). */
  id: string;
  /** The event type ('message' when the stream named none). */
  event: string;
  data: string;
}

/** Incremental event-stream parser: feed it text, it calls back per event and comment. */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private type = '';
  private sawData = false;
  /** The last event id buffer: kept across events, as the spec says. */
  lastEventId = '';

  constructor(
    private readonly onEvent: (e: SseEvent) => void,
    private readonly onComment: (text: string) => void = () => {},
    private readonly onRetry: (ms: number) => void = () => {},
  ) {}

  feed(text: string): void {
    this.buffer += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) return;
      // A CR at the very end may be the first half of a CRLF split across chunks.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) return;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return this.onComment(line.slice(1).replace(/^ /, ''));
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    switch (field) {
      case 'event':
        this.type = value;
        break;
      case 'data':
        this.data.push(value);
        this.sawData = true;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.onRetry(Number(value));
        break;
      default: // unknown fields are ignored
    }
  }

  private dispatch(): void {
    const type = this.type;
    this.type = '';
    if (!this.sawData) return; // no data field: nothing to dispatch (the id still counts)
    const data = this.data.join('\n');
    this.data = [];
    this.sawData = false;
    this.onEvent({ id: this.lastEventId, event: type || 'message', data });
  }
}

/** When and in which read of the response body an item arrived. */
export interface Arrival {
  /** 1 for the first chunk read from the body, 2 for the next, ... */
  read: number;
  /** performance.now() when it was parsed. */
  at: number;
  /** Position among everything parsed on this stream (retries, comments, events). */
  seq: number;
}

export interface OpenOptions {
  lastEventId?: string;
  headers?: Record<string, string>;
}

/** One SSE connection. `events`/`comments` grow as the stream is read; `ended` resolves when it stops. */
export class SseStream extends EventEmitter {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  retry: number | undefined;
  /** Every retry: value, in order (`retryArrivals` parallel). */
  readonly retries: number[] = [];
  readonly retryArrivals: Arrival[] = [];
  /** arrivals[i]: when events[i] arrived. */
  readonly arrivals: Arrival[] = [];
  /** The body of a non-200 answer (a problem+json). */
  body = '';
  /** Reads from the response body so far. */
  private reads = 0;
  private seq = 0;
  /** nextEvent/waitFor consume events from here. */
  private cursor = 0;
  status = 0;
  headers: Headers | undefined;
  /** Why the stream stopped: 'end' (the server ended it), 'error' (cut), 'closed' (by us). */
  endReason: 'end' | 'error' | 'closed' | undefined;
  readonly ended: Promise<void>;
  private readonly abort = new AbortController();
  private readonly parser: SseParser;
  private markEnded!: () => void;

  constructor(readonly url: string) {
    super();
    this.ended = new Promise((r) => (this.markEnded = r));
    this.parser = new SseParser(
      (e) => {
        this.events.push(e);
        this.arrivals.push(this.arrival());
        this.emit('change');
      },
      (c) => {
        this.comments.push(c);
        this.emit('change');
      },
      (ms) => {
        this.retry = ms;
        this.retries.push(ms);
        this.retryArrivals.push(this.arrival());
        this.emit('change');
      },
    );
  }

  get lastEventId(): string {
    return this.parser.lastEventId;
  }

  private arrival(): Arrival {
    return { read: this.reads, at: performance.now(), seq: this.seq++ };
  }

  /** When `e` (one of `events`) arrived. */
  arrivalOf(e: SseEvent): Arrival {
    const i = this.events.indexOf(e);
    if (i < 0) throw new Error('not an event of this stream');
    return this.arrivals[i]!;
  }

  /** The next event not yet consumed by nextEvent/waitFor; rejects after `ms` or when the stream ends first. */
  async nextEvent(ms = 5000, what = 'the next event'): Promise<SseEvent> {
    return this.waitFor(() => true, ms, what);
  }

  /**
   * The first not yet consumed event for which `pred` holds; it and the events
   * before it are consumed. Rejects after `ms`, or when the stream ends first.
   */
  async waitFor(pred: (e: SseEvent) => boolean, ms = 5000, what = 'a matching event'): Promise<SseEvent> {
    let found: SseEvent | undefined;
    const scan = () => {
      for (; !found && this.cursor < this.events.length; this.cursor++)
        if (pred(this.events[this.cursor]!)) found = this.events[this.cursor]!;
      return found !== undefined || !this.isOpen;
    };
    await waitOn(this, what, scan, ms);
    if (!found) throw new Error(`stream ended (${this.endReason}) before ${what}`);
    return found;
  }

  /** Connect; resolves once the response headers arrived (reading goes on in the background). */
  async connect(opts: OpenOptions = {}): Promise<this> {
    const headers: Record<string, string> = { accept: 'text/event-stream', ...opts.headers };
    if (opts.lastEventId) {
      headers['last-event-id'] = opts.lastEventId;
      this.parser.lastEventId = opts.lastEventId;
    }
    let res: Response;
    try {
      res = await fetch(this.url, { headers, signal: this.abort.signal });
    } catch (err) {
      this.finish('error');
      throw err;
    }
    this.status = res.status;
    this.headers = res.headers;
    if (res.status !== 200 || !res.body) {
      this.body = await res.text().catch(() => '');
      this.finish('end');
      return this;
    }
    void this.read(res.body);
    return this;
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return this.finish('end');
        this.reads++;
        this.parser.feed(decoder.decode(value, { stream: true }));
      }
    } catch {
      this.finish(this.abort.signal.aborted ? 'closed' : 'error');
    }
  }

  private finish(reason: 'end' | 'error' | 'closed'): void {
    if (this.endReason) return;
    this.endReason = reason;
    this.markEnded();
    this.emit('change');
    this.emit('ended');
  }

  get isOpen(): boolean {
    return this.endReason === undefined;
  }

  /** Resolves once `pred` holds, re-checked on every event, comment and end; rejects after `ms`. */
  until(what: string, pred: () => boolean, ms = 5000): Promise<void> {
    return waitOn(this, what, pred, ms);
  }

  close(): void {
    if (this.endReason) return;
    this.abort.abort();
    this.finish('closed');
  }
}

/** Open one stream and wait for its response headers. */
export function openSse(url: string, opts: OpenOptions = {}): Promise<SseStream> {
  return new SseStream(url).connect(opts);
}

/** Waits on an emitter's 'change' events for `pred`, with a ref'd timer (node:test must not see an idle loop). */
async function waitOn(ee: EventEmitter, what: string, pred: () => boolean, ms: number): Promise<void> {
  if (pred()) return;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    while (!pred()) await once(ee, 'change', { signal: ac.signal });
  } catch {
    if (pred()) return;
    throw new Error(`timed out after ${ms} ms waiting for ${what}`);
  } finally {
    clearTimeout(timer);
  }
}

/** A parsed change event of the gateway (register/update/deregister). */
export interface ChangeEvent {
  id: number;
  type: 'register' | 'update' | 'deregister';
  service: string;
  instanceId: string;
  revision: number;
  data: Record<string, unknown>;
}

export const CHANGE_TYPES = new Set(['register', 'update', 'deregister']);

export function toChange(e: SseEvent): ChangeEvent | undefined {
  if (!CHANGE_TYPES.has(e.event)) return undefined;
  const data = JSON.parse(e.data) as { service: string; id: string; revision: number };
  return {
    id: Number(e.id),
    type: e.event as ChangeEvent['type'],
    service: data.service,
    instanceId: data.id,
    revision: data.revision,
    data,
  };
}

/**
 * A subscriber that survives its gateway: when a stream ends or is cut it
 * reconnects (to the next base in `bases`, round robin, or to the one named by
 * `moveTo`) with the last event id it saw, after `reconnectDelayMs` (in place
 * of the `retry:` the gateway asks for, to keep tests short). Every event of
 * every connection lands in `events`, in arrival order.
 */
export class ResumingSubscriber extends EventEmitter {
  readonly events: SseEvent[] = [];
  /** One entry per connection: the base it went to and the id it resumed from. */
  readonly connections: { base: string; lastEventId: string; status: number }[] = [];
  private current: SseStream | undefined;
  private next = 0;
  private stopped = false;
  private lastId = '';
  private loop: Promise<void> | undefined;
  private forced: string | undefined;
  private gate: Promise<void> | undefined;

  constructor(
    private readonly bases: string[],
    private readonly path: string,
    private readonly opts: { reconnectDelayMs?: number; headers?: Record<string, string> } = {},
  ) {
    super();
  }

  get lastEventId(): string {
    return this.lastId;
  }

  /** Change events only (snapshots, progress events and comments left out). */
  changes(): ChangeEvent[] {
    return this.events.map(toChange).filter((c): c is ChangeEvent => c !== undefined);
  }

  /** Snapshot events after the first one: each means the gateway could not resume the stream. */
  resets(): SseEvent[] {
    return this.events.filter((e, i) => e.event === 'snapshot' && (i > 0 || (JSON.parse(e.data) as { reset?: boolean }).reset));
  }

  /** Resolves once the first connection answered. */
  async start(): Promise<void> {
    await this.connectOnce();
    this.loop = this.run();
  }

  /**
   * Leave the current gateway, run `whileAway` (changes made then must not be
   * lost), and resume on `base`; resolves once the new connection answered.
   */
  async moveTo(base: string, whileAway?: () => Promise<void>): Promise<void> {
    const before = this.connections.length;
    this.forced = base;
    let release!: () => void;
    this.gate = new Promise<void>((r) => (release = r));
    this.current?.close();
    try {
      await whileAway?.();
    } finally {
      this.gate = undefined;
      release();
    }
    await this.until(`a connection to ${base}`, () => this.connections.length > before);
  }

  private async connectOnce(): Promise<SseStream> {
    const base = this.forced ?? this.bases[this.next++ % this.bases.length]!;
    this.forced = undefined;
    const s = new SseStream(base + this.path);
    this.current = s;
    const seen = { count: 0 };
    s.on('change', () => {
      while (seen.count < s.events.length) {
        const e = s.events[seen.count++]!;
        this.events.push(e);
        this.lastId = e.id;
      }
      this.emit('change');
    });
    try {
      await s.connect({ lastEventId: this.lastId || undefined, headers: this.opts.headers });
    } catch {
      // connection refused: the loop tries the next base
    }
    this.connections.push({ base, lastEventId: this.lastId, status: s.status });
    this.emit('change');
    return s;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await this.current!.ended;
      await this.gate;
      if (this.stopped) return;
      if (!this.forced) await new Promise((r) => setTimeout(r, this.opts.reconnectDelayMs ?? 200));
      if (this.stopped) return;
      await this.connectOnce();
    }
  }

  until(what: string, pred: () => boolean, ms = 5000): Promise<void> {
    return waitOn(this, what, pred, ms);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.close();
    await this.loop;
  }
}

/** Change events of a stream, as comparable values (id, type and the whole data). */
export function changes(s: SseStream): { id: string; event: string; data: Record<string, unknown> }[] {
  return s.events
    .filter((e) => CHANGE_TYPES.has(e.event))
    .map((e) => ({ id: e.id, event: e.event, data: JSON.parse(e.data) as Record<string, unknown> }));
}

export async function changesAtLeast(s: SseStream, n: number, ms = 10_000): Promise<ReturnType<typeof changes>> {
  await s.until(`${n} change events on ${s.url}`, () => changes(s).length >= n, ms);
  return changes(s);
}

/** Streams a test group opens (each must answer 200), all closed at once by closeAll(). */
export function streamGroup(): {
  streams: SseStream[];
  open(gw: { base: string }, path: string, lastEventId?: string): Promise<SseStream>;
  closeAll(): void;
} {
  const streams: SseStream[] = [];
  return {
    streams,
    async open(gw, path, lastEventId) {
      const s = await openSse(gw.base + path, { lastEventId });
      streams.push(s);
      if (s.status !== 200) throw new Error(`${path} answered ${s.status}: ${s.body}`);
      return s;
    },
    closeAll: () => streams.forEach((s) => s.close()),
  };
}
