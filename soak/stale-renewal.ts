// Shows, without the gateway, why a heartbeat may meet "lease not found" for a
// lease that lives: an etcd 3.4 leader frozen (SIGSTOP) while the others elect
// a new one and grant leases still believes it leads when it thaws, and answers
// renewals of leases it has not heard of yet with TTL 0 ("not found") before it
// applies the new leader's log. Plain etcd3 client, 3 local members; renewals
// are written to a keepalive stream on the frozen leader while it sleeps.
// Whether the stale answers come first is a race: each round tries once.
//
//   npx tsx soak/stale-renewal.ts 3     # three rounds
//
// Prints, per round, how many renewals of live leases were answered TTL 0 and
// the term those answers carried. Exit code 1 when any round had one.
import { Etcd3 } from 'etcd3';
import { startEtcd } from '../test/helpers/etcd.ts';

const rounds = Number(process.argv[2] ?? 3);
const LEASES = 200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let stale = 0;
for (let round = 1; round <= rounds; round++) {
  const cluster = await startEtcd({ size: 3 });
  try {
    const frozen = await cluster.leaderIndex();
    const atFrozen = new Etcd3({ hosts: [cluster.endpoints[frozen]!] });
    const elsewhere = new Etcd3({ hosts: cluster.endpoints.filter((_, i) => i !== frozen) });
    const answers: { ttl: number; term: number }[] = [];
    const stream = await atFrozen.leaseClient.leaseKeepAlive();
    stream.on('data', (r) => answers.push({ ttl: Number(r.TTL), term: Number(r.header.raft_term) }));
    stream.on('error', () => {});
    // One renewal answered before the freeze: the stream is open on that member.
    stream.write({ ID: (await elsewhere.leaseClient.leaseGrant({ TTL: 60 })).ID });
    while (!answers.length) await sleep(50);

    cluster.stop(frozen);
    while ((await cluster.leaderIndex().catch(() => frozen)) === frozen) await sleep(200);
    const granted: string[] = [];
    for (let i = 0; i < LEASES; i++) granted.push((await elsewhere.leaseClient.leaseGrant({ TTL: 60 })).ID);
    for (const ID of granted) stream.write({ ID });
    cluster.cont(frozen);
    for (const deadline = Date.now() + 10_000; answers.length < LEASES + 1 && Date.now() < deadline;) await sleep(50);

    const { header } = await elsewhere.maintenance.status();
    const gone = answers.slice(1).filter((a) => a.ttl <= 0);
    const terms = [...new Set(gone.map((a) => a.term))].join(', ');
    console.log(
      `round ${round}: ${gone.length} of ${LEASES} live leases answered TTL 0 by the thawed leader m${frozen}` +
        (gone.length ? ` (term ${terms}; the cluster is at term ${header.raft_term})` : ''),
    );
    stale += gone.length;
    stream.end();
    atFrozen.close();
    elsewhere.close();
  } finally {
    await cluster.close();
  }
}
process.exit(stale ? 1 : 0);
