// The client's record types, taken from the types generated from the OpenAPI document
// (api-types.ts), so that they follow the gateway's contract when it changes.
import type { components, paths } from './api-types.ts';

/** An instance as the gateway answers it. */
export type Instance = components['schemas']['Instance'];

/** `up` | `draining` | `down`. */
export type InstanceStatus = Instance['status'];

/** An RFC 9457 problem, as every gateway error is answered. */
export type Problem = components['schemas']['Problem'];

type RegistrationBody = paths['/services/{name}/instances/{id}']['put']['requestBody']['content']['application/json'];

/** What `register()` sends: the instance fields, with its service and (optional) id. */
export type InstanceRegistration = RegistrationBody & {
  readonly service: string;
  /** Default `{address}:{port}`, as the gateway names an instance registered without an id. */
  readonly id?: string;
};

/** The answer to a registration: the instance, and `interval`, the seconds after which its first heartbeat is due. */
export type RegisteredInstance = components['schemas']['Registered'];

/** The answer to a heartbeat. */
export type HeartbeatAnswer = paths['/services/{name}/instances/{id}/heartbeat']['put']['responses'][200]['content']['application/json'];

/** `GET /services/{name}`: one service's instances at one store revision. */
export type ServiceView = paths['/services/{name}']['get']['responses'][200]['content']['application/json'];

/** `GET /services`: every service with its instance count. */
export type ServiceList = paths['/services']['get']['responses'][200]['content']['application/json'];

/** Discovery filters, as `GET /services/{name}` takes them. */
export interface DiscoveryFilters {
  /** Every tag must be present. */
  readonly tags?: readonly string[];
  readonly status?: InstanceStatus;
  /** Every key must have this value. */
  readonly metadata?: Readonly<Record<string, string>>;
}
