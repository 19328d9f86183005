// The DNS listeners: UDP and TCP on one address and port, each message read by
// wire.ts and answered by the zone. No message can stop the process or hold it:
// every failure becomes SERVFAIL or a dropped message, TCP frames are bounded in
// size, and a TCP client gets a deadline for idling and a cap on unread answers.
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import { isIP } from 'node:net';
import { MAX_TCP_PAYLOAD, readQuery, udpLimit, writeRefusal, writeReply, type Query } from './wire.ts';
import type { GatewayEvents } from '../events.ts';
import type { Zone } from './zone.ts';

/** A query is a header and one question (with an OPT record): frames longer than this are not queries. */
const MAX_TCP_QUERY = 4096;
/** A TCP connection that sends nothing for this long is closed (RFC 7766 advises seconds). */
const TCP_IDLE_MS = 10_000;
/** A client that stops reading its answers is cut once this much waits for it. */
const TCP_MAX_UNREAD = 1 << 20;
const MAX_TCP_CONNECTIONS = 1000;
/** Room for bursts of queries, so the kernel does not drop them while an answer is written. */
const UDP_RECEIVE_BUFFER = 4 << 20;
/** With DNS_PORT=0, tries to find one port free for both UDP and TCP. */
const FREE_PORT_TRIES = 10;

/**
 * Where to send an answer needs no resolver: it is the IP address the query came
 * from (and DNS_HOST, to bind, is an IP address too). Node's default would call
 * dns.lookup and send one tick later, for every answer.
 */
const ipAddressOnly: dgram.SocketOptions['lookup'] = (address, _options, callback) => callback(null, address, isIP(address));

/** What the server reports: each answered message (a metric) and each failure (a log line). */
type DnsEvents = Pick<GatewayEvents, 'dnsQuery' | 'warning'>;

export class DnsServer {
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly connections = new Set<net.Socket>();

  constructor(
    private readonly zone: Zone,
    private readonly events: DnsEvents,
  ) {}

  /** Listen on UDP and TCP; resolves the port (a free one when `port` is 0). */
  async listen(host: string, port: number): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      const udp = await this.bindUdp(host, port);
      const bound = udp.address().port;
      try {
        this.tcp = await this.bindTcp(host, bound);
        this.udp = udp;
        return bound;
      } catch (err) {
        udp.close();
        const taken = (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
        if (port !== 0 || !taken || attempt >= FREE_PORT_TRIES) throw err;
      }
    }
  }

  async close(): Promise<void> {
    this.udp?.close();
    for (const socket of this.connections) socket.destroy();
    if (this.tcp?.listening) await new Promise((resolve) => this.tcp!.close(resolve));
  }

  /** The answer to one message, or undefined to drop it; made at once, from the cache. */
  private answer(msg: Buffer, limit: (q: Query) => number): Buffer | undefined {
    const read = readQuery(msg);
    if (!read) return undefined;
    if ('rcode' in read) {
      this.events.dnsQuery(read.question?.type ?? 'none', read.rcode);
      return writeRefusal(read);
    }
    const query = read;
    const qtype = query.question.type;
    try {
      const reply = this.zone.answer(query.question.name, qtype);
      this.events.dnsQuery(qtype, reply.rcode);
      return writeReply(query, reply, limit(query));
    } catch (err) {
      // A store that cannot be reached for a service this gateway has no copy of, or a bug: never silence.
      this.failed(err);
      this.events.dnsQuery(qtype, 'SERVFAIL');
      return writeReply(query, { rcode: 'SERVFAIL', answers: [], authorities: [] }, limit(query));
    }
  }

  private failed(err: unknown): void {
    this.events.warning('DNS answer failed', err);
  }

  private async bindUdp(host: string, port: number): Promise<dgram.Socket> {
    const socket = dgram.createSocket({
      type: isIP(host) === 6 ? 'udp6' : 'udp4',
      recvBufferSize: UDP_RECEIVE_BUFFER,
      lookup: ipAddressOnly,
    });
    socket.on('message', (msg, peer) => {
      try {
        const out = this.answer(msg, udpLimit);
        if (out) socket.send(out, peer.port, peer.address);
      } catch (err) {
        // A send can throw (the socket closed while the answer was made); a bug must not end the server.
        this.failed(err);
      }
    });
    // A send to a client that went away (ICMP unreachable) must not end the server.
    socket.on('error', (err) => this.failed(err));
    // Listened for before bind: with no resolver call, bind reports at once.
    const bound = Promise.race([once(socket, 'listening'), once(socket, 'error').then(([err]) => Promise.reject(err as Error))]);
    socket.bind(port, host);
    await bound;
    return socket;
  }

  private async bindTcp(host: string, port: number): Promise<net.Server> {
    const server = net.createServer((socket) => this.serveTcp(socket));
    server.maxConnections = MAX_TCP_CONNECTIONS;
    server.listen(port, host);
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
    server.on('error', (err) => this.failed(err));
    return server;
  }

  /** RFC 7766 framing (2-byte length, then the message); several queries per connection, answered in order. */
  private serveTcp(socket: net.Socket): void {
    this.connections.add(socket);
    socket.once('close', () => this.connections.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= 2) {
        const size = pending.readUInt16BE(0);
        if (size > MAX_TCP_QUERY) return socket.destroy();
        if (pending.length < 2 + size) return;
        const msg = pending.subarray(2, 2 + size);
        pending = pending.subarray(2 + size);
        this.answerTcp(socket, msg);
      }
    });
  }

  private answerTcp(socket: net.Socket, msg: Buffer): void {
    let out: Buffer | undefined;
    try {
      out = this.answer(msg, () => MAX_TCP_PAYLOAD);
    } catch (err) {
      this.failed(err);
    }
    if (!out || socket.destroyed) return;
    if (socket.writableLength > TCP_MAX_UNREAD) return void socket.destroy();
    const frame = Buffer.allocUnsafe(2 + out.length);
    frame.writeUInt16BE(out.length, 0);
    out.copy(frame, 2);
    socket.write(frame);
  }
}
