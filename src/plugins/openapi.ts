// The OpenAPI 3 document, generated from the route schemas (openapi/openapi.json
// in the repository is this document, written by `npm run openapi`), and Swagger UI.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * Schemas in OpenAPI 3.0 terms: one `example`, not JSON Schema's `examples` array
 * (@fastify/swagger converts most of them, not those nested in query arrays;
 * parameter and media-type `examples` are maps, never arrays: left alone), and no
 * `propertyNames` (3.0 lacks it; the schema's description states the key rule).
 */
function schemasFor30<T>(node: T): T {
  if (Array.isArray(node)) node.forEach(schemasFor30);
  else if (node && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    if (Array.isArray(o.examples)) {
      if (o.example === undefined && o.examples.length) o.example = o.examples[0];
      delete o.examples;
    }
    delete o.propertyNames;
    Object.values(o).forEach(schemasFor30);
  }
  return node;
}

/**
 * A body whose schema admits null may be left out (an empty body parses as null): its
 * requestBody is optional. @fastify/swagger marks every requestBody required.
 */
function optionalBodies<T>(doc: T): T {
  const paths = (doc as { paths?: Record<string, Record<string, { requestBody?: OpenApiBody }>> }).paths ?? {};
  for (const operations of Object.values(paths)) {
    for (const { requestBody } of Object.values(operations)) {
      if (requestBody && Object.values(requestBody.content ?? {}).every((media) => media.schema?.nullable === true))
        requestBody.required = false;
    }
  }
  return doc;
}
interface OpenApiBody {
  required?: boolean;
  content?: Record<string, { schema?: { nullable?: boolean } }>;
}

/** Routes that never need a token (auth.ts's open routes); /metrics needs one only with AUTH_METRICS. */
const OPEN_PATHS = new Set(['/', '/docs', '/openapi.json', '/health', '/health/live', '/health/ready']);

/**
 * Marks on every operation whether it needs `Authorization: Bearer` (when the gateway has
 * tokens configured), so that generated clients send the token where it is needed.
 */
function withSecurity<T>(doc: T): T {
  const paths = (doc as { paths?: Record<string, Record<string, { security?: unknown }>> }).paths ?? {};
  for (const [path, operations] of Object.entries(paths)) {
    const security = OPEN_PATHS.has(path) ? [] : path === '/metrics' ? [{}, { bearerAuth: [] }] : [{ bearerAuth: [] }];
    for (const operation of Object.values(operations)) operation.security = security;
  }
  return doc;
}

export default fp(async function openapi(app: FastifyInstance) {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'etcd-discovery-gateway',
        version: '1.0.0',
        description:
          'Service discovery over HTTP, backed by etcd: register instances with a TTL, keep them alive with heartbeats, discover them from a watch-fed cache, and follow changes live over Server-Sent Events. Errors are application/problem+json (RFC 9457) with a stable code.',
      },
      tags: [
        { name: 'registration', description: 'Register, renew and deregister instances' },
        { name: 'discovery', description: 'Read services and instances (from the cache)' },
        { name: 'events', description: 'Change streams (Server-Sent Events)' },
        { name: 'operations', description: 'Health, metrics' },
      ],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'Required when the gateway is started with AUTH_TOKENS_FILE' },
        },
      },
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
    transformObject: (doc) => optionalBodies(withSecurity(schemasFor30('openapiObject' in doc ? doc.openapiObject : doc.swaggerObject))),
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    // The page may not be framed (clickjacking); the gateway may serve plain HTTP, so no forced upgrade.
    transformStaticCSP: (csp) =>
      csp.replace("frame-ancestors 'self'", "frame-ancestors 'none'").replace(/\s*upgrade-insecure-requests;?/, ''),
    uiHooks: {
      onRequest: (_req, reply, done) => {
        reply.header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer').header('x-frame-options', 'DENY');
        done();
      },
    },
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
});
