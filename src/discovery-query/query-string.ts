// The discovery filters in a query string (tag=, status=, meta.KEY=): the schema
// fragment every discovery route declares, and its parsing into a ServiceFilter
// (filter.ts), shared by GET /services/{name}, /pick and /sd/prometheus.
import { Type, type TProperties } from '@sinclair/typebox';
import { InvalidRequestError } from '../registry/errors.ts';
import { Status } from '../routes/schemas.ts';
import { isStatus } from '../rules.ts';
import type { ServiceFilter } from './filter.ts';

const META_PREFIX = 'meta.';

/** status=S, for the routes where it narrows (the pick only ever takes instances that are up). */
export const StatusFilter = Type.Optional(Status);

/**
 * A discovery route's query string: its own parameters, tag= and any number of
 * meta.KEY= (repeatable: all must match).
 */
export function withFilters<P extends TProperties>(own: P) {
  return Type.Object(
    { tag: Type.Optional(Type.Array(Type.String(), { description: 'Only instances with this tag (repeatable: all must match)' })), ...own },
    {
      additionalProperties: true,
      patternProperties: { '^meta\\.': Type.String() },
      description: `${META_PREFIX}KEY=VALUE filters are repeatable: all must match`,
    },
  );
}

/** The filters of a discovery query (as the schema above validated it), or undefined when there are none. */
export function filterOf(query: Readonly<Record<string, unknown>>): ServiceFilter | undefined {
  const f: { tags?: string[]; status?: string; meta?: [string, string][] } = {};
  if (Array.isArray(query.tag) && query.tag.length) f.tags = query.tag as string[];
  if (isStatus(query.status)) f.status = query.status;
  for (const [k, v] of Object.entries(query)) {
    if (!k.startsWith(META_PREFIX)) continue;
    const key = k.slice(META_PREFIX.length);
    if (!key) throw new InvalidRequestError(`querystring.${META_PREFIX}: a metadata filter needs a key (meta.KEY=VALUE)`);
    for (const value of Array.isArray(v) ? v : [v]) (f.meta ??= []).push([key, String(value)]);
  }
  return f.tags || f.status || f.meta ? f : undefined;
}
