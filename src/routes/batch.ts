// POST /batch: registrations and deregistrations in one store transaction.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { MAX_BATCH_OPS } from '../rules.ts';
import { BatchAnswer, BatchBody, problems } from './schemas.ts';

/** A batch body may be up to 1 MiB (an instance body up to 64 KiB). */
const BATCH_BODY_LIMIT = 1024 * 1024;

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { registry } = app.gateway;
  app.post(
    '/batch',
    {
      bodyLimit: BATCH_BODY_LIMIT,
      schema: {
        tags: ['registration'],
        summary: 'Register and deregister many instances atomically',
        description:
          `One store transaction: all or nothing. At most ${MAX_BATCH_OPS} operations (${MAX_BATCH_OPS - 1} when it deregisters: one bookkeeping operation records why the instances left). ` +
          'Deregistering an unknown instance fails the whole batch with 404.',
        body: BatchBody,
        response: { 200: BatchAnswer, ...problems(400, 401, 403, 404, 413, 415, 503, 507) },
      },
    },
    async (req, reply) => {
      const result = await registry.batch(req.body.register ?? [], req.body.deregister ?? []);
      reply.header('x-registry-revision', String(result.revision));
      return result;
    },
  );
};

export default routes;
