// Network partitions between etcd members on loopback, without root: every
// member's peer URL is advertised as a TCP proxy in front of it, and the proxy
// cuts the connections that cross the partition. SIGSTOP cannot do this: a
// frozen member answers nothing, while an isolated one keeps serving clients
// from its own stale state, which is the case under test.
//
// etcd's raft traffic (streams and pipelines, rafthttp) names its sender in the
// X-Server-From header of the first request on each connection, so a proxy
// knows which pair of members a connection joins. Other peer requests (version
// polls, lease forwarding) carry no sender: the isolated member's proxy refuses
// them all; the others let them through, which is enough to take away the
// isolated member's leader (raft messages are what keep it).

import net, { type AddressInfo, type Socket } from 'node:net';
import type { EtcdCluster, PeerRoute } from './etcd.ts';

const HEADER_LIMIT = 64 * 1024;

interface Link {
  /** Member id (hex, as etcd prints it) of the dialing member, '' when unknown. */
  from: string;
  sockets: Socket[];
}

/** A proxy in front of one member's peer port. */
class PeerProxy {
  readonly links = new Set<Link>();
  private server: net.Server | undefined;
  /** This member's id, once known (see Partitioner.learnIds). */
  id = '';

  constructor(
    private readonly target: URL,
    private readonly allowed: (proxy: PeerProxy, from: string) => boolean,
  ) {}

  async listen(): Promise<string> {
    this.server = net.createServer((client) => this.accept(client));
    await new Promise<void>((ok) => this.server!.listen(0, '127.0.0.1', ok));
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  private accept(client: Socket): void {
    client.on('error', () => {});
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0 && head.length < HEADER_LIMIT) return;
      client.off('data', onData);
      client.pause();
      const from = /\r\nx-server-from:\s*([0-9a-f]+)/i.exec(head.subarray(0, end < 0 ? head.length : end).toString('latin1'))?.[1] ?? '';
      if (!this.allowed(this, from)) return void client.destroy();
      const upstream = net.connect(Number(this.target.port), this.target.hostname);
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      const link: Link = { from, sockets: [client, upstream] };
      this.links.add(link);
      client.on('close', () => this.links.delete(link));
      upstream.write(head);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    };
    client.on('data', onData);
  }

  /** Cut the open connections that may no longer exist. */
  enforce(): void {
    for (const link of this.links) {
      if (!this.allowed(this, link.from)) for (const s of link.sockets) s.destroy();
    }
  }

  async close(): Promise<void> {
    for (const link of this.links) for (const s of link.sockets) s.destroy();
    await new Promise<void>((ok) => (this.server ? this.server.close(() => ok()) : ok()));
  }
}

/** Proxies for a cluster started with `startEtcd({ routePeer: partitioner.route })`. */
export class Partitioner {
  private readonly proxies: PeerProxy[] = [];
  /** The proxies of the running cluster, in member order (a retried start made others before them). */
  private members: PeerProxy[] = [];
  private isolatedId: string | undefined;

  /** For startEtcd: puts a proxy in front of each member, in member order. */
  readonly route: PeerRoute = async (peerUrl) => {
    const proxy = new PeerProxy(new URL(peerUrl), (p, from) => this.allowed(p, from));
    this.proxies.push(proxy);
    return proxy.listen();
  };

  private allowed(proxy: PeerProxy, from: string): boolean {
    const cut = this.isolatedId;
    if (!cut) return true;
    if (proxy.id === cut) return false; // every dialer of the isolated member is on the other side
    return from !== cut;
  }

  /** Member ids, read once from the cluster (etcdctl prints them in hex, as X-Server-From does). */
  async learnIds(etcd: EtcdCluster): Promise<void> {
    this.members = this.proxies.slice(-etcd.members.length);
    const out = await etcd.ctl(['member', 'list']);
    for (const line of out.trim().split('\n')) {
      const [id, , name] = line.split(',').map((x) => x.trim());
      const proxy = this.members[etcd.members.findIndex((m) => m.name === name)];
      if (proxy && id) proxy.id = id;
    }
    if (this.members.some((p) => !p.id)) throw new Error(`member ids not found in: ${out}`);
  }

  /** Cut member i off from the others (it keeps running and serving its clients). */
  isolate(i: number): void {
    this.isolatedId = this.members[i]!.id;
    for (const p of this.members) p.enforce();
  }

  heal(): void {
    this.isolatedId = undefined;
  }

  async close(): Promise<void> {
    await Promise.all(this.proxies.map((p) => p.close()));
  }
}
