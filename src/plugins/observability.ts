// Request timing for /metrics, one log line per request, and /metrics itself.
// Change streams are left out of both: their "duration" is a connection lifetime.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

/** The URL as it may be logged: access tokens never appear in logs. */
export function loggableUrl(url: string): string {
  return url.replace(/([?&]access_token=)[^&]*/g, '$1[redacted]');
}

export default fp(async function observability(app: FastifyInstance, opts: { requestLog: boolean }) {
  const { metrics } = app.gateway;
  const route = (req: FastifyRequest) => req.routeOptions.url ?? 'unmatched';

  app.addHook('onResponse', async (req, reply) => {
    if (req.routeOptions.config?.stream && reply.statusCode === 200) return;
    const seconds = reply.elapsedTime / 1000;
    metrics.httpDuration.observe({ method: req.method, route: route(req), status_code: reply.statusCode }, seconds);
    if (opts.requestLog) {
      req.log.info({ method: req.method, url: loggableUrl(req.url), route: route(req), statusCode: reply.statusCode, durationMs: Math.round(reply.elapsedTime * 1000) / 1000 }, 'request');
    }
  });

  app.get('/metrics', { schema: { tags: ['operations'], summary: 'Prometheus metrics (text format)', produces: ['text/plain'] } }, async (_req, reply) => {
    const { cache } = app.gateway;
    metrics.services.set(cache.serviceCount);
    metrics.instances.set(cache.instanceCount);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
});
