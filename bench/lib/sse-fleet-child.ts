// A child process holding thousands of change streams for the fleet scenarios,
// on raw HTTP/1.1 sockets with a minimal chunked-body and SSE line parser: no
// http.ClientRequest or EventSource per stream, so one child holds ~2,000 of
// them cheaply and the bench process's event loop times nothing. Data lines are
// only counted (their JSON is never parsed) unless a group asks to keep the
// snapshot. Protocol over IPC (lib/sse-fleet.ts is the other side):
//   parent -> { type: 'open', group, port, paths, ... }   open one stream per path
//   child  -> { type: 'opened', group, ok, failed }        every stream of the group got its first snapshot (or failed)
//   parent -> { type: 'status', want }                     want: path -> revision a stream must have received
//   child  -> { type: 'status', connected, resumed, caughtUp }  resumed: connected again after a drop
//   parent -> { type: 'collect' }
//   child  -> { type: 'collected', streams }               per stream: change ids, receipt times, reconnections
import net from 'node:net';
import type { CollectedStream, OpenGroup, ToChild } from './sse-fleet.ts';

const now = () => performance.timeOrigin + performance.now();
const send = (msg: unknown) => process.send!(msg);

/** At most this many streams of one group connecting (waiting for their snapshot) at once: no SYN storm on open. */
const OPENING_AT_ONCE = 200;

class Stream {
  // What the parent collects.
  readonly ids: number[] = [];
  readonly times: number[] = [];
  connects = 0;
  non200 = 0;
  ok200 = 0;
  bytesRead = 0;
  snapshots = 0;
  snapshotsOnResume = 0;
  snapshotId = NaN;
  snapshotAt = NaN;
  snapshotBytes = 0;
  snapshotInstances = NaN;
  resumedAt = NaN;
  // Connection and parser state.
  private socket: net.Socket | undefined;
  private retryMs = 3000;
  private lastId: string | undefined;
  private head = '';
  private inBody = false;
  private chunkLeft = 0;
  private crlfLeft = 0;
  private sizeLine = '';
  private lineStart: Buffer | undefined;
  private lineParts: Buffer[] = [];
  private lineBytes = 0;
  private eventId: string | undefined;
  private eventName = '';
  private dataBytes = 0;
  private data: Buffer[] = [];
  private receivedAt = 0;
  // Throttling: bytes read since `readStart`.
  private readBytes = 0;
  private readStart = 0;

  constructor(
    readonly path: string,
    private readonly group: OpenGroup,
    private readonly onFirstSnapshot: (ok: boolean) => void,
  ) {}

  connect(): void {
    this.connects++;
    this.head = '';
    this.inBody = false;
    this.chunkLeft = this.crlfLeft = 0;
    this.sizeLine = '';
    this.resetLine();
    this.resetEvent();
    const socket = net.connect({ host: '127.0.0.1', port: this.group.port, noDelay: true });
    this.socket = socket;
    const resume = this.lastId === undefined ? '' : `Last-Event-ID: ${this.lastId}\r\n`;
    socket.write(`GET ${this.path} HTTP/1.1\r\nHost: 127.0.0.1:${this.group.port}\r\nAccept: text/event-stream\r\n${resume}\r\n`);
    this.readStart = now();
    this.readBytes = 0;
    socket.on('data', (buf: Buffer) => this.onData(buf));
    socket.on('error', () => {}); // 'close' follows
    socket.on('close', () => this.onClose());
  }

  /** EventSource's behaviour: after a drop or a failed connect, wait `retry:` ms and reconnect with the last id. */
  private onClose(): void {
    this.socket = undefined;
    if (stopping) return;
    if (this.snapshots === 0 && !this.group.reconnect) return this.onFirstSnapshot(false);
    if (!this.group.reconnect) return;
    setTimeout(() => this.connect(), this.retryMs).unref();
  }

  get connected(): boolean {
    return this.socket !== undefined && this.inBody;
  }

