// Response bodies of the discovery reads, rendered once per revision: clients
// poll with the same query, so each query's body is kept under the service name
// plus the query (filters normalized), and reused while the service's revision
// is the same. Memory is bounded in bytes (CACHE_MAX_BYTES): unfiltered answers
// and filtered ones have separate shares, so random filter values cannot push
// out the hot answers, and empty answers (unknown names among them) are not kept.
import { LRUCache } from 'lru-cache';
import { filterKey, type ServiceFilter } from '../discovery-query/filter.ts';
import type { SerializedInstance, ServiceRead, ServicesRead } from '../registry/discovery.ts';

/** The share of CACHE_MAX_BYTES for answers narrowed by a filter. */
export const FILTERED_SHARE = 0.25;

interface Rendered {
  revision: number;
  body: string;
}

function boundedBy(maxSize: number): LRUCache<string, Rendered> {
  // Characters, a close enough measure of bytes for JSON that is mostly ASCII.
  return new LRUCache({ maxSize: Math.max(1, Math.floor(maxSize)), sizeCalculation: (r, key) => r.body.length + key.length });
}

export class Views {
  private readonly plain: LRUCache<string, Rendered>;
  private readonly filtered: LRUCache<string, Rendered>;
  private servicesList: Rendered | undefined;

  constructor(maxBytes: number) {
    this.plain = boundedBy(maxBytes * (1 - FILTERED_SHARE));
    this.filtered = boundedBy(maxBytes * FILTERED_SHARE);
  }

  /** GET /services/{name}: `filter` must be the one the read was made with. */
  service(name: string, read: ServiceRead, filter?: ServiceFilter): string {
    if (read.source === 'store') return renderService(name, read.revision, read.instances);
    const cache = filter ? this.filtered : this.plain;
    const key = filter ? `${name}?${filterKey(filter)}` : name;
    const hit = cache.get(key);
    if (hit && hit.revision === read.revision) return hit.body;
    const body = renderService(name, read.revision, read.instances);
    if (read.instances.length) cache.set(key, { revision: read.revision, body });
    else cache.delete(key);
    return body;
  }

  /** GET /services: the whole list is rendered once per revision; a list narrowed by a token's rights per call. */
  services(read: ServicesRead, narrowed: boolean): string {
    if (read.source === 'store' || narrowed) return renderServices(read);
    if (this.servicesList?.revision === read.revision) return this.servicesList.body;
    this.servicesList = { revision: read.revision, body: renderServices(read) };
    return this.servicesList.body;
  }

  /** The cache was reloaded: bodies kept so far are dropped. */
  clear(): void {
    this.plain.clear();
    this.filtered.clear();
    this.servicesList = undefined;
  }
}

function renderService(service: string, revision: number, list: readonly SerializedInstance[]): string {
  let body = `{"service":${JSON.stringify(service)},"revision":${revision},"instances":[`;
  for (let i = 0; i < list.length; i++) body += (i ? ',' : '') + list[i]!.json;
  return `${body}]}`;
}

function renderServices(read: ServicesRead): string {
  return JSON.stringify({ revision: read.revision, services: read.services });
}
