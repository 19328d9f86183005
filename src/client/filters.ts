// Discovery filters, in both places they apply: as the query string of GET /services/{name}
// (tag=, status=, meta.KEY=), and locally on the watched view, with the same meaning.
import type { Query } from './transport.ts';
import type { DiscoveryFilters, Instance } from './types.ts';

/** The filters as the query string of GET /services/{name}. */
export function filterQuery(filters: DiscoveryFilters = {}): Query {
  const query: Record<string, string | readonly string[]> = {};
  if (filters.tags !== undefined && filters.tags.length > 0) query.tag = filters.tags;
  if (filters.status !== undefined) query.status = filters.status;
  for (const [key, value] of Object.entries(filters.metadata ?? {})) query[`meta.${key}`] = value;
  return query;
}

/** Whether the instance passes the filters, as the gateway would decide. */
export function matches(instance: Instance, filters: DiscoveryFilters = {}): boolean {
  if (filters.status !== undefined && instance.status !== filters.status) return false;
  if (filters.tags?.some((tag) => !instance.tags.includes(tag))) return false;
  return Object.entries(filters.metadata ?? {}).every(([key, value]) => instance.metadata[key] === value);
}

/**
 * One instance chosen at random in proportion to `weight`, among those with status `up`, weight
 * above 0 and matching the tag and metadata filters: what GET /services/{name}/pick answers.
 */
export function pickWeighted(
  instances: Iterable<Instance>,
  filters: Omit<DiscoveryFilters, 'status'> = {},
  random: () => number = Math.random,
): Instance | undefined {
  const candidates = [...instances].filter((i) => i.status === 'up' && i.weight > 0 && matches(i, filters));
  const total = candidates.reduce((sum, i) => sum + i.weight, 0);
  let point = random() * total;
  for (const candidate of candidates) {
    point -= candidate.weight;
    if (point < 0) return candidate;
  }
  return candidates.at(-1);
}
