// Server-Sent Events on the wire, written by hand on the raw response: the hub
// needs per-client backpressure, one write per revision, and streams it can end
// on shutdown, which is more control than @fastify/sse 0.x gives. The frames
// are handed to the hub (registry/hub.ts), which builds each one once.
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
  snapshot(revision, services, reset) {
    const data = JSON.stringify(reset ? { revision, reset: true, services } : { revision, services });
    return `id: ${revision}\nevent: snapshot\ndata: ${data}\n\n`;
  },
  progress: (revision) => `id: ${revision}\nevent: progress\ndata: {"revision":${revision}}\n\n`,
  retry: (ms) => `retry: ${ms}\n\n`,
  keepAlive: ': keep-alive\n\n',
};

/**
 * Take over the response: headers now, then whatever the hub writes. A client is
 * too far behind when more than `bufferBytes` are still queued from earlier writes.
 */
export function openStream(reply: FastifyReply, bufferBytes: number): StreamSink {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    ...(reply.getHeaders() as Record<string, string>),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
    connection: 'keep-alive',
  });
  res.socket?.setNoDelay(true);
  return {
    // Not counting the chunk at hand: one revision (a big batch) may be larger than the
    // buffer, and closing every stream for it would close them again on each resume, forever.
    write: (chunk) => {
      if (res.destroyed || res.writableLength > bufferBytes) return false;
      res.write(chunk);
      return true;
    },
    close: () => (res.writableLength > bufferBytes ? res.destroy() : res.end()),
  };
}
