// Discovery: GET /services and GET /services/{name}. The registry does the read
// (cache, blocking query, consistent read, minRevision); here it becomes an
// answer with ETag, 304 and stale headers, its body rendered by the views.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServiceFilter } from '../discovery-query/filter.ts';
import { InvalidRequestError } from '../registry/errors.ts';
import { durationText, MAX_WAIT_MS } from '../rules.ts';
import { clientGone, sendRead } from './answers.ts';
import { filterOf, StatusFilter, withFilters } from '../discovery-query/query-string.ts';
import { MinRevision, NameParams, ServiceBody, ServicesBody, problems } from './schemas.ts';

/** Parse "10s", "500ms", "2m" into milliseconds. */
function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,9})(ms|s|m)?$/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

const ServiceQuery = withFilters({
  status: StatusFilter,
  index: Type.Optional(
    Type.Integer({ minimum: 0, description: 'Blocking query: hold the answer until the service revision is above this' }),
  ),
  wait: Type.Optional(
    Type.String({
      pattern: '^\\d{1,9}(ms|s|m)?$',
      description: `Blocking query: longest hold, e.g. 10s, 500ms, 2m (default and at most ${durationText(MAX_WAIT_MS)})`,
    }),
  ),
  consistent: Type.Optional(Type.Boolean({ description: 'Read from the store (linearizable), not from the cache' })),
  minRevision: MinRevision,
});

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { discovery, views } = app.gateway;

  app.get(
    '/services',
    {
      schema: {
        tags: ['discovery'],
        summary: 'Every service with its instance count',
        querystring: Type.Object({ minRevision: MinRevision }),
        response: { 200: ServicesBody, 304: Type.Null({ description: 'Not modified' }), ...problems(400, 401, 503, 504) },
      },
    },
    async (req, reply) => {
      // With access control on, only the services the token may read (API.md).
      const min = req.query.minRevision;
      const read = await discovery.services({
        minRevision: min,
        signal: min === undefined ? undefined : clientGone(reply),
        include: req.canRead,
      });
      return sendRead(req, reply, read, () => views.services(read, !!req.canRead));
    },
  );

  app.get(
    '/services/:name',
    {
      schema: {
        tags: ['discovery'],
        summary: "A service's instances, sorted by id",
        description:
          'From the watch-fed cache. Filters tag, status, meta.KEY; blocking query with index and wait; consistent=true reads the store.',
        params: NameParams,
        querystring: ServiceQuery,
        response: { 200: ServiceBody, 304: Type.Null({ description: 'Not modified' }), ...problems(400, 401, 403, 503, 504) },
      },
    },
    (req, reply) => {
      const { name } = req.params;
      const q = req.query;
      const filter = filterOf(q);
      // The common read, answered from the cache at once: no promise on the hottest path.
      if (q.index === undefined && q.wait === undefined && q.minRevision === undefined && !q.consistent) {
        const read = discovery.cached(name, filter);
        sendRead(req, reply, read, () => views.service(name, read, filter));
        return;
      }
      return waitingRead(req, reply, name, q, filter);
    },
  );

  /** A read that may wait (blocking query, minRevision) or go to the store (consistent=true). */
  async function waitingRead(
    req: FastifyRequest,
    reply: FastifyReply,
    name: string,
    q: Static<typeof ServiceQuery>,
    filter: ServiceFilter | undefined,
  ): Promise<void> {
    let waitMs: number | undefined;
    if (q.wait !== undefined) {
      waitMs = parseDuration(q.wait);
      if (waitMs === undefined || waitMs > MAX_WAIT_MS)
        throw new InvalidRequestError(`querystring.wait must be a duration of at most ${durationText(MAX_WAIT_MS)} (e.g. 10s, 500ms, 2m)`);
    }
    const read = await discovery.discover(name, {
      filter,
      consistent: q.consistent,
      minRevision: q.minRevision,
      index: q.index,
      waitMs,
      // Only a read that may wait listens for the client leaving.
      signal: q.index !== undefined || q.minRevision !== undefined ? clientGone(reply) : undefined,
      onHold: () => (req.heldByBlockingQuery = true),
    });
    if (!reply.raw.destroyed) sendRead(req, reply, read, () => views.service(name, read, filter));
  }
};

export default routes;
