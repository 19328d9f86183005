// TypeBox schemas shared by the routes: validation, serialization and the
// OpenAPI document at once. Rules are API.md's "Names and records".
import { Type } from '@sinclair/typebox';
import { ERROR_CODES, type ErrorCode } from '../errors.ts';
import * as rules from '../rules.ts';

export const ServiceName = Type.String({
  pattern: rules.SERVICE_NAME_PATTERN,
  description: `Service name: ${rules.SERVICE_NAME_RULE}`,
  examples: ['payments'],
});
const InstanceId = Type.String({
  pattern: rules.INSTANCE_ID_PATTERN,
  description: `Instance id: ${rules.INSTANCE_ID_RULE}`,
  examples: ['10.0.0.7:8080'],
});
export const Status = Type.Union(
  rules.STATUSES.map((s) => Type.Literal(s)),
  { description: rules.STATUSES.join(' | ') },
);
const Address = Type.String({
  minLength: 1,
  maxLength: rules.MAX_ADDRESS_LENGTH,
  pattern: rules.ADDRESS_PATTERN,
  // the pattern admits the shape; the `host` format (rules.isHost) checks an IP address really parses
  format: 'host',
  description: rules.ADDRESS_RULE,
  examples: ['10.0.0.7'],
});
const Port = Type.Integer({ minimum: rules.MIN_PORT, maximum: rules.MAX_PORT, examples: [8080] });
const Tags = Type.Array(Type.String({ minLength: 1, maxLength: rules.MAX_TAG_LENGTH }), {
  maxItems: rules.MAX_TAGS,
  description: `Up to ${rules.MAX_TAGS} tags of 1–${rules.MAX_TAG_LENGTH} characters`,
  examples: [['http', 'v2']],
});
const Metadata = Type.Record(Type.String(), Type.String({ maxLength: rules.MAX_METADATA_VALUE_LENGTH }), {
  maxProperties: rules.MAX_METADATA,
  // Type.Record drops the key schema's lengths (it becomes a pattern): state them here.
  propertyNames: { minLength: 1, maxLength: rules.MAX_METADATA_KEY_LENGTH },
  description: `Up to ${rules.MAX_METADATA} string keys (1–${rules.MAX_METADATA_KEY_LENGTH} characters) with string values (up to ${rules.MAX_METADATA_VALUE_LENGTH} characters)`,
  examples: [{ zone: 'eu-1', version: '2.3.1' }],
});
const Weight = Type.Integer({
  minimum: 0,
  maximum: rules.MAX_WEIGHT,
  description: `Relative weight for load balancing, default ${rules.DEFAULT_WEIGHT}`,
});
const Ttl = Type.Integer({
  minimum: 0,
  maximum: rules.MAX_TTL_SECONDS,
  description: `Seconds without a heartbeat before the instance expires; 0 = never. Default: the DEFAULT_TTL_SECONDS setting (${rules.DEFAULT_TTL_SECONDS} unless set)`,
});

const instanceFields = {
  address: Address,
  port: Port,
  tags: Type.Optional(Tags),
  metadata: Type.Optional(Metadata),
  weight: Type.Optional(Weight),
  status: Type.Optional(Status),
  ttl: Type.Optional(Ttl),
};

export const InstanceBody = Type.Object(instanceFields, {
  additionalProperties: false,
  $id: 'InstanceBody',
  description: 'Instance fields to register',
  examples: [{ address: '10.0.0.7', port: 8080, tags: ['http', 'v2'], metadata: { zone: 'eu-1', version: '2.3.1' }, weight: 100, ttl: 30 }],
});

export const PostInstanceBody = Type.Object(
  { id: Type.Optional(InstanceId), ...instanceFields },
  { additionalProperties: false, description: 'Instance fields; without id the id is {address}:{port}' },
);

const INSTANCE_EXAMPLE = {
  service: 'payments',
  id: '10.0.0.7:8080',
  address: '10.0.0.7',
  port: 8080,
  tags: ['http', 'v2'],
  metadata: { zone: 'eu-1', version: '2.3.1' },
  weight: 100,
  status: 'up',
  ttl: 30,
  registeredAt: '2026-11-24T10:00:00.000Z',
  revision: 1234,
};

export const Instance = Type.Object(
  {
    service: Type.String(),
    id: Type.String(),
    address: Type.String(),
    port: Type.Integer(),
    tags: Type.Array(Type.String()),
    metadata: Type.Record(Type.String(), Type.String()),
    weight: Type.Integer(),
    status: Status,
    ttl: Type.Integer({ description: 'TTL granted, seconds; 0 = no expiry' }),
    registeredAt: Type.String({ format: 'date-time', description: 'When this id was first registered' }),
    revision: Type.Integer({ description: 'Store revision (etcd mod_revision) of this record' }),
  },
  { $id: 'Instance', description: 'A registered service instance', examples: [INSTANCE_EXAMPLE] },
);

