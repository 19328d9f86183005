// A fleet heartbeating on schedule: instances registered through /batch while
// the ones already registered are renewed (registering tens of thousands of
// leases can take longer than one TTL), then renewals paced by wrk
// (heartbeat.lua with rate=) for the measured part. Shared by the
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
 * process renews the instances registered so far at `ratePerS`, round robin
 * (not measured: it only keeps early instances alive until wrk takes over).
 * Resolves the seconds registration took.
 */
export async function registerRenewing(f: Fleet, ratePerS: number): Promise<number> {
  const items = Array.from({ length: f.count }, (_, i) => ({
    service: serviceOf(f, i),
    id: instanceId(i),
    input: instanceInput(i, f.ttl),
  }));
  let registered = 0;
  let registering = true;
  const renew = async () => {
    const tickMs = 50;
    let next = 0;
    while (registering) {
      const t = performance.now();
      const due = Math.min(registered, Math.round((ratePerS * tickMs) / 1000));
      const batch = Array.from({ length: due }, () => items[next++ % registered]!);
      await Promise.all(
        batch.map((x) =>
          fetch(`${f.gateway}/services/${x.service}/instances/${x.id}/heartbeat`, { method: 'PUT' }).then(
            (r) => r.arrayBuffer(),
            () => undefined,
          ),
        ),
      );
      await sleep(Math.max(0, tickMs - (performance.now() - t)));
    }
  };
  const t0 = performance.now();
  const renewing = renew();
  try {
    await registerByBatch(f.gateway, items, 8, (prefix) => (registered = prefix));
  } finally {
    registering = false;
    await renewing;
  }
  return (performance.now() - t0) / 1000;
}

/** The fleet's renewals at `ratePerS` for `durationS`, through wrk (paced, not saturating). */
export function pacedHeartbeats(f: Fleet, ratePerS: number, durationS: number, connections: number, threads: number): Promise<WrkStats> {
  return wrk({
    url: f.gateway,
    script: 'heartbeat.lua',
    args: { count: f.count, services: f.services, service_offset: f.serviceOffset, rate: ratePerS },
    connections,
    threads,
    durationS,
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
