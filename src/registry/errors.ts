// Domain errors. Each carries a stable problem code; which HTTP status a code is
// answered with is the business of the one table in ../errors.ts, not of these classes.
import type { ErrorCode } from '../errors.ts';

export class RegistryError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class InvalidRequestError extends RegistryError {
  constructor(message: string) {
    super('invalid-request', message);
  }
}

export class InstanceNotFoundError extends RegistryError {
  constructor(service: string, id: string) {
    super('instance-not-found', `instance ${id} of service ${service} is not registered (or its TTL ran out)`);
  }
}

export class NoInstanceAvailableError extends RegistryError {
  constructor(service: string) {
    super('no-instance-available', `service ${service} has no instance that is up with a weight above 0`);
  }
}

/** A new change stream would pass the gateway's limit (the detail says which one). */
export class TooManyStreamsError extends RegistryError {
  constructor(detail: string) {
    super('too-many-streams', `${detail}; retry later or on another replica`);
  }
}

/** The store cannot be reached or did not answer in time. Never carries the store's address in its message. */
export class StoreUnavailableError extends RegistryError {
  constructor(message = 'the store is unreachable', options?: { cause?: unknown }) {
    super('store-unavailable', message, options);
  }
}

/**
 * The store refuses new data: its space quota is exhausted (etcd's NOSPACE alarm).
 * Writes that only remove or renew (deregistrations, heartbeats) still work, as do reads.
 */
export class StoreFullError extends RegistryError {
  constructor(options?: { cause?: unknown }) {
    super(
      'store-full',
      'the store is full (its space quota is exhausted); registrations and status changes are refused until an operator frees space',
      options,
    );
  }
}

/** minRevision names a revision the store has not reached within the wait (Kubernetes answers such a resourceVersion alike). */
export class RevisionNotReachedError extends RegistryError {
  constructor(wanted: number, reached: number) {
    super('revision-not-reached', `the store is at revision ${reached}, below the requested minRevision ${wanted}; retry later`);
  }
}

/**
 * The store refused the gateway itself: wrong credentials, an untrusted or rejected
 * certificate, no permission on the prefix. Retrying does not help, so start-up
 * gives up at once; while serving it is a 503 like any other store failure.
 */
export class StoreAccessError extends StoreUnavailableError {}

/** A watch or read asked for a revision the store has compacted away. */
export class StoreCompactedError extends RegistryError {
  constructor(readonly compactRevision?: number) {
    super('internal', 'the requested revision has been compacted');
  }
}

/** A put named a lease the store no longer has (it expired or was revoked). */
export class LeaseNotFoundError extends RegistryError {
  constructor() {
    super('instance-not-found', 'the lease of this instance is gone (its TTL ran out)');
  }
}
