// Partitions and elections on a real three-member etcd cluster: a member that
// lost its leader is seen as unreachable, a gateway with several endpoints moves
// off it without losing a change, and heartbeats ride through a leader election.
// Partitions are cut in TCP proxies between the members (helpers/partition.ts),
// so the isolated member keeps running and answering its clients.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { eventually, startGateway, uniquePrefix, type TestGateway } from './helpers/gateway.ts';
import { Partitioner } from './helpers/partition.ts';
import { openSse, toChange } from './helpers/sse.ts';

const instance = (port: number, ttl = 30) => ({ address: '10.0.0.9', port, ttl });

/** What the contract allows for a member without a leader ("Scale and faults"). */
const UNREACHABLE_WITHIN_MS = 10_000;

/** PUT with an empty body over a keep-alive agent: far cheaper than fetch, so 2,000 heartbeats fit in TTL/3 on a loaded machine. */
function put(agent: http.Agent, url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.request(url, { method: 'PUT', agent, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', () => resolve({ status: 0, body: '' })).on('timeout', () => req.destroy());
    req.end();
  });
}

const ready = async (gw: TestGateway) => (await gw.request('GET', '/health/ready').catch(() => ({ status: 0 }))).status;

/** Number of watchers each member serves (etcd's own gauge), by member index. */
async function watchersPerMember(etcd: EtcdCluster): Promise<number[]> {
  return Promise.all(
    etcd.members.map(async (m) => {
      const text = await (await fetch(`${m.clientUrl}/metrics`)).text();
      return Number(/^etcd_debugging_mvcc_watcher_total (\d+)/m.exec(text)?.[1] ?? 0);
    }),
  );
}

