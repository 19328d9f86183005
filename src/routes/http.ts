// Small HTTP helpers shared by the discovery routes: revision headers,
// conditional requests, staleness, and a signal for clients that leave.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Gateway } from '../gateway.ts';
import { StoreUnavailableError } from '../registry/errors.ts';

/** If-None-Match (strong or weak, alone, in a list, or *) names this revision. */
export function notModified(req: FastifyRequest, revision: number): boolean {
  const header = req.headers['if-none-match'];
  if (!header) return false;
  const want = `"${revision}"`;
  for (const raw of header.split(',')) {
    const tag = raw.trim();
    if (tag === '*' || tag === want || tag === `W/${want}`) return true;
  }
  return false;
}

export function revisionHeaders(reply: FastifyReply, revision: number): void {
  reply.header('etag', `"${revision}"`).header('x-registry-revision', String(revision));
}

/**
 * A cached answer while the store is unreachable is still given, marked stale
 * with its age; a service the gateway has never seen cannot be answered.
 */
export function markStale(gw: Gateway, reply: FastifyReply, known: boolean): void {
  if (gw.store.reachable && gw.sync.inSync) return;
  if (!known) throw new StoreUnavailableError('the store is unreachable and this gateway has no copy of that service');
  reply.header('x-registry-stale', 'true').header('age', String(gw.store.secondsSinceContact()));
}

/** Aborted when the client goes away (frees a parked blocking query). */
export function clientGone(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  if (reply.raw.destroyed) ac.abort();
  else reply.raw.once('close', () => ac.abort());
  return ac.signal;
}

/** Parse "10s", "500ms", "2m" into milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,9})(ms|s|m)?$/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

/** 304 with no body. */
export function sendNotModified(reply: FastifyReply): FastifyReply {
  return reply.code(304).send();
}

/** A JSON answer serialized beforehand (the cache keeps bodies ready to send). */
export function sendJson(reply: FastifyReply, body: string): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(body);
}
