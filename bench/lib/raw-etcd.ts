// The raw-client baseline of the write scenarios: the store operations the
// gateway performs for each write, done directly with etcd3 (no HTTP, no cache,
// no validation). Lease keepalives share one stream, or a few (as the gateway's
// pool does, a lease always on the same one).
import { randomUUID } from 'node:crypto';
import { CompareResult, CompareTarget, Etcd3 } from 'etcd3';
import { deregisteredMarker } from '../../src/registry/changes.ts';
import { encodeRecord, newRecord } from '../../src/registry/records.ts';
import { instanceInput, keys } from './fixtures.ts';

export class RawEtcd {
  readonly client: Etcd3;
  private readonly keepAlives: (Promise<KeepAliveMux> | undefined)[];

  constructor(endpoint: string, keepAliveStreams = 1) {
    this.client = new Etcd3({ hosts: endpoint, grpcOptions: { 'grpc.max_receive_message_length': -1 } });
    this.keepAlives = new Array<undefined>(keepAliveStreams).fill(undefined);
  }

  /** Register = lease grant + a put guarded by "the key does not exist yet". */
  async register(service: string, id: string, ttl: number): Promise<void> {
    const lease = await this.client.leaseClient.leaseGrant({ TTL: ttl });
    const key = Buffer.from(keys.instance(service, id));
    const record = newRecord(service, id, instanceInput(0, ttl), 0);
    const res = await this.client.kv.txn({
      compare: [{ key, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: '0' }],
      success: [{ request_put: { key, value: Buffer.from(encodeRecord(record)), lease: lease.ID } }],
      failure: [],
    });
    if (!res.succeeded) throw new Error('register: key exists');
  }

  async grant(ttl: number): Promise<string> {
    return String((await this.client.leaseClient.leaseGrant({ TTL: ttl })).ID);
  }

  /** Heartbeat = one keepalive of the instance's lease; resolves the TTL left. */
  async heartbeat(lease: string): Promise<number> {
    const slot = Number(BigInt(lease) % BigInt(this.keepAlives.length));
    const mux = (this.keepAlives[slot] ??= this.client.leaseClient.leaseKeepAlive().then((call) => new KeepAliveMux(call)));
    return (await mux).renew(lease);
  }

  /** Deregister = delete guarded by "the key exists" + the bookkeeping put that records why. */
  async deregister(service: string, id: string, bookkeepingLease: string): Promise<void> {
    const key = Buffer.from(keys.instance(service, id));
    const res = await this.client.kv.txn({
      compare: [{ key, target: CompareTarget.Create, result: CompareResult.Greater, create_revision: '0' }],
      success: [
        { request_delete_range: { key } },
        {
          request_put: {
            key: Buffer.from(keys.deregistered(randomUUID())),
            value: Buffer.from(deregisteredMarker([{ service, id }])),
            lease: bookkeepingLease,
          },
        },
      ],
      failure: [],
    });
    if (!res.succeeded) throw new Error('deregister: no such key');
  }

  close(): void {
    this.client.close();
  }
}

type KeepAliveCall = Awaited<ReturnType<Etcd3['leaseClient']['leaseKeepAlive']>>;

/** One keepalive stream; answers come back in request order per lease id. */
class KeepAliveMux {
  private readonly waiting = new Map<string, ((ttl: number) => void)[]>();

  constructor(private readonly call: KeepAliveCall) {
    call.on('data', (r: { ID: string; TTL: string }) => {
      const q = this.waiting.get(String(r.ID));
      const resolve = q?.shift();
      if (q && !q.length) this.waiting.delete(String(r.ID));
      resolve?.(Number(r.TTL));
    });
    call.on('error', () => {});
  }

  renew(id: string): Promise<number> {
    return new Promise((resolve) => {
      const q = this.waiting.get(id);
      if (q) q.push(resolve);
      else this.waiting.set(id, [resolve]);
      this.call.write({ ID: id });
    });
  }
}
