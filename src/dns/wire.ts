// DNS messages <-> what the zone is asked and answers, with dns-packet reading
// queries and encoding records: which queries are answered at all (one question, opcode QUERY, class
// IN, EDNS version 0), and the size rule: a UDP answer fits 512 bytes or the
// client's EDNS0 buffer, cut at a whole answer record (with the additional
// records that belong to it) and marked TC; over TCP the limit is the frame's.
import packet, { type Answer, type OptAnswer, type Question } from 'dns-packet';
import type { AnswerRecord, Rcode, Reply } from './zone.ts';

/** The largest UDP answer the gateway sends, and advertises in its own OPT record. */
export const MAX_UDP_PAYLOAD = 4096;
/** A UDP answer to a client without EDNS0 (RFC 1035). */
const CLASSIC_UDP_PAYLOAD = 512;
/** A TCP frame's length field is 16 bits. */
export const MAX_TCP_PAYLOAD = 65535;
const HEADER_BYTES = 12;
/** Offsets in the header: flags, then the counts of the answer, authority and additional sections. */
const FLAGS_AT = 2;
const QDCOUNT_AT = 4;
const ANCOUNT_AT = 6;
const NSCOUNT_AT = 8;
const ARCOUNT_AT = 10;
const QR_BIT = 0x8000;
/** EDNS0's extended rcode 16 (BADVERS) is 1 in the OPT record's upper bits and 0 in the header. */
const BADVERS_EXTENDED = 1;

const RCODES: Record<Rcode, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

export interface Query {
  id: number;
  /** The header's RD bit, echoed in the answer. */
  recursionDesired: boolean;
  question: Question;
  /** The question as the client wrote it, echoed byte for byte (the case of its name too). */
  questionBytes: Buffer;
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
  const questionBytes = questionAsSent(msg);
  if (!questionBytes) return { id, rcode: 'FORMERR', edns: false };
  const opts = (decoded.additionals ?? []).filter((a): a is OptAnswer => a.type === 'OPT');
  if (opts.length > 1) return { id, rcode: 'FORMERR', question, edns: false };
  const opt = opts[0];
  if (opt && opt.ednsVersion !== 0) return { id, rcode: 'BADVERS', question, edns: true };
  if (question.class !== 'IN') return { id, rcode: 'REFUSED', question, edns: !!opt };
  return { id, recursionDesired: decoded.flag_rd, question, questionBytes, ednsPayload: opt?.udpPayloadSize };
}

/** Type and class follow the question's name. */
const TYPE_AND_CLASS_BYTES = 4;
const LABEL_IS_POINTER = 0xc0;

/**
 * The bytes of a message's first question, which dns-packet has already read and
 * checked: its name's labels up to the root, then type and class. Undefined for a
 * name compressed with a pointer: nothing precedes the first question to point to.
 */
function questionAsSent(msg: Buffer): Buffer | undefined {
  let at = HEADER_BYTES;
  while (at < msg.length && msg[at] !== 0) {
    if (msg[at]! & LABEL_IS_POINTER) return undefined;
    at += 1 + msg[at]!;
  }
  const end = at + 1 + TYPE_AND_CLASS_BYTES;
  return end <= msg.length ? msg.subarray(HEADER_BYTES, end) : undefined;
}

/** The most bytes an answer to this query may take over UDP. */
export function udpLimit(query: Query): number {
  if (query.ednsPayload === undefined) return CLASSIC_UDP_PAYLOAD;
  return Math.min(Math.max(query.ednsPayload, CLASSIC_UDP_PAYLOAD), MAX_UDP_PAYLOAD);
}

/**
 * One answer record and the additional records that go with it (an SRV target's
 * address), encoded once and copied into every answer that shows them. The answer
 * record's owner is always the question's name: it is written as a pointer to the
 * question (RFC 1035 4.1.4), so the same bytes answer every spelling of the name.
 */
export interface EncodedUnit {
  answer: Buffer;
  additionals: Buffer;
  additionalCount: number;
}

