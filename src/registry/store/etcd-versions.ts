// etcd releases with a known bug that breaks a promise of the gateway: heartbeat-kept
// instances never expire. Private to the etcd store, which names them in its status.

/**
 * etcd-io/etcd#15247: a leader that stalls (SIGSTOP, a long fsync or GC pause, CPU
 * starvation) longer than a lease's TTL minus its renewal interval loses leadership;
 * when it wakes it revokes leases that the new leader went on renewing. Fixed in
 * 3.4.31 (backport etcd-io/etcd#17465) and 3.5.13 (etcd-io/etcd#17425);
 * soak/stale-leader.ts shows it on a local cluster.
 */
export function knownLeaseBug(version: string): string | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m) return undefined;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const fixedIn = major === 3 && minor === 4 ? 31 : major === 3 && minor === 5 ? 13 : undefined;
  const affected = major < 3 || (major === 3 && (minor < 4 || (fixedIn !== undefined && patch < fixedIn)));
  if (!affected) return undefined;
  return (
    `etcd ${version} has etcd-io/etcd#15247: a leader that stalls longer than an instance's TTL ` +
    'minus its heartbeat interval can revoke live leases when it wakes: instances may expire although ' +
    'their heartbeats were answered. Upgrade etcd to 3.4.31, 3.5.13 or later.'
  );
}
