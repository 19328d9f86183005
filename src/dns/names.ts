// The names of the DNS zone, read and written in one place (API.md "DNS interface"):
//   {service}.service.{domain}, {tag}.{service}.service.{domain}
//   _{service}._tcp.service.{domain}, _{service}._{tag}.service.{domain} (RFC 2782)
//   {hex address}.addr.{domain}: the SRV target of an instance registered with an IP
//     address, as Consul's `addr` names (8 hex digits for IPv4, 32 for IPv6).
// A service whose name holds a dot has more labels than these forms and is never
// reached: `a.b.service.{domain}` reads as tag `a` of service `b`.
import { LRUCache } from 'lru-cache';
import { isIP } from 'node:net';
import { isServiceName } from '../rules.ts';

export type ZoneName =
  /** Not under the domain: the gateway never recurses (REFUSED). */
  | { kind: 'outside' }
  /** The domain itself: it holds the SOA. */
  | { kind: 'apex' }
  /** `service.{domain}` or `addr.{domain}`: names exist below them, none here. */
  | { kind: 'branch' }
  | { kind: 'service'; service: string; tag?: string }
  | { kind: 'addr'; address: string; family: 4 | 6 }
  /** Under the domain, but no name of the zone (NXDOMAIN). */
  | { kind: 'none' };

const HEX = /^[0-9a-f]+$/;
/** Resolvers ask the same names again and again; a client asking random ones only evicts older ones. */
const PARSED_NAMES = 10_000;

export class ZoneNames {
  /** The domain's labels, lowercase. */
  private readonly domainLabels: string[];

  constructor(readonly domain: string) {
    this.domainLabels = domain.split('.');
  }

  private readonly parsed = new LRUCache<string, ZoneName>({ max: PARSED_NAMES });

  /** What a question's name (any case, with or without the final dot) names. */
  parse(qname: string): ZoneName {
    let name = this.parsed.get(qname);
    if (!name) this.parsed.set(qname, (name = this.read(qname)));
    return name;
  }

  private read(qname: string): ZoneName {
    const labels = qname.toLowerCase().replace(/\.$/, '').split('.');
    const inner = labels.length - this.domainLabels.length;
    if (inner < 0 || this.domainLabels.some((l, i) => labels[inner + i] !== l)) return { kind: 'outside' };
    if (inner === 0) return { kind: 'apex' };
    const kind = labels[inner - 1];
    const rest = labels.slice(0, inner - 1);
    if (rest.length === 0) return kind === 'service' || kind === 'addr' ? { kind: 'branch' } : { kind: 'none' };
    if (kind === 'addr') return rest.length === 1 ? this.addr(rest[0]!) : { kind: 'none' };
    if (kind !== 'service' || rest.length > 2) return { kind: 'none' };
    if (rest[0]!.startsWith('_') && rest.length === 2 && rest[1]!.startsWith('_')) {
      // As Consul: `_tcp` is the protocol of RFC 2782, not a tag.
      const tag = rest[1]!.slice(1);
      return this.service(rest[0]!.slice(1), tag === 'tcp' ? undefined : tag);
    }
    return rest.length === 2 ? this.service(rest[1]!, rest[0]) : this.service(rest[0]!);
  }

  /** The name an SRV record gives as the target of an instance registered with this IP address. */
  addrName(address: string): string {
    const hex = isIP(address) === 4 ? Buffer.from(address.split('.').map(Number)).toString('hex') : expandIPv6(address);
    return `${hex}.addr.${this.domain}`;
  }

  private service(service: string, tag?: string): ZoneName {
    if (!isServiceName(service) || tag === '') return { kind: 'none' };
    return tag === undefined ? { kind: 'service', service } : { kind: 'service', service, tag };
  }

  private addr(hex: string): ZoneName {
    if (!HEX.test(hex)) return { kind: 'none' };
    if (hex.length === 8) return { kind: 'addr', family: 4, address: [...Buffer.from(hex, 'hex')].join('.') };
    if (hex.length === 32) return { kind: 'addr', family: 6, address: hex.match(/.{4}/g)!.join(':') };
    return { kind: 'none' };
  }
}

/** An IPv6 address as 32 hex digits (`::` expanded, an embedded IPv4 tail converted). */
function expandIPv6(address: string): string {
  let text = address.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...new Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.map((g) => g.padStart(4, '0')).join('');
}
