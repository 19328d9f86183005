// A fleet heartbeating on schedule: instances registered through /batch while
// a Node loop keeps the renewal schedule (registering tens of thousands of
// leases can take longer than one TTL), then wrk continues the same schedule
// (heartbeat.lua with rate= and start=) for the measured part. Shared by the
// single-gateway heartbeat load and the cluster failover scenario.
import { setTimeout as sleep } from 'node:timers/promises';
import { instanceId, instanceInput, registerByBatch, serviceName } from './fixtures.ts';
import { wrk, type WrkStats } from './wrk.ts';

/** One gateway's share of the fleet: `count` instances in services svc-<offset> … svc-<offset + services - 1>. */
export interface Fleet {
  gateway: string;
  count: number;
  services: number;
  serviceOffset: number;
  ttl: number;
}

const serviceOf = (f: Fleet, i: number) => serviceName(f.serviceOffset + (i % f.services));

/**
 * Registers the fleet (128 per /batch, 8 in flight) while a Node loop in this
 * process keeps the renewal schedule (not measured: it keeps instances alive
 * until wrk takes over). The schedule is the one wrk continues: slot k, at
 * k / ratePerS seconds, renews instance k mod count, so every instance is
 * renewed every count / ratePerS seconds; a slot whose instance is not
 * registered yet is skipped (its next slot comes within one period of its
 * registration). Resolves the seconds registration took and the slot wrk
 * starts at.
 */
export async function registerRenewing(f: Fleet, ratePerS: number): Promise<{ seconds: number; startAt: number }> {
  const items = Array.from({ length: f.count }, (_, i) => ({
    service: serviceOf(f, i),
    id: instanceId(i),
    input: instanceInput(i, f.ttl),
  }));
  let registered = 0;
  let registering = true;
  let slot = 0;
  const t0 = performance.now();
  const renew = async () => {
    while (registering) {
      const due = Math.floor(((performance.now() - t0) / 1000) * ratePerS);
      const batch: (typeof items)[number][] = [];
      for (; slot < due; slot++) if (slot % f.count < registered) batch.push(items[slot % f.count]!);
      await Promise.all(
        batch.map((x) =>
          fetch(`${f.gateway}/services/${x.service}/instances/${x.id}/heartbeat`, { method: 'PUT' }).then(
            (r) => r.arrayBuffer(),
            () => undefined,
          ),
        ),
      );
      await sleep(20);
    }
  };
  const renewing = renew();
  try {
    await registerByBatch(f.gateway, items, 8, (prefix) => (registered = prefix));
  } finally {
    registering = false;
    await renewing;
  }
  return { seconds: (performance.now() - t0) / 1000, startAt: slot % f.count };
}

/** The fleet's renewals at `ratePerS` for `durationS`, through wrk (paced, not saturating). */
export function pacedHeartbeats(
  f: Fleet,
  ratePerS: number,
  startAt: number,
  durationS: number,
  connections: number,
  threads: number,
): Promise<WrkStats> {
  return wrk({
    url: f.gateway,
    script: 'heartbeat.lua',
    args: { count: f.count, services: f.services, service_offset: f.serviceOffset, rate: ratePerS, start: startAt },
    connections,
    threads,
    durationS,
    // Paced far below the generator's ceiling: counting each status in Lua costs nothing that shows.
    countStatuses: true,
  });
}

/** The gateway's discovery_expirations_total (every gateway's watch sees every expiry in the store). */
export async function expirations(gateway: string): Promise<number> {
  const text = await (await fetch(`${gateway}/metrics`)).text();
  return Number(/^discovery_expirations_total (\d+)/m.exec(text)?.[1] ?? NaN);
}

/** Instances the gateway lists over all services. */
export async function registeredCount(gateway: string): Promise<number> {
  const body = (await (await fetch(`${gateway}/services`)).json()) as { services: { instances: number }[] };
  return body.services.reduce((n, s) => n + s.instances, 0);
}
