// The discovery filters (tag, status, meta.KEY) and the weighted pick, as the
// gateway applies them (GET /services/{name}, /pick, /sd/prometheus) and as the
// client applies them to its watched view: one meaning in both places. No
// imports: the client package compiles this file as it is.

/** What a filter looks at in an instance record. */
export interface Filterable {
  readonly status: string;
  readonly tags: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly weight: number;
}

/** tag=T (all must match), status=S, meta.KEY=VALUE (all must match). */
export interface ServiceFilter {
  tags?: readonly string[];
  status?: string;
  meta?: readonly (readonly [key: string, value: string])[];
}

export function matches(x: Filterable, f: ServiceFilter): boolean {
  return (f.status === undefined || x.status === f.status) && matchesTagsAndMeta(x, f);
}

function matchesTagsAndMeta(x: Filterable, f: ServiceFilter): boolean {
  if (f.tags) for (const t of f.tags) if (!x.tags.includes(t)) return false;
  // Own properties only: a key such as `toString` or `__proto__` is data like any other.
  if (f.meta) for (const [k, v] of f.meta) if (!Object.hasOwn(x.metadata, k) || x.metadata[k] !== v) return false;
  return true;
}

/**
 * One string per distinct filter: answers rendered for a query are kept under it.
 * Filters that select the same instances (tags or meta pairs in another order or
 * repeated) get the same key.
 */
export function filterKey(f: ServiceFilter): string {
  // Made on every filtered read: the usual query (one tag, nothing else) is written
  // directly, the same string as below; the others skip what they do not need.
  if (f.tags?.length === 1 && f.status === undefined && !f.meta) return `["",[${JSON.stringify(f.tags[0])}],[]]`;
  const tags = f.tags && f.tags.length > 1 ? [...new Set(f.tags)].sort() : (f.tags ?? []);
  const meta = f.meta ? [...new Set(f.meta.map((pair) => JSON.stringify(pair)))].sort() : [];
  return JSON.stringify([f.status ?? '', tags, meta]);
}

/** Only instances that are up with a weight above 0 are picked; status is not a filter of the pick. */
function pickable(x: Filterable, filter: ServiceFilter | undefined): boolean {
  return x.status === 'up' && x.weight > 0 && (!filter || matchesTagsAndMeta(x, filter));
}

/**
 * One item chosen at random in proportion to its record's weight, among those
 * pickable (GET /services/{name}/pick), without building a filtered list: one
 * pass for the total weight, one draw, one pass to the item the draw falls on.
 */
export function pickWeighted<T>(
  items: readonly T[],
  recordOf: (item: T) => Filterable,
  filter?: ServiceFilter,
  random: () => number = Math.random,
): T | undefined {
  let total = 0;
  for (const x of items) if (pickable(recordOf(x), filter)) total += recordOf(x).weight;
  if (total === 0) return undefined;
  let draw = Math.floor(random() * total); // weights are integers: 0 <= draw < total
  for (const x of items) {
    const record = recordOf(x);
    if (!pickable(record, filter)) continue;
    draw -= record.weight;
    if (draw < 0) return x;
  }
  return undefined; // unreachable: the draw is below the total
}
