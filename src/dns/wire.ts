// DNS messages <-> what the zone is asked and answers, with dns-packet doing the
// encoding: which queries are answered at all (one question, opcode QUERY, class
// IN, EDNS version 0), and the size rule: a UDP answer fits 512 bytes or the
// client's EDNS0 buffer, cut at a whole answer record (with the additional
// records that belong to it) and marked TC; over TCP the limit is the frame's.
import packet, { type Answer, type OptAnswer, type Packet, type Question } from 'dns-packet';
import type { Rcode, Reply } from './zone.ts';

/** The largest UDP answer the gateway sends, and advertises in its own OPT record. */
export const MAX_UDP_PAYLOAD = 4096;
/** A UDP answer to a client without EDNS0 (RFC 1035). */
const CLASSIC_UDP_PAYLOAD = 512;
/** A TCP frame's length field is 16 bits. */
export const MAX_TCP_PAYLOAD = 65535;
const HEADER_BYTES = 12;
const QR_BIT = 0x8000;
/** EDNS0's extended rcode 16 (BADVERS) is 1 in the OPT record's upper bits and 0 in the header. */
const BADVERS_EXTENDED = 1;

const RCODES: Record<Rcode, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

export interface Query {
  id: number;
  /** The header's RD bit, echoed in the answer. */
  recursionDesired: boolean;
  question: Question;
  /** The client's EDNS0 buffer size, when it sent an OPT record. */
  ednsPayload?: number;
}

/** A message the gateway answers with an error code only (no zone lookup). */
export interface Refusal {
  id: number;
  rcode: Rcode | 'BADVERS';
  /** Echoed when the question could be read. */
  question?: Question;
  edns: boolean;
}

/**
 * What a message asks; undefined when it gets no answer at all: shorter than a
 * header, or itself an answer (never answer answers: no loops between servers).
 */
export function readQuery(msg: Buffer): Query | Refusal | undefined {
  if (msg.length < HEADER_BYTES || msg.readUInt16BE(2) & QR_BIT) return undefined;
  const id = msg.readUInt16BE(0);
  const opcode = (msg.readUInt16BE(2) >> 11) & 0xf;
  if (opcode !== 0) return { id, rcode: 'NOTIMP', edns: false };
  // One question per message, as every resolver sends (RFC 9619).
  if (msg.readUInt16BE(4) !== 1) return { id, rcode: 'FORMERR', edns: false };
  let decoded;
  try {
    decoded = packet.decode(msg);
  } catch {
    return { id, rcode: 'FORMERR', edns: false };
  }
  const question = decoded.questions![0]!;
  const opts = (decoded.additionals ?? []).filter((a): a is OptAnswer => a.type === 'OPT');
  if (opts.length > 1) return { id, rcode: 'FORMERR', question, edns: false };
  const opt = opts[0];
  if (opt && opt.ednsVersion !== 0) return { id, rcode: 'BADVERS', question, edns: true };
  if (question.class !== 'IN') return { id, rcode: 'REFUSED', question, edns: !!opt };
  return { id, recursionDesired: decoded.flag_rd, question, ednsPayload: opt?.udpPayloadSize };
}

/** The most bytes an answer to this query may take over UDP. */
export function udpLimit(query: Query): number {
  if (query.ednsPayload === undefined) return CLASSIC_UDP_PAYLOAD;
  return Math.min(Math.max(query.ednsPayload, CLASSIC_UDP_PAYLOAD), MAX_UDP_PAYLOAD);
}

/** Authoritative, never recursing; RD echoed; TC when records were left out. */
export function writeReply(query: Query, reply: Reply, limit: number): Buffer {
  const base: Packet = {
    type: 'response',
    id: query.id,
    flags: packet.AUTHORITATIVE_ANSWER | (query.recursionDesired ? packet.RECURSION_DESIRED : 0) | RCODES[reply.rcode],
    questions: [query.question],
    answers: [],
    authorities: reply.authorities,
    additionals: query.ednsPayload === undefined ? [] : [ownOpt()],
  };
  const answers: Answer[] = [];
  const additionals: Answer[] = [];
  for (const unit of reply.answers) {
    answers.push(unit.answer);
    additionals.push(...unit.additionals);
  }
  // Encoding measures the message anyway: encode once and check, rather than measure first.
  const full = packet.encode({ ...base, answers, additionals: [...additionals, ...base.additionals!] });
  if (full.length <= limit) return full;

  // Too big: whole answers (each with its additional records) while they fit.
  let size = packet.encodingLength(base);
  const kept: Answer[] = [];
  const keptAdditionals: Answer[] = [];
  for (const unit of reply.answers) {
    const unitSize = packet.encodingLength({ answers: [unit.answer], additionals: unit.additionals }) - HEADER_BYTES;
    if (size + unitSize > limit) break;
    size += unitSize;
    kept.push(unit.answer);
    keptAdditionals.push(...unit.additionals);
  }
  return packet.encode({
    ...base,
    flags: base.flags! | packet.TRUNCATED_RESPONSE,
    answers: kept,
    additionals: [...keptAdditionals, ...base.additionals!],
  });
}

/** An answer that is only an error code (and the question, when it could be read). */
export function writeRefusal(refusal: Refusal): Buffer {
  const badVersion = refusal.rcode === 'BADVERS';
  return packet.encode({
    type: 'response',
    id: refusal.id,
    flags: badVersion ? 0 : RCODES[refusal.rcode as Rcode],
    questions: refusal.question ? [refusal.question] : [],
    answers: [],
    authorities: [],
    additionals: refusal.edns ? [{ ...ownOpt(), extendedRcode: badVersion ? BADVERS_EXTENDED : 0 }] : [],
  });
}

function ownOpt(): OptAnswer {
  return {
    type: 'OPT',
    name: '.',
    udpPayloadSize: MAX_UDP_PAYLOAD,
    extendedRcode: 0,
    ednsVersion: 0,
    flags: 0,
    flag_do: false,
    options: [],
  };
}
