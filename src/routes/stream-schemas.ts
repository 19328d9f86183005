// What a change stream carries (API.md "Change events"), as OpenAPI components: the data of each
// event type. The stream routes' text/event-stream answers reference them, so the document and
// the client types generated from it name every event a stream can send.
import { Type } from '@sinclair/typebox';
import { problems } from './schemas.ts';

const InstanceRef = Type.Ref('Instance');
const revision = Type.Integer({ description: 'Store revision of the change; also the event id' });
const change = (type: string) => ({
  type: Type.Literal(type),
  service: Type.String(),
  id: Type.String({ description: 'Instance id' }),
  revision,
});

export const Snapshot = Type.Object(
  {
    revision: Type.Integer({ description: 'The latest revision the gateway has applied; also the event id' }),
    reset: Type.Optional(
      Type.Boolean({ description: 'true when the changes after Last-Event-ID could not be replayed: replace your view' }),
    ),
    services: Type.Record(Type.String(), Type.Array(InstanceRef), { description: 'Instances by service name' }),
  },
  { $id: 'Snapshot', description: '`event: snapshot`: the whole view, first on a new stream (or after a reset)' },
);

export const RegisterEvent = Type.Object(
  { ...change('register'), instance: InstanceRef },
  { $id: 'RegisterEvent', description: '`event: register`: a new instance' },
);

export const UpdateEvent = Type.Object(
  { ...change('update'), instance: InstanceRef },
  { $id: 'UpdateEvent', description: '`event: update`: an instance replaced or its status changed' },
);

export const DeregisterEvent = Type.Object(
  {
    ...change('deregister'),
    instance: Type.Optional(InstanceRef),
    reason: Type.Union([Type.Literal('deregistered'), Type.Literal('expired')], {
      description: 'deregistered: removed through the API (DELETE or /batch); expired: its TTL ran out',
    }),
  },
  { $id: 'DeregisterEvent', description: '`event: deregister`: an instance left; `instance` is the last record known' },
);

export const ProgressEvent = Type.Object(
  { revision: Type.Integer({ description: 'A revision the gateway has applied; also the event id: resume from it' }) },
  { $id: 'ProgressEvent', description: '`event: progress`: nothing changed in this stream up to `revision` (not a change)' },
);

export const STREAM_SCHEMAS = [Snapshot, RegisterEvent, UpdateEvent, DeregisterEvent, ProgressEvent];

const EXAMPLE = [
  'retry: 3200',
  '',
  'event: snapshot',
  'id: 1234',
  'data: {"revision":1234,"services":{"payments":[]}}',
  '',
  'event: register',
  'id: 1235',
  'data: {"type":"register","service":"payments","id":"10.0.0.7:8080","revision":1235,"instance":{…}}',
  '',
  ': keep-alive',
  '',
].join('\n');

/** The answers of a stream route: the stream (each event's data is one of the components), or a problem. */
export const StreamAnswer = {
  200: {
    description:
      'text/event-stream: `retry:`, a snapshot (or the changes after Last-Event-ID), then one event per change whose `id:` is its store revision; `progress` events and `: keep-alive` comments on quiet streams. Each event’s `data:` is JSON, one of the schemas below, named by its `event:` field.',
    content: {
      'text/event-stream': {
        schema: { oneOf: STREAM_SCHEMAS.map((s) => Type.Ref(s.$id!)) },
        example: EXAMPLE,
      },
    },
  },
  ...problems(400, 401, 403, 503),
};
