// Discovery filters, in both places they apply: as the query string of GET /services/{name}
// (tag=, status=, meta.KEY=), and locally on the watched view, with the same meaning.
import { matches as matchesFilter, pickWeighted as pickFrom, type ServiceFilter } from '../discovery-query/filter.ts';
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

/** The filters as the gateway's own matching takes them (one meaning on both sides). */
function serviceFilter(filters: DiscoveryFilters): ServiceFilter {
  return { tags: filters.tags, status: filters.status, meta: Object.entries(filters.metadata ?? {}) };
}

/** Whether the instance passes the filters, as the gateway would decide. */
export function matches(instance: Instance, filters: DiscoveryFilters = {}): boolean {
  return matchesFilter(instance, serviceFilter(filters));
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
  return pickFrom([...instances], (i) => i, serviceFilter(filters), random);
}
