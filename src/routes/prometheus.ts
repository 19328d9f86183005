// GET /sd/prometheus: Prometheus HTTP service discovery straight from the cache,
// so that `http_sd_configs` scrapes every registered instance with no other glue.
// Format: https://prometheus.io/docs/prometheus/latest/http_sd/
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Instance } from '../registry/types.ts';
import { filterOf, StatusFilter, withFilters } from '../discovery-query/query-string.ts';
import { staleHeaders } from './answers.ts';
import { ServiceName, problems } from './schemas.ts';

const LABEL = '__meta_discovery_';

const SdQuery = withFilters({
  service: Type.Optional(Type.Array(ServiceName, { description: 'Only these services (repeatable)' })),
  status: StatusFilter,
});

const TargetGroup = Type.Object(
  {
    targets: Type.Array(Type.String(), { description: 'One "address:port" (IPv6 addresses in brackets)' }),
    labels: Type.Record(Type.String(), Type.String(), {
      description:
        `${LABEL}service, ${LABEL}instance_id, ${LABEL}status, ${LABEL}weight, ${LABEL}tags (",a,b,"; ",," for none) ` +
        `and ${LABEL}metadata_<key> (characters outside [a-zA-Z0-9_] become "_")`,
    }),
  },
  { description: 'One target group per instance' },
);

const TargetGroups = Type.Array(TargetGroup, {
  description: 'Target groups in Prometheus HTTP SD format',
  examples: [
    [
      {
        targets: ['10.0.0.7:8080'],
        labels: {
          [`${LABEL}service`]: 'payments',
          [`${LABEL}instance_id`]: '10.0.0.7:8080',
          [`${LABEL}status`]: 'up',
          [`${LABEL}weight`]: '100',
          [`${LABEL}tags`]: ',http,v2,',
          [`${LABEL}metadata_zone`]: 'eu-1',
        },
      },
    ],
  ],
});

export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

/** host:port as Prometheus expects a target; an IPv6 address goes in brackets. */
function target(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** A metadata key as a label name suffix: [a-zA-Z0-9_] only. */
function labelSuffix(key: string): string {
  return key.replace(/[^a-zA-Z0-9_]/g, '_');
}

function targetGroup(x: Instance): TargetGroup {
  const labels: Record<string, string> = {
    [`${LABEL}service`]: x.service,
    [`${LABEL}instance_id`]: x.id,
    [`${LABEL}status`]: x.status,
    [`${LABEL}weight`]: String(x.weight),
    // As Consul's SD writes tags: separators at both ends, so a relabel regex can match ",tag,".
    [`${LABEL}tags`]: `,${x.tags.join(',')},`,
  };
  // Keys in code-unit order: when two keys sanitize to one label name, the later key wins.
  for (const key of Object.keys(x.metadata).sort()) labels[`${LABEL}metadata_${labelSuffix(key)}`] = x.metadata[key]!;
  return { targets: [target(x.address, x.port)], labels };
}

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { discovery } = app.gateway;

  app.get(
    '/sd/prometheus',
    {
      schema: {
        tags: ['discovery'],
        summary: 'Prometheus HTTP service discovery: one target group per instance',
        description:
          'For http_sd_configs. service= (repeatable), tag= (repeatable: all must match), status= and meta.KEY= narrow it. ' +
          'With access control on, only the services the token may read are listed.',
        querystring: SdQuery,
        response: { 200: TargetGroups, ...problems(400, 401, 403, 503) },
      },
    },
    async (req, reply) => {
      // A ?service= the token may not read was refused (403) by the auth plugin already.
      const named = req.query.service?.length ? [...new Set(req.query.service)].sort() : undefined;
      const read = discovery.all({ services: named, filter: filterOf(req.query), include: req.canRead });
      staleHeaders(reply, read);
      reply.header('x-registry-revision', String(read.revision));
      return read.instances.map((x) => targetGroup(x.record));
    },
  );
};

export default routes;
