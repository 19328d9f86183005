// The etcd3 clients one set of credentials gives: the shared client every call
// goes through, and, with several endpoints, the per-member probes that keep a
// frozen member out of it (etcd-members.ts). etcd3 builds its gRPC credentials
// once, in its constructor: a renewed client certificate needs a new
// connection (EtcdStore.reconnect). Private to the etcd store.

import { InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { Etcd3, isRecoverableError } from 'etcd3';
import {
  circuitBreaker,
  ConsecutiveBreaker,
  ExponentialBackoff,
  handleWhen,
  noop,
  type CircuitBreakerPolicy,
  type IBackoff,
} from 'cockatiel';
import { isNoSpace } from './etcd-errors.ts';
import { MemberProbes } from './etcd-members.ts';

/** Client TLS, already read from its files (PEM). Present = TLS; no `ca` = the system roots. */
export interface EtcdTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface ConnectionOptions {
  endpoints: string[];
  username?: string;
  password?: string;
  tls?: EtcdTls;
  /** Deadline of every unary call. */
  timeoutMs: number;
}

/**
 * etcd's WithRequireLeader: the gRPC metadata hasleader=true. On a stream (watch,
 * keepalive) etcd refuses to open it on a member without a leader and cancels it
 * once its member has gone about three election timeouts without one, a
 * partition rather than an election; etcd3 then reopens it on another host.
 * On a unary call etcd refuses at once, even during an ordinary election, so
 * only the probe's status call carries it: data calls wait out an election as
 * before. etcd3 has no metadata option, but its call options reach grpc-js,
 * whose per-call interceptors can add metadata.
 */
export const requireLeader: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      const md = metadata.clone(); // with auth, etcd3 shares one Metadata object between calls
      md.set('hasleader', 'true');
      next(md, listener);
    },
  });

/** Interval and deadline of the per-member probes (etcd-members.ts): a member is asked alone this often. */
const MEMBER_PROBE_MS = 1000;
const MEMBER_TIMEOUT_MS = 1000;

export class EtcdConnection {
  readonly client: Etcd3;
  private readonly members: MemberProbes | undefined;
  private retireTimer: NodeJS.Timeout | undefined;
  private probing = true;
  private closed = false;

  constructor(opts: ConnectionOptions) {
    const deadline = () => ({ deadline: Date.now() + opts.timeoutMs });
    const { tls } = opts;
    const connection = {
      // rootCertificate may be absent (system roots): grpc's createSsl accepts null there.
      credentials: tls ? { rootCertificate: (tls.ca ?? null) as Buffer, privateKey: tls.key, certChain: tls.cert } : undefined,
      auth: opts.username !== undefined ? { username: opts.username, password: opts.password ?? '', callOptions: deadline } : undefined,
    };
    const breakers = new Map<string, CircuitBreakerPolicy>();
    this.client = new Etcd3({
      hosts: opts.endpoints,
      ...connection,
      // A function, so each call gets its own deadline; streams (watch, keepalive) have none.
      defaultCallOptions: (ctx) => (ctx.isStream ? { interceptors: [requireLeader] } : deadline()),
      grpcOptions: {
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000, // >= etcd's --grpc-keepalive-min-time (5 s)
        'grpc.max_receive_message_length': -1, // big watch responses must not wedge a watcher
      },
      faultHandling: {
        global: noop, // retries are decided per call (EtcdStore.retry)
        // Short breaker: etcd3's default keeps failing for 5 s after etcd is back. A full
        // store answers (NOSPACE) and still serves renewals, deletes and reads: not a failure.
        host: (endpoint) => {
          const breaker = circuitBreaker(
            handleWhen((err) => isRecoverableError(err) && !isNoSpace(err)),
            { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) },
          );
          breakers.set(endpoint, breaker);
          return breaker;
        },
        watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 3000 }) as unknown as IBackoff<unknown>, // typings bug
      },
    });
    // With one member there is nowhere else to send calls: nothing to probe.
    if (opts.endpoints.length > 1) {
      const members = opts.endpoints.map((endpoint) => ({
        endpoint,
        client: new Etcd3({ hosts: [endpoint], ...connection, faultHandling: { global: noop, host: () => noop } }),
        breaker: breakers.get(endpoint)!,
      }));
      const answers = (client: Etcd3) =>
        client.maintenance.status({ deadline: Date.now() + MEMBER_TIMEOUT_MS, interceptors: [requireLeader] }).then(
          (res) => String(res.header.member_id),
          () => undefined,
        );
      this.members = new MemberProbes(members, answers, MEMBER_PROBE_MS);
    }
  }

  /** Endpoint → id of the member that last answered on it (none with a single endpoint). */
  get answeredBy(): ReadonlyMap<string, string> {
    return this.members?.answeredBy ?? new Map();
  }

  /** Settles once every member was asked once (at most one probe deadline): wait for it before the first call. */
  get firstRound(): Promise<void> | undefined {
    return this.members?.firstRound;
  }

  /**
   * Replaced by a new connection: the probes stop now, the client closes after
   * `graceMs`, once the calls and renewals still on it are answered or timed out
   * (closing a grpc-js channel fails the calls still waiting for a connection).
   */
  retire(graceMs: number, onClosed: () => void): void {
    this.stopProbes();
    this.retireTimer = setTimeout(() => {
      this.close();
      onClosed();
    }, graceMs);
    this.retireTimer.unref();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retireTimer);
    this.stopProbes();
    this.client.close();
  }

  private stopProbes(): void {
    if (!this.probing) return;
    this.probing = false;
    this.members?.close();
  }
}
