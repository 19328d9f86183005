// What the zone answers to one question, asked of the registry's watch-fed cache
// the way GET /services/{name} is (no store round trip). Wire details (EDNS0,
// truncation, flags) are wire.ts's; here only records and the response code. The
// records of a service name are encoded once and kept until the service changes.
//
// Where API.md is silent, as Consul's DNS interface does:
// - A name exists when an instance of any status matches it (the service, or the
//   service with that tag: tags compare without case, as DNS names do); it then
//   answers NOERROR, with no records when none of those instances is `up`.
// - ANY is answered as A and AAAA together; other types at an existing name get
//   NOERROR with no records (NODATA), and the SOA.
// - The SOA's serial is the latest store revision the gateway applied, its minimum (how long
//   resolvers keep a negative answer) DNS_TTL_SECONDS: a new service is seen
//   within the same time as a new instance.
import type { Answer, SoaAnswer, SrvAnswer, StringAnswer } from 'dns-packet';
import { isIP } from 'node:net';
import type { SerializedInstance, ServiceRead } from '../registry/discovery.ts';
import type { ZoneName, ZoneNames } from './names.ts';
import type { PreparedAnswers } from './prepared.ts';
import { encodeRecord, encodeUnit, type EncodedUnit } from './wire.ts';

export type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED';

/** A record of the answer section: its owner is the question's name, which wire.ts writes as a pointer. */
export type AnswerRecord = Omit<StringAnswer, 'name'> | Omit<SrvAnswer, 'name'> | Omit<SoaAnswer, 'name'>;

/** A service name's answer records, encoded once and kept until the service changes (prepared.ts). */
export type ServiceRecords = readonly EncodedUnit[];

export interface Reply {
  rcode: Rcode;
  /** Encoded, in no particular order: each answer shuffles them (wire.ts). */
  answers: readonly EncodedUnit[];
  /** The SOA, encoded, for negative answers. */
  authorities: readonly Buffer[];
}

/** The registry reads the zone asks (registry/discovery.ts): the cache's, at once. */
export interface ZoneSource {
  cached(service: string): ServiceRead;
  readonly appliedRevision: number;
}

export interface ZoneOptions {
  ttlSeconds: number;
  /** With access control on: the services DNS_TOKEN may read (others are NXDOMAIN). */
  canRead?: (service: string) => boolean;
}

/** Question types answered with records; every other type at an existing name gets none (NODATA). */
const RECORD_TYPES = new Set(['A', 'AAAA', 'ANY', 'SRV']);

/** SOA timers (seconds) as Consul sets them; only `minimum` matters to resolvers of a zone without secondaries. */
const SOA_REFRESH = 3600;
const SOA_RETRY = 600;
const SOA_EXPIRE = 86400;

export class Zone {
  /** The SOA of negative answers, encoded once per revision: its serial is the revision. */
  private negativeSoa: { revision: number; encoded: Buffer } | undefined;

  constructor(
    private readonly names: ZoneNames,
    private readonly source: ZoneSource,
    private readonly opts: ZoneOptions,
    private readonly prepared: PreparedAnswers<ServiceRecords>,
  ) {}

  /** Synchronous: every answer comes from the cache, and the next datagram waits for none of them. */
  answer(qname: string, qtype: string): Reply {
    const name = this.names.parse(qname);
    switch (name.kind) {
      case 'outside':
        return { rcode: 'REFUSED', answers: [], authorities: [] };
      case 'none':
        return this.negative('NXDOMAIN');
      case 'apex':
      case 'branch':
        if (name.kind === 'apex' && qtype === 'SOA') return { rcode: 'NOERROR', answers: [encodeUnit(this.soa(), [])], authorities: [] };
        return this.negative('NOERROR');
      case 'addr':
        return this.addr(qtype, name);
      case 'service':
        return this.service(qtype, name.service, name.tag);
    }
  }

