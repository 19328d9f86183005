// GET /metrics: the Metrics object (metrics.ts) in Prometheus text format. Its own
// plugin, registered after the OpenAPI plugin so that the document lists it.
import type { FastifyInstance } from 'fastify';

const MetricsAnswer = {
  200: {
    description: 'Prometheus text exposition format 0.0.4',
    content: {
      'text/plain': {
        schema: {
          type: 'string',
          example:
            '# HELP discovery_store_up 1 when the store answers, 0 when it does not\n# TYPE discovery_store_up gauge\ndiscovery_store_up 1\n',
        },
      },
    },
  },
};

export default async function metricsRoute(app: FastifyInstance) {
  const { metrics } = app.gateway;
  const schema = { tags: ['operations'], summary: 'Prometheus metrics (text format)', response: MetricsAnswer };
  app.get('/metrics', { schema }, async (_req, reply) => {
    const held = app.gateway.discovery.counts();
    metrics.services.set(held.services);
    metrics.instances.set(held.instances);
    return reply.type(metrics.prom.contentType).send(await metrics.prom.metrics());
  });
}
