// Server-Sent Events on the wire, written by hand on the raw response: the hub
// needs per-client backpressure, one write per revision, and streams it can end
// on shutdown, which is more control than @fastify/sse 0.x gives. The frames
// are handed to the hub (registry/hub.ts), which builds each one once. The same
// code serves HTTP/1.1 and HTTP/2 responses.
import type { FastifyReply } from 'fastify';
import type { Frames, StreamSink } from '../registry/hub.ts';
import type { Change } from '../registry/types.ts';

export const sseFrames: Frames = {
  change(c: Change): string {
    const data: Record<string, unknown> = { type: c.type, service: c.service, id: c.id, revision: c.revision };
    if (c.instance) data.instance = c.instance;
    if (c.reason) data.reason = c.reason;
    return `id: ${c.revision}\nevent: ${c.type}\ndata: ${JSON.stringify(data)}\n\n`;
  },
  *snapshot(revision, services, reset) {
    // In pieces, from the instances' cached JSON: the hub joins them a slice at a
    // time, and no object tree of the whole registry is built.
    yield `id: ${revision}\nevent: snapshot\ndata: {"revision":${revision}${reset ? ',"reset":true' : ''},"services":{`;
    let first = true;
    for (const [name, list] of services) {
      yield `${first ? '' : ','}${JSON.stringify(name)}:[`;
      first = false;
      for (let i = 0; i < list.length; i++) yield i ? `,${list[i]!.json}` : list[i]!.json;
      yield ']';
    }
    yield '}}\n\n';
  },
  progress: (revision) => `id: ${revision}\nevent: progress\ndata: {"revision":${revision}}\n\n`,
  retry: (ms) => `retry: ${ms}\n\n`,
  keepAlive: ': keep-alive\n\n',
};

/** The headers of a change stream (also the whole answer to HEAD). */
export function streamHeaders(reply: FastifyReply): Record<string, string> {
  const headers: Record<string, string> = {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
  };
  // HTTP/2 forbids connection-specific headers.
  if (reply.request.raw.httpVersionMajor < 2) headers.connection = 'keep-alive';
  return headers;
}

/** Take over the response: headers now, then whatever the hub writes. */
export function openStream(reply: FastifyReply): StreamSink {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { ...(reply.getHeaders() as Record<string, string>), ...streamHeaders(reply) });
  if (reply.request.raw.httpVersionMajor < 2) res.socket?.setNoDelay(true);
  return {
    write: (chunk) => !res.destroyed && res.write(chunk),
    onDrain: (listener) => res.on('drain', listener),
    close: (abrupt) => (abrupt ? res.destroy() : res.end()),
  };
}
