// The discovery filters (tag, status, meta.KEY) as the registry applies them.
import type { Instance, ServiceFilter } from './types.ts';

export function matches(x: Instance, f: ServiceFilter): boolean {
  if (f.status && x.status !== f.status) return false;
  if (f.tags) for (const t of f.tags) if (!x.tags.includes(t)) return false;
  if (f.meta) for (const [k, v] of f.meta) if (x.metadata[k] !== v) return false;
  return true;
}

/**
 * One string per distinct filter: answers rendered for a query are kept under it.
 * Filters that select the same instances (tags or meta pairs in another order or
 * repeated) get the same key.
 */
export function filterKey(f: ServiceFilter): string {
  const tags = [...new Set(f.tags)].sort();
  const meta = [...new Set(f.meta?.map((pair) => JSON.stringify(pair)))].sort();
  return JSON.stringify([f.status ?? '', tags, meta]);
}
