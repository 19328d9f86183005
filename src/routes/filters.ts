// The discovery filters (tag, status, meta.KEY), shared by every route that
// narrows a service's instances: GET /services/{name}, /pick, /sd/prometheus.
import { Type } from '@sinclair/typebox';
import { InvalidRequestError } from '../registry/errors.ts';
import type { InstanceStatus, ServiceFilter } from '../registry/types.ts';

export const TagFilter = Type.Optional(
  Type.Array(Type.String(), { description: 'Only instances with this tag (repeatable: all must match)' }),
);

/** Schema options of a querystring that takes meta.KEY=VALUE filters (repeatable: all must match). */
export const metaFilterOptions = {
  additionalProperties: true,
  patternProperties: { '^meta\\.': Type.String() },
  description: 'meta.KEY=VALUE filters are repeatable: all must match',
} as const;

/** The filters of a discovery query, or undefined when there are none. */
export function filterOf(query: Record<string, unknown>): ServiceFilter | undefined {
  const f: ServiceFilter = {};
  if (Array.isArray(query.tag) && query.tag.length) f.tags = query.tag as string[];
  if (query.status) f.status = query.status as InstanceStatus;
  for (const [k, v] of Object.entries(query)) {
    if (!k.startsWith('meta.')) continue;
    const key = k.slice(5);
    if (!key) throw new InvalidRequestError('querystring.meta.: a metadata filter needs a key (meta.KEY=VALUE)');
    for (const value of Array.isArray(v) ? v : [v]) (f.meta ??= []).push([key, String(value)]);
  }
  return f.tags || f.status || f.meta ? f : undefined;
}
