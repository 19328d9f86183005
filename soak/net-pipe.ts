// A TCP pipe in front of one address, which the soak turns bad on purpose
// (toxiproxy's model, without root or a separate daemon): `blackhole` keeps
// every connection open and drops what crosses it (a partition as TCP sees it:
// no reset, just silence), `latency` delays every chunk by a fixed time in both
// directions (order kept), `reset` cuts every open connection once (the closest
// TCP gets to packet loss: a stall, then a reconnect). `pass` heals. A toxic
// can be set on one direction only (an asymmetric cut: requests arrive, their
// answers never come back, or the other way round).
import net, { type AddressInfo, type Socket } from 'node:net';

export type Toxic = { kind: 'pass' } | { kind: 'blackhole' } | { kind: 'latency'; ms: number };
/** `up`: what the client sends to the target; `down`: what comes back. */
export type Direction = 'up' | 'down' | 'both';

export class NetPipe {
  private readonly toxics: Record<'up' | 'down', Toxic> = { up: { kind: 'pass' }, down: { kind: 'pass' } };
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: net.Server,
    /** The pipe's own address, as `scheme://127.0.0.1:port` (what clients dial instead of the target). */
    readonly url: string,
  ) {}

  /** A pipe in front of `target` (a URL such as http://127.0.0.1:2379), listening on a free loopback port. */
  static async start(target: string): Promise<NetPipe> {
    const to = new URL(target);
    const server = net.createServer();
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    const pipe = new NetPipe(server, `${to.protocol}//127.0.0.1:${(server.address() as AddressInfo).port}`);
    server.on('connection', (client: Socket) => pipe.accept(client, to));
    return pipe;
  }

  /** From now on, what crosses the pipe in `direction` meets `toxic` (connections already open too). */
  set(toxic: Toxic, direction: Direction = 'both'): void {
    if (direction !== 'down') this.toxics.up = toxic;
    if (direction !== 'up') this.toxics.down = toxic;
  }

  /** Cut every open connection (clients reconnect through the pipe). */
  reset(): void {
    for (const s of this.sockets) s.destroy();
  }

  private accept(client: Socket, to: URL): void {
    const upstream = net.connect(Number(to.port), to.hostname);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    this.forward(client, upstream, 'up');
    this.forward(upstream, client, 'down');
  }

  /** Copies `from` to `to` through the current toxic; under latency, chunks keep their order. */
  private forward(from: Socket, to: Socket, direction: 'up' | 'down'): void {
    let due = 0;
    from.on('data', (chunk: Buffer) => {
      const toxic = this.toxics[direction];
      if (toxic.kind === 'blackhole') return;
      if (toxic.kind === 'pass' && due <= Date.now()) return void to.write(chunk);
      // Never earlier than a chunk sent before it: order is kept when the delay changes.
      due = Math.max(due, Date.now() + (toxic.kind === 'latency' ? toxic.ms : 0));
      setTimeout(() => to.destroyed || to.write(chunk), due - Date.now());
    });
  }

  async close(): Promise<void> {
    this.reset();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }
}
