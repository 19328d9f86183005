// Shows etcd-io/etcd#15247 without the gateway: a leader frozen (SIGSTOP)
// longer than a lease's TTL minus its renewal interval revokes that lease when
// it thaws, although the new leader answered its renewals. Plain etcd3 client,
// 3 local members, 200 leases (TTL 30 s) renewed every 3 s through the members
// that are not frozen.
//
//   npx tsx soak/stale-leader.ts leader 30     # freeze the leader for 30 s
//   npx tsx soak/stale-leader.ts follower 30   # the same with a follower
//
// Prints how many leases were revoked while a renewal answered with TTL > 0
// was still within its TTL. Exit code 1 when there were any.
import { Etcd3, type Lease } from 'etcd3';
import { startEtcd } from '../test/helpers/etcd.ts';

const role = process.argv[2] === 'follower' ? 'follower' : 'leader';
const freezeSeconds = Number(process.argv[3] ?? 30);
const TTL = 30;
const LEASES = 200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cluster = await startEtcd({ size: 3 });
let early = 0;
try {
  const leader = await cluster.leaderIndex();
  const frozen = role === 'leader' ? leader : (leader + 1) % 3;
  const client = new Etcd3({ hosts: cluster.endpoints.filter((_, i) => i !== frozen) });
  const leases: Lease[] = [];
  for (let i = 0; i < LEASES; i++) {
    const lease = client.lease(TTL, { autoKeepAlive: false });
    await lease.put(`/x/${i}`).value('v').exec();
    leases.push(lease);
  }
  // When each lease's latest renewal answered with TTL > 0 was sent.
  const renewedAt = leases.map(() => Date.now());
  const renewals = setInterval(() => {
    leases.forEach((lease, i) => {
      const sent = Date.now();
      lease.keepaliveOnce().then(
        (r) => Number(r.TTL) > 0 && (renewedAt[i] = Math.max(renewedAt[i]!, sent)),
        () => {},
      );
    });
  }, 3000);
  const earlyBy: number[] = [];
  const watcher = await client.watch().prefix('/x/').create();
  watcher.on('delete', (kv) => {
    const left = renewedAt[Number(kv.key.toString().split('/').pop())]! + TTL * 1000 - Date.now();
    if (left > 0) earlyBy.push(left);
  });

  await sleep(4000);
  cluster.stop(frozen);
  await sleep(freezeSeconds * 1000);
  cluster.cont(frozen);
  await sleep(15_000);
  clearInterval(renewals);
  await watcher.cancel();
  client.close();

  early = earlyBy.length;
  const range = early ? `, ${(Math.min(...earlyBy) / 1000).toFixed(1)}–${(Math.max(...earlyBy) / 1000).toFixed(1)} s before their TTL` : '';
  console.log(`froze the ${role} m${frozen} for ${freezeSeconds} s: ${early} of ${LEASES} renewed leases revoked early${range}`);
} finally {
  await cluster.close();
}
process.exit(early ? 1 : 0);
