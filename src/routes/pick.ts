// GET /services/{name}/pick: client-side load balancing in one call. One
// instance, chosen at random in proportion to its weight among the instances
// that are up with a weight above 0 (and match the discovery filters), from
// the cache. Never cached by anyone: every call is a new draw.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { pickWeighted } from '../discovery-query/filter.ts';
import { filterOf, withFilters } from '../discovery-query/query-string.ts';
import { NoInstanceAvailableError } from '../registry/errors.ts';
import { sendJson, staleHeaders } from './answers.ts';
import { NameParams, problems } from './schemas.ts';

const PickQuery = withFilters({});

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { discovery } = app.gateway;

  app.get(
    '/services/:name/pick',
    {
      schema: {
        tags: ['discovery'],
        summary: 'One instance, chosen at random in proportion to its weight',
        description:
          'Among the instances with status up and a weight above 0 that match the filters (tag, meta.KEY), from the cache. ' +
          'Cache-Control: no-store and no ETag: every call is a new draw. 404 no-instance-available when none qualifies.',
        params: NameParams,
        querystring: PickQuery,
        response: { 200: Type.Ref('Instance'), ...problems(400, 401, 403, 404, 503) },
      },
    },
    async (req, reply) => {
      const { name } = req.params;
      const read = await discovery.discover(name);
      staleHeaders(reply, read);
      // status is not a filter here: only instances that are up are ever picked.
      const chosen = pickWeighted(read.instances, (x) => x.record, filterOf(req.query));
      reply.header('cache-control', 'no-store');
      if (!chosen) throw new NoInstanceAvailableError(name);
      reply.header('x-registry-revision', String(read.revision));
      return sendJson(reply, chosen.json);
    },
  );
};

export default routes;
