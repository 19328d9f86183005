// Probes for orchestrators: live (the process serves), ready (the store answers
// and the cache is in sync), and a body that says why.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { Gateway } from '../gateway.ts';

/** A probe is a cheap status call (no data read) with a short deadline. */
const PROBE_TIMEOUT_MS = 1000;
/** Probes closer together than this share one store round trip. */
const PROBE_REUSE_MS = 250;

export interface StoreHealth {
  kind: string;
  reachable: boolean;
  revision: number;
  latencyMs: number;
  inSync: boolean;
  appliedRevision: number;
  error?: string;
  details?: Record<string, unknown>;
}

/** One status call at a time, shared by concurrent probes. */
export class HealthProbe {
  private last: { at: number; result: Promise<StoreHealth> } | undefined;

  constructor(private readonly gw: Gateway) {}

  check(): Promise<StoreHealth> {
    const now = Date.now();
    if (this.last && now - this.last.at < PROBE_REUSE_MS) return this.last.result;
    const result = this.probe();
    this.last = { at: now, result };
    return result;
  }

  private async probe(): Promise<StoreHealth> {
    const { store, sync, cache } = this.gw;
    const start = process.hrtime.bigint();
    const base = { kind: store.kind, inSync: sync.inSync, appliedRevision: cache.appliedRevision };
    try {
      const status = await store.status(PROBE_TIMEOUT_MS);
      const latencyMs = Number(process.hrtime.bigint() - start) / 1e6;
      return { ...base, reachable: true, revision: status.revision, latencyMs: Math.round(latencyMs * 1000) / 1000, inSync: sync.inSync, details: status.details };
    } catch {
      return { ...base, reachable: false, revision: cache.appliedRevision, latencyMs: PROBE_TIMEOUT_MS, inSync: false, error: 'the store did not answer' };
    }
  }
}

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
      details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  },
  {
    description: 'Readiness and the store as this gateway sees it',
    examples: [
      {
        status: 'ok',
        store: { kind: 'etcd', reachable: true, revision: 1234, latencyMs: 0.84, inSync: true, appliedRevision: 1234, details: { version: '3.5.16', leader: '10276657743932975437' } },
      },
    ],
  },
);

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const probe = new HealthProbe(app.gateway);
  const ready = (h: StoreHealth) => h.reachable && h.inSync;
  const tags = ['operations'];

  app.get('/health/live', { schema: { tags, summary: 'Liveness: 200 while the process serves', response: { 200: Type.Object({ status: Type.Literal('ok') }, { description: 'The process serves' }) } } }, async () => ({ status: 'ok' as const }));

  // /health/ready and /health give the same answer; /health is the one people read.
  const answer = async (_req: unknown, reply: FastifyReply) => {
    const h = await probe.check();
    return reply.code(ready(h) ? 200 : 503).send({ status: ready(h) ? 'ok' : 'unavailable', store: h });
  };
  const response = { 200: HealthAnswer, 503: HealthAnswer };
  app.get('/health/ready', { schema: { tags, summary: 'Readiness: 200 when the store answers and the cache is in sync, else 503', response } }, answer);
  app.get('/health', { schema: { tags, summary: 'Health with store details (200 or 503 as ready)', response } }, answer);
};

export default routes;
