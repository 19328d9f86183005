// GET /: the live dashboard, one self-contained page (ui/dashboard.html).
import { readFileSync } from 'node:fs';
import type { FastifyPluginAsync } from 'fastify';

// Two levels up from src/routes or dist/routes: the package root.
const PAGE = readFileSync(new URL('../../ui/dashboard.html', import.meta.url), 'utf8');

const routes: FastifyPluginAsync = async (app) => {
  app.get('/', { schema: { hide: true } }, async (_req, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header(
        'content-security-policy',
        "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline' 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
      )
      .send(PAGE),
  );
};

export default routes;