  private onData(buf: Buffer): void {
    this.receivedAt = now();
    this.bytesRead += buf.length;
    let i = 0;
    if (!this.inBody) {
      const text = this.head + buf.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) {
        this.head = text;
        return;
      }
      const status = Number(text.slice(9, 12));
      if (status !== 200) {
        this.non200++;
        this.socket?.destroy();
        return;
      }
      this.inBody = true;
      this.ok200++;
      if (this.connects > 1) this.resumedAt = this.receivedAt;
      i = end + 4 - this.head.length;
      this.head = '';
    }
    this.body(buf, i);
    this.throttle(buf.length);
  }

  /** Pause the socket until the byte budget of `throttleBytesPerS` allows more: the gateway sees a slow reader. */
  private throttle(bytes: number): void {
    const rate = this.group.throttleBytesPerS;
    if (!rate || !this.socket) return;
    this.readBytes += bytes;
    const due = this.readStart + (this.readBytes / rate) * 1000;
    const wait = due - now();
    if (wait > 1) {
      const socket = this.socket;
      socket.pause();
      setTimeout(() => socket.resume(), wait);
    }
  }

  /** Chunked transfer coding: size line, data, CRLF; the data goes to the SSE parser. */
  private body(buf: Buffer, i: number): void {
    while (i < buf.length) {
      if (this.chunkLeft > 0) {
        const n = Math.min(this.chunkLeft, buf.length - i);
        this.sse(buf, i, i + n);
        i += n;
        this.chunkLeft -= n;
        if (this.chunkLeft === 0) this.crlfLeft = 2;
      } else if (this.crlfLeft > 0) {
        i++;
        this.crlfLeft--;
      } else {
        const nl = buf.indexOf(10, i);
        if (nl < 0) {
          this.sizeLine += buf.toString('latin1', i);
          return;
        }
        const size = parseInt(this.sizeLine + buf.toString('latin1', i, nl), 16);
        this.sizeLine = '';
        i = nl + 1;
        if (size === 0) return void this.socket?.end(); // the gateway ended the stream
        this.chunkLeft = size;
      }
    }
  }

  /** SSE lines in buf[from, to). A line split over reads is kept in parts (data lines only counted unless kept). */
  private sse(buf: Buffer, from: number, to: number): void {
    while (from < to) {
      let nl = buf.indexOf(10, from);
      if (nl >= to) nl = -1;
      const end = nl < 0 ? to : nl;
      this.linePart(buf.subarray(from, end));
      if (nl < 0) return;
      this.line();
      from = nl + 1;
    }
  }

  private linePart(part: Buffer): void {
    if (!part.length) return;
    if (!this.lineStart) this.lineStart = Buffer.from(part.subarray(0, 8)); // enough to tell the field
    this.lineBytes += part.length;
    const isData = this.lineStart.toString('latin1', 0, 5) === 'data:';
    // Copies: the socket's buffer is reused once this read is handled.
    if (!isData || this.keepingData()) this.lineParts.push(Buffer.from(part));
  }

  private keepingData(): boolean {
    return this.group.keepSnapshot === true && this.snapshots === 0;
  }

  private line(): void {
    const start = this.lineStart?.toString('latin1') ?? '';
    if (start === '') this.dispatch();
    else if (start.startsWith('data:')) {
      this.dataBytes += this.lineBytes;
      if (this.keepingData()) this.data.push(...this.lineParts);
    } else if (!start.startsWith(':')) {
      const text = Buffer.concat(this.lineParts).toString('utf8').replace(/\r$/, '');
      const colon = text.indexOf(':');
      const field = colon < 0 ? text : text.slice(0, colon);
      const value = colon < 0 ? '' : text.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') this.eventId = value;
      else if (field === 'event') this.eventName = value;
      else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
    }
    this.resetLine();
  }

  private dispatch(): void {
    if (this.eventId !== undefined) this.lastId = this.eventId;
    const name = this.eventName;
    if (name === 'snapshot') {
      if (this.snapshots++ === 0) {
        this.snapshotId = Number(this.eventId);
        this.snapshotAt = this.receivedAt;
        this.snapshotBytes = this.dataBytes;
        if (this.data.length) this.snapshotInstances = countInstances(this.data);
        this.data = [];
        this.onFirstSnapshot(true);
      } else if (this.connects > 1) this.snapshotsOnResume++;
    } else if (name === 'register' || name === 'update' || name === 'deregister') {
      this.ids.push(Number(this.eventId));
      this.times.push(this.receivedAt);
    }
    this.resetEvent();
  }

  private resetLine(): void {
    this.lineStart = undefined;
    this.lineParts = [];
    this.lineBytes = 0;
  }

  private resetEvent(): void {
    this.eventId = undefined;
    this.eventName = '';
    this.dataBytes = 0;
  }

  stop(): void {
    this.socket?.destroy();
  }

  collect(): CollectedStream {
    const { path, ids, times, connects, non200, ok200, bytesRead, snapshots, snapshotsOnResume, snapshotId, snapshotAt, snapshotBytes } =
      this;
    return {
      path,
      ids,
      times,
      connects,
      non200,
      ok200,
      bytesRead,
      snapshots,
      snapshotsOnResume,
      snapshotId,
      snapshotAt,
      snapshotBytes,
      snapshotInstances: this.snapshotInstances,
      resumedAt: this.resumedAt,
      open: this.connected,
    };
  }
}

/** Instances in a kept snapshot's data (`{"revision", "services": {name: [instances]}}`). */
function countInstances(lines: Buffer[]): number {
  const json = Buffer.concat(lines)
    .toString('utf8')
    .replace(/^data: ?/, '');
  const snapshot = JSON.parse(json) as { services: Record<string, unknown[]> };
  return Object.values(snapshot.services).reduce((n, list) => n + list.length, 0);
}

const streams: Stream[] = [];
let stopping = false;

function open(group: OpenGroup): void {
  let ok = 0;
  let failed = 0;
  let next = 0;
  const members: Stream[] = [];
  const settled = (success: boolean) => {
    if (success) ok++;
    else failed++;
    if (next < members.length) members[next++]!.connect();
    if (ok + failed === members.length) send({ type: 'opened', group: group.group, ok, failed });
  };
  for (const path of group.paths) members.push(new Stream(path, group, settled));
  streams.push(...members);
  while (next < Math.min(members.length, OPENING_AT_ONCE)) members[next++]!.connect();
}

process.on('message', (msg: ToChild) => {
  if (msg.type === 'open') open(msg);
  else if (msg.type === 'status') {
    let connected = 0;
    let resumed = 0;
    let caughtUp = 0;
    for (const s of streams) {
      if (s.connected) connected++;
      if (s.connected && s.connects > 1) resumed++;
      const want = msg.want?.[s.path];
      if (want !== undefined && (s.ids[s.ids.length - 1] ?? -1) >= want) caughtUp++;
    }
    send({ type: 'status', connected, resumed, caughtUp });
  } else if (msg.type === 'collect') {
    stopping = true;
    for (const s of streams) s.stop();
    send({ type: 'collected', streams: streams.map((s) => s.collect()) });
  }
});
process.on('disconnect', () => process.exit(0));
