// A gateway on an etcd of its own that a test restores from a snapshot (API.md
// "Store full and store restored"): the store's revision goes back under the
// running gateway. Started before the file's tests, closed after them.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { startEtcd, type EtcdCluster } from './etcd.ts';
import { instanceBody, instancePath, startGateway, type TestGateway } from './gateway.ts';

export interface RestorableStore {
  readonly etcd: EtcdCluster;
  readonly gw: TestGateway;
  /** Saves the store as it is now: what restore() goes back to. */
  snapshot(): Promise<void>;
  restore(): Promise<void>;
  /** Registers an instance without a TTL through the gateway; resolves with the write's revision. */
  register(service: string, id: string): Promise<number>;
}

export function restorableStore(): RestorableStore {
  let etcd: EtcdCluster;
  let gw: TestGateway;
  let dir: string;
  before(async () => {
    etcd = await startEtcd();
    gw = await startGateway({ etcd });
    dir = await mkdtemp(join(tmpdir(), 'snapshot-'));
  });
  after(async () => {
    await gw?.close();
    await etcd?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const file = () => join(dir, 'snapshot.db');
  return {
    get etcd() {
      return etcd;
    },
    get gw() {
      return gw;
    },
    snapshot: () => etcd.snapshot(file()),
    restore: () => etcd.restoreSnapshot(file()),
    async register(service, id) {
      const r = await gw.request('PUT', instancePath(service, id), instanceBody('10.8.0.1', 80, { ttl: 0 }));
      assert.equal(r.status, 201, r.text);
      return r.json.revision as number;
    },
  };
}
