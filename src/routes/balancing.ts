// GET /services/{name}/pick: client-side load balancing in one call. One
// instance, chosen at random in proportion to its weight among the instances
// that are up with a weight above 0 (and match the discovery filters), from
// the cache. Never cached by anyone: every call is a new draw.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { NoInstanceAvailableError } from '../registry/errors.ts';
import { matches } from '../registry/filter.ts';
import type { Listed } from '../registry/reads.ts';
import type { ServiceFilter } from '../registry/types.ts';
import { sendJson, staleHeaders } from './answers.ts';
import { filterOf, metaFilterOptions, TagFilter } from './filters.ts';
import { NameParams, problems } from './schemas.ts';

const PickQuery = Type.Object({ tag: TagFilter }, metaFilterOptions);

function eligible(x: Listed, filter: ServiceFilter | undefined): boolean {
  return x.record.status === 'up' && x.record.weight > 0 && (!filter || matches(x.record, filter));
}

/**
 * Weighted random choice without building a filtered list: one pass for the
 * total weight, one draw, one pass to the instance the draw falls on.
 */
function pickWeighted(list: readonly Listed[], filter: ServiceFilter | undefined, random: () => number = Math.random): Listed | undefined {
  let total = 0;
  for (const x of list) if (eligible(x, filter)) total += x.record.weight;
  if (total === 0) return undefined;
  let draw = Math.floor(random() * total); // weights are integers: 0 <= draw < total
  for (const x of list) {
    if (!eligible(x, filter)) continue;
    draw -= x.record.weight;
    if (draw < 0) return x;
  }
  return undefined; // unreachable: the draw is below the total
}

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { registry } = app.gateway;

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
      const filter = filterOf(req.query as Record<string, unknown>);
      // status is not a filter here: only instances that are up are ever picked.
      if (filter) filter.status = undefined;
      const read = await registry.discover(name);
      staleHeaders(reply, read);
      const chosen = pickWeighted(read.instances, filter);
      reply.header('cache-control', 'no-store');
      if (!chosen) throw new NoInstanceAvailableError(name);
      reply.header('x-registry-revision', String(read.revision));
      return sendJson(reply, chosen.json);
    },
  );
};

export default routes;
