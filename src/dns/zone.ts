// What the zone answers to one question, asked of the registry's watch-fed cache
// the way GET /services/{name} is (no store round trip). Wire details (EDNS0,
// truncation, flags) are wire.ts's; here only records and the response code.
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
import type { Answer, SrvAnswer } from 'dns-packet';
import { isIP } from 'node:net';
import type { SerializedInstance, ServiceRead } from '../registry/discovery.ts';
import type { ZoneName, ZoneNames } from './names.ts';

export type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED';

/** One answer record with the additional records that go with it (an SRV target's address). */
export interface AnswerUnit {
  answer: Answer;
  additionals: Answer[];
}

export interface Reply {
  rcode: Rcode;
  /** In the order to send them (already shuffled): truncation drops from the end. */
  answers: AnswerUnit[];
  /** The SOA, for negative answers. */
  authorities: Answer[];
}

/** The registry reads the zone asks (registry/discovery.ts). */
export interface ZoneSource {
  discover(service: string): Promise<ServiceRead>;
  services(): Promise<{ revision: number }>;
}

export interface ZoneOptions {
  ttlSeconds: number;
  /** With access control on: the services DNS_TOKEN may read (others are NXDOMAIN). */
  canRead?: (service: string) => boolean;
}

/** SOA timers (seconds) as Consul sets them; only `minimum` matters to resolvers of a zone without secondaries. */
const SOA_REFRESH = 3600;
const SOA_RETRY = 600;
const SOA_EXPIRE = 86400;

export class Zone {
  constructor(
    private readonly names: ZoneNames,
    private readonly source: ZoneSource,
    private readonly opts: ZoneOptions,
  ) {}

  async answer(qname: string, qtype: string): Promise<Reply> {
    const name = this.names.parse(qname);
    switch (name.kind) {
      case 'outside':
        return { rcode: 'REFUSED', answers: [], authorities: [] };
      case 'none':
        return this.negative('NXDOMAIN');
      case 'apex':
      case 'branch':
        if (name.kind === 'apex' && qtype === 'SOA')
          return { rcode: 'NOERROR', answers: [{ answer: await this.soa(), additionals: [] }], authorities: [] };
        return this.negative('NOERROR');
      case 'addr':
        return this.addr(qname, qtype, name);
      case 'service':
        return this.service(qname, qtype, name.service, name.tag);
    }
  }

  private async addr(qname: string, qtype: string, name: Extract<ZoneName, { kind: 'addr' }>): Promise<Reply> {
    const type = name.family === 4 ? 'A' : 'AAAA';
    if (qtype !== type && qtype !== 'ANY') return this.negative('NOERROR');
    return { rcode: 'NOERROR', answers: [{ answer: this.record(qname, type, name.address), additionals: [] }], authorities: [] };
  }

  private async service(qname: string, qtype: string, service: string, tag: string | undefined): Promise<Reply> {
    if (this.opts.canRead && !this.opts.canRead(service)) return this.negative('NXDOMAIN');
    const read = await this.source.discover(service);
    const named = tag === undefined ? read.instances : read.instances.filter((x) => hasTag(x, tag));
    if (named.length === 0) return this.negative('NXDOMAIN');
    const up = named.filter((x) => x.record.status === 'up');
    const answers: AnswerUnit[] = [];
    if (qtype === 'SRV') for (const x of up) answers.push(this.srv(qname, x));
    if (qtype === 'A' || qtype === 'AAAA' || qtype === 'ANY') {
      for (const x of up) {
        const family = isIP(x.record.address);
        if ((family === 4 && qtype !== 'AAAA') || (family === 6 && qtype !== 'A'))
          answers.push({ answer: this.record(qname, family === 4 ? 'A' : 'AAAA', x.record.address), additionals: [] });
      }
    }
    if (answers.length === 0) return this.negative('NOERROR');
    return { rcode: 'NOERROR', answers: shuffle(answers), authorities: [] };
  }

  /** RFC 2782: priority 1 for all, the instance's weight, its port, a target that resolves (its address record beside it). */
  private srv(qname: string, x: SerializedInstance): AnswerUnit {
    const { address, port, weight } = x.record;
    const family = isIP(address);
    const target = family ? this.names.addrName(address) : address.replace(/\.$/, '');
    const answer: SrvAnswer = { type: 'SRV', name: qname, ttl: this.opts.ttlSeconds, data: { priority: 1, weight, port, target } };
    return { answer, additionals: family ? [this.record(target, family === 4 ? 'A' : 'AAAA', address)] : [] };
  }

  private record(name: string, type: 'A' | 'AAAA', address: string): Answer {
    return { type, name, ttl: this.opts.ttlSeconds, data: address };
  }

  private async negative(rcode: 'NOERROR' | 'NXDOMAIN'): Promise<Reply> {
    return { rcode, answers: [], authorities: [await this.soa()] };
  }

  /** The zone's serial is the latest store revision this gateway has applied. */
  private async soa(): Promise<Answer> {
    const { revision } = await this.source.services();
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

function hasTag(x: SerializedInstance, tag: string): boolean {
  return x.record.tags.some((t) => t.toLowerCase() === tag);
}

/** Fisher–Yates, in place: every order equally likely, so clients that take the first record spread. */
function shuffle<T>(list: T[]): T[] {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  return list;
}
