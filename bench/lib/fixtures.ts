// Instances as the benchmark registers them (tags and metadata, like real ones),
// and fast loading: /batch through the gateway, or direct etcd puts in the
// gateway's own record format (records.ts, keys.ts) for the large sizes.
import type { Etcd3 } from 'etcd3';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeyLayout } from '../../src/registry/keys.ts';
import { encodeRecord, newRecord } from '../../src/registry/records.ts';
import type { InstanceInput } from '../../src/registry/types.ts';
import { pool } from './load.ts';

export const PREFIX = '/services';
export const keys = new KeyLayout(PREFIX);

/** Half the instances carry the tag `canary`, the rest `stable`. */
export function instanceInput(i: number, ttl: number): InstanceInput {
  return {
    address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    port: 8080,
    tags: ['http', 'v2', i % 2 ? 'canary' : 'stable'],
    metadata: { zone: `eu-${i % 3}`, version: '2.3.1', team: 'payments' },
    weight: 100,
    ttl,
  };
}

export const instanceId = (i: number) => `i-${String(i).padStart(6, '0')}`;

/** POST /batch with up to 128 registrations per call, `parallel` calls at a time. */
export async function registerByBatch(
  gateway: string,
  items: { service: string; id: string; input: InstanceInput }[],
  parallel = 4,
  /** Told after each batch: how many items from the start are all registered. */
  progress?: (registeredPrefix: number) => void,
): Promise<void> {
  const perBatch = 128;
  const done: boolean[] = [];
  let prefix = 0;
  const batches: (typeof items)[] = [];
  for (let i = 0; i < items.length; i += perBatch) batches.push(items.slice(i, i + perBatch));
  await pool(batches, parallel, async (batch, b) => {
    const register = batch.map((x) => ({ service: x.service, id: x.id, ...x.input }));
    await postBatch(gateway, JSON.stringify({ register }));
    done[b] = true;
    while (done[prefix]) prefix++;
    progress?.(Math.min(prefix * perBatch, items.length));
  });
}

/**
 * One POST /batch. Setting up a scenario is not what it measures: a 503 (the
 * gateway shedding load or its store briefly unreachable on a busy machine)
 * is retried a few times, a second apart; anything else fails the scenario.
 */
async function postBatch(gateway: string, body: string, attempts = 5): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const res = await fetch(`${gateway}/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const text = await res.text();
    if (res.status === 200) return;
    if (res.status !== 503 || attempt === attempts) throw new Error(`POST /batch answered ${res.status}: ${text}`);
    await sleep(1000);
  }
}

/**
 * `services` × `perService` instances with ttl 0, written straight into etcd in
 * the gateway's format (128 puts per transaction), starting at service number `fromService`.
 */
export async function loadDirect(etcd: Etcd3, fromService: number, services: number, perService: number): Promise<void> {
  const registeredAt = new Date().toISOString();
  const puts: { key: string; value: string }[] = [];
  for (let s = fromService; s < fromService + services; s++) {
    const service = serviceName(s);
    for (let i = 0; i < perService; i++) {
      const id = instanceId(i);
      puts.push({
        key: keys.instance(service, id),
        value: encodeRecord(newRecord(service, id, instanceInput(s * perService + i, 0), 0, registeredAt)),
      });
    }
  }
  const txns: (typeof puts)[] = [];
  for (let i = 0; i < puts.length; i += 128) txns.push(puts.slice(i, i + 128));
  await pool(txns, 8, (ops) =>
    etcd.kv.txn({
      compare: [],
      success: ops.map((p) => ({ request_put: { key: Buffer.from(p.key), value: Buffer.from(p.value) } })),
      failure: [],
    }),
  );
}

export const serviceName = (s: number) => `svc-${String(s).padStart(5, '0')}`;
