// Request timeouts that spare change streams and blocking queries (API.md
// "Running": no request timeout applies to them).
//
// An ordinary route answers within `timeoutMs` or gets 503 store-unavailable: the
// only thing an ordinary handler waits on is the store (each store call has its
// own deadline too, ETCD_TIMEOUT_MS; this bounds a handler that makes several).
// Change streams (route config `stream`) and reads have none (see the onRoute hook).
// Socket-level timeouts (fastify connectionTimeout) stay off: they would cut idle
// streams and parked queries. Receiving a request is bounded by requestTimeout (app.ts).
//
// Not fastify's own `handlerTimeout`: in fastify 5.12 on Node 20 it clears its timer
// on the request's 'close', which Node emits as soon as a body has been read, so it
// never fires for a PUT or POST (verified).
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { HttpProblem } from './errors.ts';

export default fp(async function timeouts(app: FastifyInstance, opts: { timeoutMs: number }) {
  const ms = opts.timeoutMs;
  if (!(ms > 0)) return;
  const timeout: onRequestHookHandler = (_req, reply, done) => {
    const timer = setTimeout(() => {
      if (reply.sent || reply.raw.headersSent) return;
      // The handler goes on (a store call cannot be taken back); its late answer is dropped.
      reply.send(new HttpProblem('store-unavailable', `no answer within ${ms / 1000} s (the store is slow or unreachable); retry`));
    }, ms);
    reply.raw.once('close', () => clearTimeout(timer));
    done();
  };
  // Only the routes that need it get the hook (registered before any route): reads need
  // no timer of their own (and the hottest path is spared even the check): they answer
  // from the cache, or make one store call bounded by ETCD_TIMEOUT_MS, or wait (a
  // blocking query, a minRevision read) as long as their client asked, then answer.
  app.addHook('onRoute', (route) => {
    const methods = [route.method].flat();
    if (route.config?.stream || methods.every((m) => m === 'GET' || m === 'HEAD')) return;
    route.onRequest = route.onRequest ? [...[route.onRequest].flat(), timeout] : timeout;
  });
});
