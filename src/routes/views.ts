// Response bodies of the discovery reads, rendered once per revision: clients
// poll with the same query, so each query's body is kept (in an LRU bounded by
// CACHE_MAX_SERVICES) under the service name plus the query, and reused while
// the service's revision is the same.
import { LRUCache } from 'lru-cache';
import { filterKey } from '../registry/filter.ts';
import type { Listed, ServiceRead, ServicesRead } from '../registry/reads.ts';
import type { ServiceFilter } from '../registry/types.ts';

interface Rendered {
  revision: number;
  body: string;
}

export class Views {
  private readonly rendered: LRUCache<string, Rendered>;
  private servicesList: Rendered | undefined;

  constructor(maxRenderedServices: number) {
    this.rendered = new LRUCache({ max: maxRenderedServices });
  }

  /** GET /services/{name}: `filter` must be the one the read was made with. */
  service(name: string, read: ServiceRead, filter?: ServiceFilter): string {
    if (read.source === 'store') return renderService(name, read.revision, read.instances);
    const key = filter ? `${name}?${filterKey(filter)}` : name;
    const hit = this.rendered.get(key);
    if (hit && hit.revision === read.revision) return hit.body;
    const body = renderService(name, read.revision, read.instances);
    this.rendered.set(key, { revision: read.revision, body });
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
    this.rendered.clear();
    this.servicesList = undefined;
  }
}

function renderService(service: string, revision: number, list: readonly Listed[]): string {
  let body = `{"service":${JSON.stringify(service)},"revision":${revision},"instances":[`;
  for (let i = 0; i < list.length; i++) body += (i ? ',' : '') + list[i]!.json;
  return `${body}]}`;
}

function renderServices(read: ServicesRead): string {
  return JSON.stringify({ revision: read.revision, services: read.services });
}
