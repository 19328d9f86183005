// etcd-discovery-gateway-client: a typed client of the gateway's HTTP API for Node 20+ and
// browsers (fetch). Register an instance and keep it alive, discover services with conditional
// reads, watch them live over the change stream, pick an instance locally, and read your own
// writes on any replica.
export { DiscoveryClient, type ClientOptions, type ReadOptions } from './client.ts';
export {
  Registration,
  type CloseOptions,
  type RegistrationEvent,
  type RegistrationOptions,
  type RegistrationState,
} from './registration.ts';
export { Watch, type WatchEvent, type WatchOptions } from './watch.ts';
export { Session } from './session.ts';
export { GatewayError, GatewayRefusedError, GatewayUnreachableError, type ProblemCode } from './errors.ts';
export { pickWeighted } from './filters.ts';
export type {
  DiscoveryFilters,
  HeartbeatAnswer,
  Instance,
  InstanceRegistration,
  InstanceStatus,
  Problem,
  RegisteredInstance,
  ServiceList,
  ServiceView,
} from './types.ts';
