// Turns etcd3 / gRPC / cockatiel errors into our domain errors, so that no
// other file ever sees an etcd3 error. Messages are written here rather than
// copied: gRPC messages can carry the etcd address ("connect ECONNREFUSED
// 10.0.0.1:2379"), which must not reach API clients. The original error stays
// available as `cause` for logs.

import {
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCInvalidArgumentError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
  isRecoverableError,
} from 'etcd3';
import { isBrokenCircuitError } from 'cockatiel';
import { InvalidRequestError, RegistryError, StoreAccessError, StoreFullError, StoreUnavailableError } from '../errors.ts';

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** etcd rejects these txn shapes; they are the caller's fault, not the store's. */
const INVALID_TXN = ['too many operations in txn request', 'duplicate key given in txn request'];

export function isInvalidTxn(err: unknown): string | undefined {
  if (!(err instanceof GRPCInvalidArgumentError)) return undefined;
  return INVALID_TXN.find((m) => message(err).includes(m));
}

/**
 * etcd's space quota is exhausted (NOSPACE alarm): it refuses puts and lease grants
 * but still serves reads, deletes and renewals. The store answered, so this is no
 * connection failure: not retried, and never counted by a circuit breaker.
 */
export function isNoSpace(err: unknown): boolean {
  return message(err).includes('database space exceeded');
}

/** A put referenced a lease etcd does not know (expired or revoked). */
export function isLeaseNotFound(err: unknown): boolean {
  return err instanceof EtcdLeaseInvalidError || message(err).includes('requested lease not found');
}

/** The cached simple token went stale (a member restarted): one unary call re-authenticates. */
export function isAuthTokenError(err: unknown): boolean {
  return err instanceof EtcdInvalidAuthTokenError || err instanceof GRPCUnauthenticatedError || message(err).includes('invalid auth token');
}

/** TLS failures that the next attempt would meet again, as [what OpenSSL/Node says, what we tell the operator]. */
const TLS_FAILURES: [RegExp, string][] = [
  [
    /alert (bad certificate|certificate required|unknown ca|certificate unknown|handshake failure)/i,
    "the store rejected the gateway's TLS client certificate (check ETCD_CERT_FILE and ETCD_KEY_FILE)",
  ],
  [/certificate has expired|certificate is not yet valid/i, 'a TLS certificate has expired or is not yet valid'],
  [/altnames|does not match certificate/i, "the store's TLS certificate does not name the host in ETCD_ENDPOINTS"],
  [
    /unable to verify|self[- ]signed certificate|unable to get (local )?issuer|certificate verify failed|unknown ca/i,
    "the store's TLS certificate is not trusted (check ETCD_CA_FILE)",
  ],
  [
    /wrong version number|packet length too long|http request/i,
    'the TLS handshake with the store failed (is it serving plain http? then use http:// in ETCD_ENDPOINTS)',
  ],
];

/** What a certificate problem behind this error is, if that is what it is. */
export function tlsFailure(err: unknown): string | undefined {
  if (!(err instanceof GRPCUnavailableError)) return undefined;
  const text = message(err);
  return TLS_FAILURES.find(([re]) => re.test(text))?.[1];
}

/**
 * Worth one more attempt: the call failed fast on a connection problem (e.g. a
 * member restarting). Not a deadline (the call already spent its budget) and not
 * an open breaker (it would fail again at once).
 */
export function isRetryable(err: unknown): boolean {
  if (isBrokenCircuitError(err) || err instanceof GRPCDeadlineExceededError || tlsFailure(err) || isNoSpace(err)) return false;
  return err instanceof GRPCUnavailableError || (err instanceof Error && isRecoverableError(err));
}

export function toStoreError(err: unknown): Error {
  if (err instanceof RegistryError) return err;
  const invalid = isInvalidTxn(err);
  if (invalid) return new InvalidRequestError(invalid);
  if (isNoSpace(err)) return new StoreFullError({ cause: err });
  if (isBrokenCircuitError(err))
    return new StoreUnavailableError('the store is unreachable (recent failures; retrying shortly)', { cause: err });
  if (err instanceof GRPCDeadlineExceededError) return new StoreUnavailableError('the store did not answer in time', { cause: err });
  if (err instanceof EtcdAuthenticationFailedError) {
    return new StoreAccessError('the store rejected the gateway credentials (check ETCD_USERNAME and ETCD_PASSWORD)', { cause: err });
  }
  if (err instanceof EtcdPermissionDeniedError) {
    return new StoreAccessError("the store denied the gateway's etcd user access to these keys (grant it readwrite on ETCD_PREFIX)", {
      cause: err,
    });
  }
  if (isAuthTokenError(err)) return new StoreUnavailableError('the store denied access to the gateway', { cause: err });
  const tls = tlsFailure(err);
  if (tls) return new StoreAccessError(tls, { cause: err });
  return new StoreUnavailableError('the store is unreachable', { cause: err });
}
