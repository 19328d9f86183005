// The discovery filters (tag, status, meta.KEY) as the registry applies them.
import type { Instance, ServiceFilter } from './types.ts';

export function matches(x: Instance, f: ServiceFilter): boolean {
  if (f.status && x.status !== f.status) return false;
  if (f.tags) for (const t of f.tags) if (!x.tags.includes(t)) return false;
  if (f.meta) for (const [k, v] of f.meta) if (x.metadata[k] !== v) return false;
  return true;
}

/** One string per distinct filter: answers rendered for a query are kept under it. */
export function filterKey(f: ServiceFilter): string {
  return JSON.stringify([f.status ?? '', f.tags ?? [], f.meta ?? []]);
}
