// Discovery: GET /services and GET /services/{name}, answered from the cache
// (no store round trip), with filters, ETags, blocking queries and consistent reads.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { renderService, matches } from '../registry/cache.ts';
import { InvalidRequestError } from '../registry/errors.ts';
import { filterOf, metaFilterOptions, TagFilter } from './filters.ts';
import { clientGone, markStale, notModified, parseDuration, revisionHeaders, sendJson, sendNotModified } from './http.ts';
import { MinRevision, NameParams, ServiceAnswer, ServicesAnswer, Status, problems } from './schemas.ts';

const MAX_WAIT_MS = 5 * 60_000;

const ServiceQuery = Type.Object(
  {
    tag: TagFilter,
    status: Type.Optional(Status),
    index: Type.Optional(Type.Integer({ minimum: 0, description: 'Blocking query: hold the answer until the service revision is above this' })),
    wait: Type.Optional(Type.String({ pattern: '^\\d{1,9}(ms|s|m)?$', description: 'Blocking query: longest hold, e.g. 10s, 500ms, 2m (default 5m, at most 5m)' })),
    consistent: Type.Optional(Type.Boolean({ description: 'Read from the store (linearizable), not from the cache' })),
    minRevision: MinRevision,
  },
  metaFilterOptions,
);

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const gw = app.gateway;
  const { cache, registry, metrics } = gw;

  app.get(
    '/services',
    {
      schema: {
        tags: ['discovery'],
        summary: 'Every service with its instance count',
        querystring: Type.Object({ minRevision: MinRevision }),
        response: { 200: ServicesAnswer, 304: Type.Null({ description: 'Not modified' }), ...problems(400, 401, 503) },
      },
    },
    async (req, reply) => {
      const min = req.query.minRevision;
      if (min !== undefined && !(await registry.caughtUp(min, clientGone(reply)))) {
        metrics.cacheRequests.inc({ result: 'miss' });
        const fresh = await registry.readServices();
        revisionHeaders(reply, fresh.revision);
        return req.canRead ? { ...fresh, services: fresh.services.filter((s) => req.canRead!(s.name)) } : fresh;
      }
      markStale(gw, reply, true);
      metrics.cacheRequests.inc({ result: 'hit' });
      // With access control on, only the services the token may read (API.md).
      const answer = cache.servicesAnswer(req.canRead);
      revisionHeaders(reply, answer.revision);
      if (notModified(req, answer.revision)) return sendNotModified(reply);
      return sendJson(reply, answer.body);
    },
  );

  app.get(
    '/services/:name',
    {
      schema: {
        tags: ['discovery'],
        summary: "A service's instances, sorted by id",
        description: 'From the watch-fed cache. Filters tag, status, meta.KEY; blocking query with index and wait; consistent=true reads the store.',
        params: NameParams,
        querystring: ServiceQuery,
        response: { 200: ServiceAnswer, 304: Type.Null({ description: 'Not modified' }), ...problems(400, 401, 403, 503) },
      },
    },
    async (req, reply) => {
      const { name } = req.params;
      const q = req.query;
      const filter = filterOf(q as Record<string, unknown>);
      let waitMs: number | undefined;
      if (q.wait !== undefined) {
        waitMs = parseDuration(q.wait);
        if (waitMs === undefined || waitMs > MAX_WAIT_MS) throw new InvalidRequestError('querystring.wait must be a duration of at most 5m (e.g. 10s, 500ms, 2m)');
      }

      if (q.consistent || (q.minRevision !== undefined && !(await registry.caughtUp(q.minRevision, clientGone(reply))))) {
        metrics.cacheRequests.inc({ result: 'miss' });
        const fresh = await registry.readService(name);
        const list = filter ? fresh.instances.filter((x) => matches(x, filter)) : fresh.instances;
        revisionHeaders(reply, fresh.revision);
        const body = renderService(name, fresh.revision, list.map((record) => ({ record, json: JSON.stringify(record), lease: '0' })));
        return sendJson(reply, body);
      }

      if (q.index !== undefined && cache.serviceRevision(name) <= q.index) {
        const wait = waitMs ?? MAX_WAIT_MS;
        markStale(gw, reply, cache.knows(name)); // an unknown service with the store down: 503 now, not after the wait
        req.heldByBlockingQuery = true;
        // Jitter spreads the answers of many clients that started waiting together.
        const deadline = Date.now() + wait + Math.random() * (wait / 16);
        const gone = clientGone(reply);
        const index = q.index;
        // A replica behind the client's index applies changes older than it: those do not end the wait
        // (a timeout, the client leaving or shutdown do: wait() is false then).
        while (await cache.serviceWaiters.wait(name, deadline - Date.now(), gone)) {
          if (cache.serviceRevision(name) > index) break;
        }
        if (reply.raw.destroyed) return reply;
      }

      markStale(gw, reply, cache.knows(name));
      metrics.cacheRequests.inc({ result: 'hit' });
      const answer = cache.serviceAnswer(name, filter);
      revisionHeaders(reply, answer.revision);
      if (notModified(req, answer.revision)) return sendNotModified(reply);
      return sendJson(reply, answer.body);
    },
  );
};

export default routes;
