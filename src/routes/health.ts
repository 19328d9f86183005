// Probes for orchestrators: live (the process serves), ready (the store answers
// and the cache is in sync), and a body that says why.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { StoreHealth } from '../registry/health.ts';

const HealthAnswer = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
    store: Type.Object({
      kind: Type.String(),
      reachable: Type.Boolean(),
      revision: Type.Integer(),
      latencyMs: Type.Number(),
      inSync: Type.Boolean({ description: 'The watch is connected and the cache holds every change up to appliedRevision' }),
      appliedRevision: Type.Integer(),
      error: Type.Optional(Type.String()),
      alarms: Type.Optional(
        Type.Array(Type.String(), {
          description: "Alarms raised in the store; 'nospace': its space quota is exhausted and registrations answer 507",
        }),
      ),
      details: Type.Optional(
        Type.Record(Type.String(), Type.Unknown(), {
          description: 'Versions, member ids, sizes: only to a request with a valid token when access control is on',
        }),
      ),
    }),
    dns: Type.Object(
      {
        enabled: Type.Boolean(),
        host: Type.Optional(Type.String()),
        port: Type.Optional(Type.Integer()),
        domain: Type.Optional(Type.String()),
        reason: Type.Optional(Type.String({ description: 'Why DNS is off although DNS_PORT is set' })),
      },
      {
        description:
          'The DNS interface: whether it answers, and on which address (UDP and TCP); with access control on, all but `enabled` only to a request with a valid token',
      },
    ),
  },
  {
    description: 'Readiness and the store as this gateway sees it',
    examples: [
      {
        status: 'ok',
        store: {
          kind: 'etcd',
          reachable: true,
          revision: 1234,
          latencyMs: 0.84,
          inSync: true,
          appliedRevision: 1234,
          details: { version: '3.5.16', leader: '10276657743932975437' },
        },
        dns: { enabled: true, host: '127.0.0.1', port: 8600, domain: 'discovery' },
      },
    ],
  },
);

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { health } = app.gateway;
  const ready = (h: StoreHealth) => h.reachable && h.inSync;
  const tags = ['operations'];

  app.get(
    '/health/live',
    {
      schema: {
        tags,
        summary: 'Liveness: 200 while the process serves',
        response: { 200: Type.Object({ status: Type.Literal('ok') }, { description: 'The process serves' }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  // /health/ready and /health give the same answer; /health is the one people read.
  const answer = async (req: FastifyRequest, reply: FastifyReply) => {
    const h = await health.check();
    // The probes stay open; what maps the cluster (the store's details, the DNS address) is for
    // token holders only, as Consul's /v1/agent/self.
    const { details, ...open } = h;
    const everything = !app.gateway.config.authTokensFile || req.accessToken !== undefined;
    const store = everything ? { ...open, details } : open;
    const dns = everything ? app.dns : { enabled: app.dns.enabled };
    return reply.code(ready(h) ? 200 : 503).send({ status: ready(h) ? 'ok' : 'unavailable', store, dns });
  };
  const response = { 200: HealthAnswer, 503: HealthAnswer };
  app.get(
    '/health/ready',
    { schema: { tags, summary: 'Readiness: 200 when the store answers and the cache is in sync, else 503', response } },
    answer,
  );
  app.get('/health', { schema: { tags, summary: 'Health with store details (200 or 503 as ready)', response } }, answer);
};

export default routes;
