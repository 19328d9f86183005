// How a discovery read becomes an HTTP answer: the revision as ETag and
// X-Registry-Revision, 304 for a matching If-None-Match, the stale marking, and
// a signal for clients that leave.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { DiscoveryRead, Freshness } from '../registry/discovery.ts';

/** If-None-Match (strong or weak, alone, in a list, or *) names this revision. */
function notModified(req: FastifyRequest, revision: number): boolean {
  const header = req.headers['if-none-match'];
  if (!header) return false;
  const want = `"${revision}"`;
  for (const raw of header.split(',')) {
    const tag = raw.trim();
    if (tag === '*' || tag === want || tag === `W/${want}`) return true;
  }
  return false;
}

/** An answer that may be behind the store says so, with its age in seconds. */
export function staleHeaders(reply: FastifyReply, read: Freshness): void {
  if (read.stale) reply.header('x-registry-stale', 'true').header('age', String(read.age));
}

function revisionHeaders(reply: FastifyReply, revision: number): void {
  reply.header('etag', `"${revision}"`).header('x-registry-revision', String(revision));
}

/**
 * A read with its headers, and its body (rendered only when needed), or 304. Also a
 * read from the store (consistent=true, minRevision fallback) may be a 304: its label
 * follows the cache's rule (registry/discovery.ts), so an unchanged service keeps its ETag.
 */
export function sendRead(req: FastifyRequest, reply: FastifyReply, read: DiscoveryRead, body: () => string): FastifyReply {
  staleHeaders(reply, read);
  revisionHeaders(reply, read.revision);
  if (notModified(req, read.revision)) return reply.code(304).send();
  return sendJson(reply, body());
}

/** A JSON answer serialized beforehand. A string, not a Buffer: Node then writes headers and body in one write. */
export function sendJson(reply: FastifyReply, body: string): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(body);
}

/** Aborted when the client goes away (frees a parked blocking query). */
export function clientGone(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  if (reply.raw.destroyed) ac.abort();
  else reply.raw.once('close', () => ac.abort());
  return ac.signal;
}