/** The question always starts right after the header: a name pointer to offset 12. */
const QUESTION_NAME = Buffer.from([0xc0, HEADER_BYTES]);
/** The answer record is encoded at the root name (one zero byte), then the pointer replaces that byte. */
const ROOT_NAME_BYTES = 1;
const NO_BYTES = Buffer.alloc(0);

/** One whole record (its owner name written out), as the authority section carries the SOA. */
export function encodeRecord(record: Answer): Buffer {
  return packet.encode({ answers: [record] }).subarray(HEADER_BYTES);
}

export function encodeUnit(answer: AnswerRecord, additionals: Answer[]): EncodedUnit {
  const atRoot = { ...answer, name: '.' } as Answer;
  const body = packet.encode({ answers: [atRoot], additionals }).subarray(HEADER_BYTES);
  const answerBytes = packet.encodingLength({ answers: [atRoot] }) - HEADER_BYTES;
  return {
    answer: Buffer.concat([QUESTION_NAME, body.subarray(ROOT_NAME_BYTES, answerBytes)]),
    additionals: body.subarray(answerBytes),
    additionalCount: additionals.length,
  };
}

/**
 * Authoritative, never recursing; RD echoed. The answer records in a new random
 * order each time (clients that take the first record spread), as many whole
 * ones (each with its additional records) as fit in `limit`; TC when some were
 * left out. Every part is bytes already: the header's fields are set, the question
 * copied from the query, and the records (encoded by dns-packet when the service
 * last changed) copied after it.
 */
export function writeReply(query: Query, reply: Reply, limit: number): Buffer {
  const headBytes = HEADER_BYTES + query.questionBytes.length;
  let authorityBytes = 0;
  for (const record of reply.authorities) authorityBytes += record.length;
  const opt = query.ednsPayload === undefined ? NO_BYTES : OWN_OPT;

  // Fisher–Yates, one step per record taken: a uniformly random order, and a random subset when cut.
  const order = reply.answers.slice();
  let size = headBytes + authorityBytes + opt.length;
  let kept = 0;
  let additionalCount = 0;
  for (; kept < order.length; kept++) {
    const pick = kept + Math.floor(Math.random() * (order.length - kept));
    const unit = order[pick]!;
    if (size + unit.answer.length + unit.additionals.length > limit) break;
    order[pick] = order[kept]!;
    order[kept] = unit;
    size += unit.answer.length + unit.additionals.length;
    additionalCount += unit.additionalCount;
  }

  const out = Buffer.allocUnsafe(size);
  const flags =
    QR_BIT |
    // Authoritative for the zone's own data only: not for a name outside it.
    (reply.rcode === 'NOERROR' || reply.rcode === 'NXDOMAIN' ? packet.AUTHORITATIVE_ANSWER : 0) |
    (query.recursionDesired ? packet.RECURSION_DESIRED : 0) |
    (kept < order.length ? packet.TRUNCATED_RESPONSE : 0) |
    RCODES[reply.rcode];
  out.writeUInt16BE(query.id, 0);
  out.writeUInt16BE(flags, FLAGS_AT);
  out.writeUInt16BE(1, QDCOUNT_AT);
  let at = HEADER_BYTES + query.questionBytes.copy(out, HEADER_BYTES);
  for (let i = 0; i < kept; i++) at += order[i]!.answer.copy(out, at);
  for (const record of reply.authorities) at += record.copy(out, at);
  for (let i = 0; i < kept; i++) at += order[i]!.additionals.copy(out, at);
  opt.copy(out, at);
  out.writeUInt16BE(kept, ANCOUNT_AT);
  out.writeUInt16BE(reply.authorities.length, NSCOUNT_AT);
  out.writeUInt16BE(additionalCount + (opt.length ? 1 : 0), ARCOUNT_AT);
  return out;
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

/** The gateway's own OPT record, encoded once. */
const OWN_OPT = packet.encode({ additionals: [ownOpt()] }).subarray(HEADER_BYTES);

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
