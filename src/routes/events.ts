// GET /events and GET /services/{name}/events: change streams (Server-Sent
// Events, src/streams/), resumable with Last-Event-ID.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { InvalidRequestError } from '../registry/errors.ts';
import { openResponse, streamHeaders } from '../streams/response.ts';
import type { Scope } from '../streams/subscriber.ts';
import { NameParams, ServiceName } from './schemas.ts';
import { StreamAnswer } from './stream-schemas.ts';

const ResumeQuery = {
  lastEventId: Type.Optional(
    Type.String({ pattern: '^\\d{1,15}$', description: 'Resume after this event id (for clients that cannot send Last-Event-ID)' }),
  ),
  access_token: Type.Optional(Type.String({ description: 'Bearer token, for clients that cannot set headers' })),
};

function lastEventId(req: FastifyRequest, query: { lastEventId?: string }): number | undefined {
  const raw = (req.headers['last-event-id'] as string | undefined) ?? query.lastEventId;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,15}$/.test(raw.trim()))
    throw new InvalidRequestError('Last-Event-ID must be an event id (a store revision) this gateway sent');
  return Number(raw.trim());
}

/** The token's read right. */
function access(req: FastifyRequest): Pick<Scope, 'allowed'> {
  return { allowed: req.canRead };
}

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { hub } = app.gateway;

  /**
   * The start of a stream is decided before its head is written: a resume that
   * needs the store while the store is unreachable, or one past the stream
   * limit, is a 503, not a cut stream. HEAD answers the stream's headers only.
   */
  async function stream(req: FastifyRequest, reply: FastifyReply, scope: Scope, after: number | undefined): Promise<void> {
    if (req.method === 'HEAD') {
      reply.headers(streamHeaders(reply));
      return reply.send();
    }
    const start = await hub.prepare(scope, after);
    // Once the response is taken over, fastify neither answers nor logs a failure: ours to log.
    try {
      start.attach(openResponse(reply));
    } catch (err) {
      req.server.log.error({ reqId: req.id, err }, 'unexpected error');
      reply.raw.destroy();
    }
  }

  app.get(
    '/services/:name/events',
    {
      config: { stream: true },
      schema: {
        tags: ['events'],
        summary: 'Live changes of one service (SSE)',
        params: NameParams,
        querystring: Type.Object(ResumeQuery),
        response: StreamAnswer,
      },
    },
    async (req, reply) => stream(req, reply, { services: [req.params.name], ...access(req) }, lastEventId(req, req.query)),
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
      return stream(req, reply, { services: named, ...access(req) }, lastEventId(req, req.query));
    },
  );
};

export default routes;
