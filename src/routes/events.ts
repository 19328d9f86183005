// Change streams over Server-Sent Events, written by hand on the raw response:
// the hub needs per-client backpressure, one write per revision, and streams it
// can end on shutdown, which is more control than @fastify/sse 0.x gives.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { InvalidRequestError, TooManyStreamsError } from '../registry/errors.ts';
import type { Scope, StreamSink } from '../registry/hub.ts';
import { NameParams, ServiceName, problems } from './schemas.ts';

const StreamAnswer = {
  200: {
    description: 'text/event-stream: retry, a snapshot (or the changes after Last-Event-ID), then register/update/deregister events whose ids are store revisions',
    content: { 'text/event-stream': { schema: { type: 'string' } } },
  },
  ...problems(400, 401, 403, 503),
};
const ResumeQuery = {
  lastEventId: Type.Optional(Type.String({ pattern: '^\\d{1,15}$', description: 'Resume after this event id (for clients that cannot send Last-Event-ID)' })),
  access_token: Type.Optional(Type.String({ description: 'Bearer token, for clients that cannot set headers' })),
};

function lastEventId(req: FastifyRequest, query: { lastEventId?: string }): number | undefined {
  const raw = (req.headers['last-event-id'] as string | undefined) ?? query.lastEventId;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,15}$/.test(raw.trim())) throw new InvalidRequestError('Last-Event-ID must be an event id (a store revision) this gateway sent');
  return Number(raw.trim());
}

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { hub, config } = app.gateway;

  async function stream(req: FastifyRequest, reply: FastifyReply, scope: Scope, after: number | undefined): Promise<void> {
    if (hub.size >= config.sseMaxStreams) throw new TooManyStreamsError(config.sseMaxStreams);
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
    const sink: StreamSink = {
      // Too far behind = more than the buffer still queued from earlier writes. Not counting
      // the chunk at hand: one revision (a big batch) may be larger than the buffer, and
      // closing every stream for it would close them again on each resume, forever.
      write: (chunk) => {
        if (res.destroyed || res.writableLength > config.sseBufferBytes) return false;
        res.write(chunk);
        return true;
      },
      close: () => (res.writableLength > config.sseBufferBytes ? res.destroy() : res.end()),
    };
    const sub = await hub.open(sink, scope, after).catch((err: unknown) => {
      req.log.warn({ err }, 'change stream could not start');
      res.destroy();
      return undefined;
    });
    if (!sub) return;
    res.once('close', () => hub.close(sub));
    if (res.destroyed) hub.close(sub);
  }

  app.get(
    '/services/:name/events',
    {
      config: { stream: true },
      schema: {
        tags: ['events'],
        summary: "Live changes of one service (SSE)",
        params: NameParams,
        querystring: Type.Object(ResumeQuery),
        response: StreamAnswer,
      },
    },
    async (req, reply) => stream(req, reply, { services: [req.params.name], allowed: req.canRead }, lastEventId(req, req.query)),
  );

  app.get(
    '/events',
    {
      config: { stream: true },
      schema: {
        tags: ['events'],
        summary: 'Live changes of every service, or of those named by ?service= (SSE)',
        querystring: Type.Object({ service: Type.Optional(Type.Array(ServiceName)), ...ResumeQuery }),
        response: StreamAnswer,
      },
    },
    async (req, reply) => {
      const named = req.query.service?.length ? [...new Set(req.query.service)] : undefined;
      return stream(req, reply, { services: named, allowed: req.canRead }, lastEventId(req, req.query));
    },
  );
};

export default routes;
