// CORS_ORIGINS: browsers on these origins (or every origin: '*') may call the API and
// read the headers a client needs; other origins get no CORS headers.
import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

export default fp(async function corsOrigins(app: FastifyInstance, opts: { origins: '*' | string[] }) {
  await app.register(cors, {
    origin: opts.origins,
    exposedHeaders: ['etag', 'x-registry-revision', 'x-registry-stale', 'age', 'location'],
  });
});
