// Records as the API shows them, and the changes the watch turns into events.
import type { InstanceStatus } from '../rules.ts';

export type { InstanceStatus };

export interface Instance {
  service: string;
  id: string;
  address: string;
  port: number;
  tags: string[];
  metadata: Record<string, string>;
  weight: number;
  status: InstanceStatus;
  /** Seconds granted; 0 = no expiry. */
  ttl: number;
  /** ISO time this id was first registered (kept across replace and status change). */
  registeredAt: string;
  /** Store revision of this record (etcd mod_revision). */
  revision: number;
}

/** What a client sends to register an instance (service and id come from the path or the batch item). */
export interface InstanceInput {
  address: string;
  port: number;
  tags?: string[];
  metadata?: Record<string, string>;
  weight?: number;
  status?: InstanceStatus;
  ttl?: number;
}

export type ChangeType = 'register' | 'update' | 'deregister';
export type DeregisterReason = 'deregistered' | 'expired';

/** One change of one instance, at one store revision: what SSE subscribers receive. */
export interface Change {
  type: ChangeType;
  service: string;
  id: string;
  revision: number;
  /** The new record; for a deregister the last one known, when known. */
  instance?: Instance;
  reason?: DeregisterReason;
  /** The store lease of the new record (kept by the cache for heartbeats; never sent to subscribers). */
  lease?: string;
}
