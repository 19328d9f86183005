// The key layout, built and parsed here only:
//   {prefix}/{service}/{id}         one instance, value = the record as JSON
//   {prefix}/_/…                    bookkeeping (no service name can start with "_")

import { isInstanceId, isServiceName } from '../rules.ts';

export type ParsedKey = { kind: 'instance'; service: string; id: string } | { kind: 'bookkeeping'; rest: string } | { kind: 'foreign' };

export class KeyLayout {
  /** `prefix` without a trailing slash, e.g. "/services". */
  constructor(readonly prefix: string) {}

  /** Everything the gateway owns: instances and bookkeeping. */
  get root(): string {
    return `${this.prefix}/`;
  }

  instance(service: string, id: string): string {
    return `${this.prefix}/${service}/${id}`;
  }

  service(service: string): string {
    return `${this.prefix}/${service}/`;
  }

  /**
   * Bookkeeping key written in the same transaction as deletes made through the
   * API; its value lists the instances deleted (see changes.ts). `token` is unique per write.
   */
  deregistered(token: string): string {
    return `${this.prefix}/_/deregistered/${token}`;
  }

  parse(key: string): ParsedKey {
    if (!key.startsWith(this.root)) return { kind: 'foreign' };
    const rest = key.slice(this.root.length);
    if (rest.startsWith('_/')) return { kind: 'bookkeeping', rest: rest.slice(2) };
    const slash = rest.indexOf('/');
    if (slash < 0) return { kind: 'foreign' };
    const service = rest.slice(0, slash);
    const id = rest.slice(slash + 1);
    if (!isServiceName(service) || !isInstanceId(id)) return { kind: 'foreign' };
    return { kind: 'instance', service, id };
  }

  /** Bookkeeping key written only to get a revision in the watched range (a replay fence). */
  fence(token: string): string {
    return `${this.prefix}/_/fence/${token}`;
  }

  /** A bookkeeping key never written: reading it costs the store no data and answers its revision. */
  get revisionProbe(): string {
    return `${this.prefix}/_/revision-probe`;
  }

  isDeregisteredMarker(rest: string): boolean {
    return rest.startsWith('deregistered/');
  }
}