describe('etcd partitions and elections', { timeout: 120_000 }, () => {
  let etcd: EtcdCluster;
  const partitioner = new Partitioner();
  const open: TestGateway[] = [];
  const gateway = async (opts: Parameters<typeof startGateway>[0]) => {
    const gw = await startGateway(opts);
    open.push(gw);
    return gw;
  };

  before(async () => {
    etcd = await startEtcd({ size: 3, routePeer: partitioner.route });
    await partitioner.learnIds(etcd);
  });
  after(async () => {
    for (let i = 0; i < 3; i++) etcd?.cont(i);
    partitioner.heal();
    await Promise.all(open.map((gw) => gw.close()));
    await etcd?.close();
    await partitioner.close();
  });

  it('sees a member whose peers are frozen as unreachable within 10 s: stale reads, ready 503, writes 503', async () => {
    const gw = await gateway({ prefix: uniquePrefix('iso'), env: { ETCD_ENDPOINTS: etcd.members[0]!.clientUrl } });
    assert.equal((await gw.request('PUT', '/services/iso/instances/i-1', instance(1))).status, 201);
    assert.equal((await gw.request('GET', '/services/iso')).json.instances.length, 1);
    etcd.stop(1);
    etcd.stop(2);
    try {
      const t0 = Date.now();
      await eventually(async () => (await ready(gw)) === 503, UNREACHABLE_WITHIN_MS, '/health/ready 503 on the leaderless member');
      const took = Date.now() - t0;
      const read = await gw.request('GET', '/services/iso');
      assert.equal(read.status, 200);
      assert.equal(read.headers.get('x-registry-stale'), 'true');
      assert.match(read.headers.get('age') ?? '', /^\d+$/);
      assert.equal(read.json.instances.length, 1);
      const write = await gw.request('PUT', '/services/iso/instances/i-2', instance(2));
      assert.equal(write.status, 503, write.text);
      assert.equal(write.json.code, 'store-unavailable');
      assert.ok(took <= UNREACHABLE_WITHIN_MS, `unreachable after ${took} ms`);
    } finally {
      etcd.cont(1);
      etcd.cont(2);
    }
    await eventually(async () => (await ready(gw)) === 200, 20_000, 'ready again once the peers thaw');
    await eventually(
      async () => (await gw.request('PUT', '/services/iso/instances/i-2', instance(2))).status === 201,
      10_000,
      'writes again',
    );
  });

  it('moves off an isolated member to one with a leader, catching up without losing a change', async () => {
    const prefix = uniquePrefix('move');
    const gw = await gateway({ etcd, prefix });
    assert.equal((await gw.request('PUT', '/services/mv/instances/before', instance(1))).status, 201);
    const stream = await openSse(`${gw.base}/events?service=mv`);
    await stream.until('the before registration', () => stream.events.some((e) => e.event === 'snapshot'));
    // Isolate the member serving this gateway's watch: the case where the watch must move.
    const counts = await eventually(
      async () => {
        const c = await watchersPerMember(etcd);
        return c.some((n) => n > 0) && c;
      },
      5000,
      "a member serving the gateway's watch",
    );
    const watched = counts.indexOf(Math.max(...counts));
    partitioner.isolate(watched);
    try {
      // A change on the majority side, made while the gateway may still be watching the isolated member.
      const majority = etcd.members.filter((_, i) => i !== watched).map((m) => m.clientUrl);
      const other = await gateway({ prefix, env: { ETCD_ENDPOINTS: majority.join(',') } });
      await eventually(
        async () => (await other.request('PUT', '/services/mv/instances/majority', instance(2))).status === 201,
        20_000,
        'a write on the majority side',
      );
      // The gateway moves: the change reaches its view with no write of its own to nudge it…
      await eventually(
        async () => {
          const r = await gw.request('GET', '/services/mv');
          return r.headers.get('x-registry-stale') !== 'true' && r.json.instances.length === 2;
        },
        20_000,
        "the majority's change in the gateway's view",
      );
      // …and its own writes come back.
      await eventually(
        async () => (await gw.request('PUT', '/services/mv/instances/after', instance(3))).status === 201,
        20_000,
        'a write through the moved gateway',
      );
      const view = await gw.request('GET', '/services/mv');
      assert.deepEqual(
        view.json.instances.map((x: { id: string }) => x.id),
        ['after', 'before', 'majority'],
      );
      await eventually(async () => (await ready(gw)) === 200, 20_000, 'ready on the moved gateway');
      await stream.until('both changes on the stream', () => stream.events.filter((e) => toChange(e)).length >= 2, 10_000);
      const changes = stream.events.map(toChange).filter((c) => c !== undefined);
      assert.deepEqual(
        changes.map((c) => [c.type, c.instanceId]),
        [
          ['register', 'majority'],
          ['register', 'after'],
        ],
      );
      assert.ok(changes[0]!.id < changes[1]!.id);
      assert.equal(stream.events.filter((e) => e.event === 'snapshot').length, 1, 'no reset snapshot: the stream resumed');
      assert.ok(stream.isOpen);
    } finally {
      partitioner.heal();
      stream.close();
    }
  });

  it('expires none of 2,000 instances heartbeating at TTL/3 through a leader election', async (t) => {
    const TTL = 6;
    const COUNT = 2000;
    // Through a follower, the harder case: each renewal is forwarded to the leader, which dies.
    const { leader } = await eventually(
      async () =>
        etcd.leaderIndex().then(
          (i) => ({ leader: i }),
          () => undefined,
        ),
      20_000,
      'a leader after the heal',
    );
    const follower = (leader + 1) % 3;
    const gw = await gateway({ prefix: uniquePrefix('hb'), env: { ETCD_ENDPOINTS: etcd.members[follower]!.clientUrl } });
    await eventually(async () => (await ready(gw)) === 200, 20_000, 'ready after the heal');
    const stream = await openSse(`${gw.base}/events?service=hb`);
    const answers = new Map<number, number>();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    t.after(() => agent.destroy());
    /** Instances in the order they are due, each at its last renewal (or registration) + TTL/3. */
    const queue: { id: string; due: number }[] = [];
    let longestGap = 0;
    let stopAt = Infinity;
    const unexpected: string[] = [];
    // The promise is about instances whose renewals were answered within their TTL. On a
    // loaded machine this driver may fall behind for some: those may expire and are excused.
    const lastAnswered = new Map<string, number>();
    const fellBehind = new Set<string>();
    const behind = (id: string, at: number) => {
      if (at - lastAnswered.get(id)! > TTL * 1000) fellBehind.add(id);
    };
    const heartbeat = async (id: string) => {
      behind(id, Date.now());
      const res = await put(agent, `${gw.base}/services/hb/instances/${id}/heartbeat`);
      answers.set(res.status, (answers.get(res.status) ?? 0) + 1);
      if (res.status === 200) lastAnswered.set(id, Date.now());
      if (res.status !== 200 && res.status !== 503) unexpected.push(`${id}: ${res.status} ${res.body}`);
    };
    // 64 clients, each taking the instance due first: heartbeats at TTL/3 start as soon as an instance is registered.
    const clients = Array.from({ length: 64 }, async () => {
      while (Date.now() < stopAt) {
        const next = queue.shift();
        if (!next) {
          await sleep(20);
          continue;
        }
        if (next.due > Date.now()) await sleep(next.due - Date.now());
        const start = Date.now();
        await heartbeat(next.id);
        longestGap = Math.max(longestGap, Date.now() - (next.due - (TTL * 1000) / 3));
        queue.push({ id: next.id, due: start + (TTL * 1000) / 3 });
      }
    });
    let killed = -1;
    try {
      for (let i = 0; i < COUNT; i += 128) {
        const register = Array.from({ length: Math.min(128, COUNT - i) }, (_, j) => ({
          service: 'hb',
          id: `h-${i + j}`,
          ...instance(i + j + 1, TTL),
        }));
        // A loaded follower may answer 503 (store deadline) as a client would see it: retry, as a client would.
        const res = await eventually(
          async () => {
            const r = await gw.request('POST', '/batch', { register });
            return r.status === 503 ? undefined : r;
          },
          20_000,
          'a registration batch answered',
        );
        assert.equal(res.status, 200, res.text);
        for (const r of register) {
          lastAnswered.set(r.id, Date.now());
          queue.push({ id: r.id, due: Date.now() + (TTL * 1000) / 3 });
        }
      }
      await sleep((TTL * 1000) / 3); // one full cycle of heartbeats before the kill
      killed = leader;
      await etcd.kill(killed);
      // Past 2×TTL: a lease left unrenewed by the election would be gone (and its deregister seen) by then.
      stopAt = Date.now() + 2 * TTL * 1000;
      await Promise.all(clients);
      const checkedAt = Date.now();
      for (const id of lastAnswered.keys()) behind(id, checkedAt);
      t.diagnostic(
        `longest gap between renewals of one instance: ${longestGap} ms; answers by status: ${JSON.stringify([...answers])}; ` +
          `instances the driver let go past their TTL: ${fellBehind.size}`,
      );
      assert.ok(fellBehind.size < COUNT / 2, `the driver kept most instances within their TTL (${fellBehind.size} fell behind)`);
      const expired = stream.events.filter((e) => e.event === 'deregister').map((e) => JSON.parse(e.data).id as string);
      assert.deepEqual(
        expired.filter((id) => !fellBehind.has(id)),
        [],
        'no instance whose renewals were all answered within its TTL expired',
      );
      const listed = await gw.request('GET', '/services/hb');
      assert.equal(listed.json.instances.length, COUNT - expired.length);
      assert.deepEqual(unexpected, [], 'every heartbeat answered 200, or 503 while the store was unreachable');
    } finally {
      stopAt = 0;
      await Promise.all(clients);
      stream.close();
      if (killed >= 0) await etcd.restart(killed);
    }
  });
});