  private addr(qtype: string, name: Extract<ZoneName, { kind: 'addr' }>): Reply {
    const type = name.family === 4 ? 'A' : 'AAAA';
    if (qtype !== type && qtype !== 'ANY') return this.negative('NOERROR');
    return { rcode: 'NOERROR', answers: [encodeUnit(this.address(type, name.address), [])], authorities: [] };
  }

  private service(qtype: string, service: string, tag: string | undefined): Reply {
    if (this.opts.canRead && !this.opts.canRead(service)) return this.negative('NXDOMAIN');
    const read = this.source.cached(service);
    // Every type without records gets the same answer: one entry for all of them keeps the entries few.
    const question = `${tag ?? ''} ${RECORD_TYPES.has(qtype) ? qtype : 'other'}`;
    const records = this.prepared.get(service, read.revision, question, () => this.records(qtype, read.instances, tag));
    if (!records) return this.negative('NXDOMAIN');
    if (records.length === 0) return this.negative('NOERROR');
    return { rcode: 'NOERROR', answers: records, authorities: [] };
  }

  /** The records of the `up` instances a name covers, encoded. */
  private records(qtype: string, instances: readonly SerializedInstance[], tag: string | undefined): ServiceRecords | undefined {
    const named = tag === undefined ? instances : instances.filter((x) => hasTag(x, tag));
    if (named.length === 0) return undefined;
    const records: EncodedUnit[] = [];
    for (const x of named) {
      if (x.record.status !== 'up') continue;
      if (qtype === 'SRV') records.push(this.srv(x));
      const type = addressType(x.record.address);
      if (type && (qtype === type || qtype === 'ANY')) records.push(encodeUnit(this.address(type, x.record.address), []));
    }
    return records;
  }

  /** RFC 2782: priority 1 for all, the instance's weight, its port, a target that resolves (its address record beside it). */
  private srv(x: SerializedInstance): EncodedUnit {
    const { address, port, weight } = x.record;
    const type = addressType(address);
    const target = type ? this.names.addrName(address) : address.replace(/\.$/, '');
    const srv: Omit<SrvAnswer, 'name'> = { type: 'SRV', ttl: this.opts.ttlSeconds, data: { priority: 1, weight, port, target } };
    const additionals: Answer[] = type ? [{ name: target, ...this.address(type, address) }] : [];
    return encodeUnit(srv, additionals);
  }

  private address(type: 'A' | 'AAAA', address: string): Omit<StringAnswer, 'name'> {
    return { type, ttl: this.opts.ttlSeconds, data: address };
  }

  private negative(rcode: 'NOERROR' | 'NXDOMAIN'): Reply {
    const revision = this.source.appliedRevision;
    if (this.negativeSoa?.revision !== revision) this.negativeSoa = { revision, encoded: encodeRecord(this.soa()) };
    return { rcode, answers: [], authorities: [this.negativeSoa.encoded] };
  }

  /** The zone's serial is the latest store revision this gateway has applied. */
  private soa(): SoaAnswer {
    const revision = this.source.appliedRevision;
    const domain = this.names.domain;
    return {
      type: 'SOA',
      name: domain,
      ttl: this.opts.ttlSeconds,
      data: {
        mname: `ns.${domain}`,
        rname: `hostmaster.${domain}`,
        serial: revision % 2 ** 32,
        refresh: SOA_REFRESH,
        retry: SOA_RETRY,
        expire: SOA_EXPIRE,
        minimum: this.opts.ttlSeconds,
      },
    };
  }
}

/** The address record type of an instance registered with an IP address; undefined for a host name. */
function addressType(address: string): 'A' | 'AAAA' | undefined {
  const family = isIP(address);
  return family === 4 ? 'A' : family === 6 ? 'AAAA' : undefined;
}

function hasTag(x: SerializedInstance, tag: string): boolean {
  return x.record.tags.some((t) => t.toLowerCase() === tag);
}
