// Instance records <-> stored values. The stored value is the record as JSON
// without its revision (that is the key's mod_revision, known only to the store).
import { DEFAULT_STATUS, DEFAULT_WEIGHT, isStatus } from '../rules.ts';
import type { Instance, InstanceInput } from './types.ts';

/**
 * Metadata as a map without a prototype: a key such as `__proto__` or `toString`
 * is data like any other (an ordinary object would drop or shadow it).
 */
function metadataMap(entries: Iterable<[string, unknown]>): Record<string, string> {
  const map: Record<string, string> = Object.create(null);
  for (const [k, v] of entries) if (typeof v === 'string') map[k] = v;
  return map;
}

/** The record a registration stores: the input with the contract's defaults filled in. */
export function newRecord(
  service: string,
  id: string,
  input: InstanceInput,
  defaultTtl: number,
  registeredAt = new Date().toISOString(),
): Instance {
  return {
    service,
    id,
    address: input.address,
    port: input.port,
    tags: input.tags ?? [],
    metadata: metadataMap(Object.entries(input.metadata ?? {})),
    weight: input.weight ?? DEFAULT_WEIGHT,
    status: input.status ?? DEFAULT_STATUS,
    ttl: input.ttl ?? defaultTtl,
    registeredAt,
    revision: 0,
  };
}

export function encodeRecord(x: Instance): string {
  const { revision: _revision, ...stored } = x;
  return JSON.stringify(stored);
}

/**
 * The record a stored value describes, or undefined for a value the gateway
 * cannot read (written by someone else in another format): such a key is not
 * shown rather than shown wrong.
 */
export function decodeRecord(service: string, id: string, value: string, revision: number): Instance | undefined {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(value) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (!v || typeof v !== 'object' || typeof v.address !== 'string' || !Number.isInteger(v.port)) return undefined;
  const tags = Array.isArray(v.tags) ? v.tags.filter((t): t is string => typeof t === 'string') : [];
  const metadata = metadataMap(
    v.metadata && typeof v.metadata === 'object' && !Array.isArray(v.metadata) ? Object.entries(v.metadata) : [],
  );
  return {
    service,
    id,
    address: v.address,
    port: v.port as number,
    tags,
    metadata,
    weight: Number.isInteger(v.weight) ? (v.weight as number) : DEFAULT_WEIGHT,
    status: isStatus(v.status) ? v.status : DEFAULT_STATUS,
    ttl: Number.isInteger(v.ttl) ? (v.ttl as number) : 0,
    registeredAt: typeof v.registeredAt === 'string' ? v.registeredAt : new Date(0).toISOString(),
    revision,
  };
}
