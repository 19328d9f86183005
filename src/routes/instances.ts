// Registration: PUT/POST an instance, heartbeat, DELETE, and GET one instance.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { InvalidRequestError } from '../registry/errors.ts';
import { isInstanceId } from '../rules.ts';
import type { InstanceStatus } from '../registry/types.ts';
import { clientGone, sendRead } from './answers.ts';
import {
  HeartbeatAnswer,
  HeartbeatBody,
  InstanceBody,
  InstanceParams,
  MinRevision,
  NameParams,
  PostInstanceBody,
  problems,
} from './schemas.ts';

const tags = ['registration'];
const InstanceRef = Type.Ref('Instance');
const RegisteredRef = Type.Ref('Registered');

/** The next heartbeat is due after about a third of the TTL, jittered so that instances do not beat in step. */
function heartbeatInterval(ttl: number): number | undefined {
  if (ttl <= 0) return undefined;
  return Math.max(0.5, Math.round((ttl / 3) * (0.85 + Math.random() * 0.15) * 10) / 10);
}

/** A registration's answer (API.md): the instance, with `interval` beside it when it has a TTL. */
function registered<T extends { ttl: number }>(instance: T): T & { interval?: number } {
  const interval = heartbeatInterval(instance.ttl);
  return interval === undefined ? instance : { ...instance, interval };
}

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { registry, discovery } = app.gateway;

  app.put(
    '/services/:name/instances/:id',
    {
      schema: {
        tags,
        summary: 'Register or replace an instance',
        description: 'Grants a lease with the TTL and binds the instance key to it. 201 when new, 200 when it replaced the instance.',
        params: InstanceParams,
        body: InstanceBody,
        response: { 200: RegisteredRef, 201: RegisteredRef, ...problems(400, 401, 403, 413, 415, 503, 507) },
      },
    },
    async (req, reply) => {
      const { instance, created } = await registry.register(req.params.name, req.params.id, req.body);
      return reply
        .code(created ? 201 : 200)
        .header('x-registry-revision', String(instance.revision))
        .send(registered(instance));
    },
  );

  app.post(
    '/services/:name/instances',
    {
      schema: {
        tags,
        summary: 'Register an instance (id optional)',
        description: 'Without an id, the id is {address}:{port}, so a retried POST replaces rather than duplicates.',
        params: NameParams,
        body: PostInstanceBody,
        response: { 200: RegisteredRef, 201: RegisteredRef, ...problems(400, 401, 403, 413, 415, 503, 507) },
      },
    },
    async (req, reply) => {
      const { id: given, ...input } = req.body;
      const id = given ?? `${input.address}:${input.port}`;
      if (!isInstanceId(id))
        throw new InvalidRequestError(`body.id: the derived id ${JSON.stringify(id)} is not a valid instance id; give one`);
      const { instance } = await registry.register(req.params.name, id, input);
      return reply
        .code(201) // API.md: POST answers 201 (a retried POST replaces the same id)
        .header('location', `/services/${req.params.name}/instances/${id}`)
        .header('x-registry-revision', String(instance.revision))
        .send(registered(instance));
    },
  );

  app.put(
    '/services/:name/instances/:id/heartbeat',
    {
      schema: {
        tags,
        summary: 'Renew an instance (and optionally change its status)',
        description: 'Renews the instance lease. 404 instance-not-found when it is unknown or its TTL ran out: register again.',
        params: InstanceParams,
        body: HeartbeatBody,
        response: { 200: HeartbeatAnswer, ...problems(400, 401, 403, 404, 415, 503, 507) },
      },
    },
    async (req, reply) => {
      const status = (req.body as { status?: InstanceStatus } | null)?.status;
      const result = await registry.heartbeat(req.params.name, req.params.id, status);
      const interval = heartbeatInterval(result.ttl);
      reply.header('x-registry-revision', String(result.revision));
      return interval === undefined ? { ttl: result.ttl, status: result.status } : { ttl: result.ttl, status: result.status, interval };
    },
  );

  app.delete(
    '/services/:name/instances/:id',
    {
      schema: {
        tags,
        summary: 'Deregister an instance',
        params: InstanceParams,
        response: { 204: Type.Null({ description: 'Deregistered' }), ...problems(400, 401, 403, 404, 503) },
      },
    },
    async (req, reply) => {
      const revision = await registry.deregister(req.params.name, req.params.id);
      return reply.code(204).header('x-registry-revision', String(revision)).send(null);
    },
  );

  app.get(
    '/services/:name/instances/:id',
    {
      schema: {
        tags: ['discovery'],
        summary: 'One instance',
        params: InstanceParams,
        querystring: Type.Object({ minRevision: MinRevision }),
        response: { 200: InstanceRef, 304: Type.Null({ description: 'Not modified' }), ...problems(400, 401, 403, 404, 503, 504) },
      },
    },
    async (req, reply) => {
      const { name, id } = req.params;
      const min = req.query.minRevision;
      const read = await discovery.instance(name, id, { minRevision: min, signal: min === undefined ? undefined : clientGone(reply) });
      return sendRead(req, reply, read, () => read.instance.json);
    },
  );
};

export default routes;
