// Request timing for /metrics and one log line per request (each route gets its own
// hook as it is added).
// Change streams are left out of both: their "duration" is a connection lifetime.
import type { FastifyInstance, FastifyReply, FastifyRequest, onResponseHookHandler } from 'fastify';
import fp from 'fastify-plugin';

/**
 * The URL as it may be logged: access tokens never appear in logs. Keys are
 * compared decoded, as the query parser sees them (`access%5Ftoken=` is one too).
 */
export function loggableUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const pairs = url
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const key = eq < 0 ? pair : pair.slice(0, eq);
      return eq >= 0 && decodedKey(key) === 'access_token' ? `${key}=[redacted]` : pair;
    });
  return `${url.slice(0, q)}?${pairs.join('&')}`;
}

function decodedKey(key: string): string {
  try {
    return decodeURIComponent(key.replace(/\+/g, ' '));
  } catch {
    return key;
  }
}

const QUIETER_THAN_INFO = new Set(['warn', 'error', 'fatal', 'silent']);

export default fp(async function observability(app: FastifyInstance, opts: { requestLog: boolean }) {
  const { metrics } = app.gateway;
  const log = app.log;
  app.decorateRequest('heldByBlockingQuery', false);
  // The level is fixed at start: when info lines are not written (LOG_LEVEL=warn), the line is not even built.
  const requestLog = opts.requestLog && !QUIETER_THAN_INFO.has(log.level);

  /** The hook of one route (or of unmatched requests): its label and stream flag fixed, no per-request route lookup. */
  const onResponse = (route: string, stream: boolean): onResponseHookHandler => {
    const observe = metrics.httpDuration.route(route);
    const logged = (req: FastifyRequest, reply: FastifyReply) =>
      log.info(
        {
          reqId: req.id,
          method: req.method,
          url: loggableUrl(req.url),
          route,
          statusCode: reply.statusCode,
          durationMs: Math.round(reply.elapsedTime * 1000) / 1000,
        },
        'request',
      );
    return (req, reply, done) => {
      if (stream && reply.statusCode === 200) return done();
      // A blocking query's time is mostly the wait its client asked for: not latency.
      if (!req.heldByBlockingQuery) observe(req.method, reply.statusCode, reply.elapsedTime / 1000);
      if (requestLog) logged(req, reply);
      done();
    };
  };
  // Routes get their own hook (a global one would look the route up on every request);
  // this plugin is registered before any route. The global hook only sees unmatched requests.
  app.addHook('onRoute', (route) => {
    const hook = onResponse(route.url, !!route.config?.stream);
    route.onResponse = route.onResponse ? [...[route.onResponse].flat(), hook] : hook;
  });
  const unmatched = onResponse('unmatched', false);
  app.addHook('onResponse', (req, reply, done) => (req.is404 ? unmatched.call(app, req, reply, done) : done()));
});
