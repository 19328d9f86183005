// A change stream's HTTP response, written by hand on the raw response: the hub
// needs per-client backpressure, one write per revision, and streams it can end
// on shutdown, which is more control than @fastify/sse 0.x gives. The same code
// serves HTTP/1.1 and HTTP/2 responses.
import type { FastifyReply } from 'fastify';
import type { StreamSink } from './outbox.ts';

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

/** Take over the response: headers now, then whatever the stream writes. */
export function openResponse(reply: FastifyReply): StreamSink {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { ...(reply.getHeaders() as Record<string, string>), ...streamHeaders(reply) });
  if (reply.request.raw.httpVersionMajor < 2) res.socket?.setNoDelay(true);
  return {
    write: (chunk) => !res.destroyed && res.write(chunk),
    onDrain: (listener) => res.on('drain', listener),
    onClose: (listener) => {
      res.once('close', listener);
      if (res.destroyed) listener();
    },
    close: (abrupt) => (abrupt ? res.destroy() : res.end()),
  };
}
