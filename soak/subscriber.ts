// A change-stream subscriber that behaves as a browser's EventSource: it keeps
// the last event id, and when its stream ends or breaks it waits the `retry:`
// the gateway asked for and reconnects to a random replica with Last-Event-ID.
// It keeps compact records (no event bodies) so hundreds can run for an hour.
import http from 'node:http';
import { now } from './http.ts';
import { digestOf, type Connection, type Scope, type SubscriberLog } from './observations.ts';
import type { Random } from './random.ts';

export class Subscriber {
  readonly log: SubscriberLog;
  private lastEventId = '';
  private req: http.ClientRequest | undefined;
  private retryMs = 3000;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private leaveTimer: NodeJS.Timeout | undefined;

  constructor(
    name: string,
    path: string,
    scope: Scope,
    private readonly replicas: () => string[],
    private readonly random: Random,
    /** Mean seconds between voluntary moves to another replica (0: never). */
    private moveEverySeconds: number,
  ) {
    this.log = { name, path, scope, connections: [] };
  }

  /** The highest revision this subscriber has seen (snapshot, change or progress). */
  get position(): number {
    return Number(this.lastEventId || 0);
  }

  /** No more voluntary moves (the run's quiet phase); reconnects after a broken stream go on. */
  stay(): void {
    this.moveEverySeconds = 0;
    clearTimeout(this.leaveTimer);
  }

  start(): void {
    this.connect();
  }

  private connect(): void {
    if (this.stopped) return;
    const bases = this.replicas();
    const replica = this.random.int(0, bases.length - 1);
    const conn: Connection = { replica, lastEventId: this.lastEventId, openedAt: now(), status: 0, items: [] };
    this.log.connections.push(conn);
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (this.lastEventId) headers['last-event-id'] = this.lastEventId;
    const again = () => this.again(conn);
    const req = http.get(bases[replica] + this.log.path, { agent: false, headers }, (res) => {
      conn.status = res.statusCode ?? 0;
      if (conn.status !== 200) {
        res.resume();
        res.on('end', again);
        return;
      }
      this.scheduleMove(conn);
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        // Search only the new text for a frame end: a large snapshot comes in many chunks.
        let from = Math.max(0, buf.length - 1);
        buf += chunk;
        let end: number;
        while ((end = buf.indexOf('\n\n', from)) >= 0) {
          this.frame(buf.slice(0, end), conn);
          buf = buf.slice(end + 2);
          from = 0;
        }
      });
      res.on('end', again);
      res.on('error', again);
    });
    req.on('error', again);
    this.req = req;
  }

  /** One event-stream frame (the gateway writes `\n` line ends). */
  private frame(text: string, conn: Connection): void {
    let id: string | undefined;
    let event = 'message';
    const data: string[] = [];
    for (const line of text.split('\n')) {
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
    }
    if (id !== undefined) this.lastEventId = id;
    if (!data.length) return;
    const at = now();
    const body = JSON.parse(data.join('\n')) as Record<string, unknown>;
    if (event === 'snapshot') {
      const services = body.services as Record<string, { id: string; revision: number }[]>;
      const lines: string[] = [];
      for (const [name, list] of Object.entries(services)) for (const i of list) lines.push(`${name}/${i.id}@${i.revision}`);
      conn.items.push({
        kind: 'snapshot',
        revision: Number(body.revision),
        reset: body.reset === true,
        digest: digestOf(lines),
        count: lines.length,
        at,
      });
    } else if (event === 'progress') {
      conn.items.push({ kind: 'progress', revision: Number(body.revision), at });
    } else if (event === 'register' || event === 'update' || event === 'deregister') {
      conn.items.push({
        kind: 'change',
        type: event,
        service: String(body.service),
        id: String(body.id),
        revision: Number(body.revision),
        reason: body.reason as string | undefined,
        at,
      });
    }
  }

  /** The stream of `conn` ended or broke: come back after `retry:` (EventSource's rule). */
  private again(conn: Connection): void {
    if (this.stopped || this.timer || conn !== this.log.connections.at(-1)) return;
    clearTimeout(this.leaveTimer);
    this.req?.destroy();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.connect();
    }, this.retryMs);
  }

  /** Now and then leave on purpose, so resumes across replicas happen all run long. */
  private scheduleMove(conn: Connection): void {
    clearTimeout(this.leaveTimer);
    if (!this.moveEverySeconds) return;
    this.leaveTimer = setTimeout(() => this.again(conn), this.random.between(0.3, 1.7) * this.moveEverySeconds * 1000);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.leaveTimer);
    this.req?.destroy();
  }
}