export const HeartbeatBody = Type.Union([Type.Object({ status: Type.Optional(Status) }, { additionalProperties: false }), Type.Null()], {
  description: 'Optional status change; an empty body is a plain renewal',
});
const Interval = Type.Number({
  description: 'Seconds after which to send the next heartbeat (about TTL/3, jittered); absent for ttl 0',
});
export const HeartbeatAnswer = Type.Object(
  { ttl: Type.Integer(), status: Status, interval: Type.Optional(Interval) },
  { description: 'The TTL renewed and the current status', examples: [{ ttl: 30, status: 'up', interval: 9.6 }] },
);
/** A registration's answer: the instance, and when its first heartbeat is due. */
export const Registered = Type.Intersect([Type.Ref('Instance'), Type.Object({ interval: Type.Optional(Interval) })], {
  $id: 'Registered',
  description: 'The instance as registered, and `interval`: the seconds after which its first heartbeat is due (absent for ttl 0)',
});

export const BatchBody = Type.Object(
  {
    register: Type.Optional(
      Type.Array(Type.Object({ service: ServiceName, id: InstanceId, ...instanceFields }, { additionalProperties: false }), {
        maxItems: rules.MAX_BATCH_OPS,
      }),
    ),
    deregister: Type.Optional(
      Type.Array(Type.Object({ service: ServiceName, id: InstanceId }, { additionalProperties: false }), {
        maxItems: rules.MAX_BATCH_OPS - 1,
      }),
    ),
  },
  {
    additionalProperties: false,
    description: `At most ${rules.MAX_BATCH_OPS} operations (${rules.MAX_BATCH_OPS - 1} when it deregisters), all or nothing`,
    examples: [
      {
        register: [{ service: 'payments', id: '10.0.0.8:8080', address: '10.0.0.8', port: 8080, ttl: 30 }],
        deregister: [{ service: 'payments', id: '10.0.0.7:8080' }],
      },
    ],
  },
);
export const BatchAnswer = Type.Object(
  { revision: Type.Integer(), instances: Type.Array(Type.Ref('Instance')) },
  { description: 'The store revision of the batch and the instances it registered' },
);

export const ServiceBody = Type.Object(
  { service: Type.String(), revision: Type.Integer(), instances: Type.Array(Type.Ref('Instance')) },
  {
    description: "The service's instances (sorted by id) at `revision`",
    examples: [{ service: 'payments', revision: 1234, instances: [INSTANCE_EXAMPLE] }],
  },
);
export const ServicesBody = Type.Object(
  {
    revision: Type.Integer(),
    services: Type.Array(Type.Object({ name: Type.String(), instances: Type.Integer({ description: 'Number of instances' }) })),
  },
  {
    description: 'Every service with its instance count, names sorted',
    examples: [
      {
        revision: 1240,
        services: [
          { name: 'orders', instances: 3 },
          { name: 'payments', instances: 2 },
        ],
      },
    ],
  },
);

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.Unsafe<ErrorCode>({ type: 'string', enum: ERROR_CODES, description: 'Stable error code (docs/errors.md)' }),
  },
  {
    $id: 'Problem',
    description: 'RFC 9457 problem details (application/problem+json)',
    examples: [
      {
        type: 'https://etcd-discovery-gateway.dev/problems/instance-not-found',
        title: 'Instance not found',
        status: 404,
        detail: 'instance 10.0.0.7:8080 of service payments is not registered (or its TTL ran out)',
        code: 'instance-not-found',
      },
    ],
  },
);

export const NameParams = Type.Object({ name: ServiceName });
export const InstanceParams = Type.Object({ name: ServiceName, id: InstanceId });

/** Error answers a route can give, documented as problem+json. */
export function problems(...codes: number[]): Record<number, unknown> {
  const out: Record<number, unknown> = {};
  for (const c of codes)
    out[c] = { description: 'Problem details', content: { 'application/problem+json': { schema: Type.Ref('Problem') } } };
  return out;
}

export const MinRevision = Type.Optional(
  Type.Integer({
    minimum: 0,
    description: `Answer with a view that includes every change up to this store revision; 504 revision-not-reached (Retry-After: 1) when the store has not reached it within ${rules.durationText(rules.MIN_REVISION_WAIT_MS)}`,
  }),
);
