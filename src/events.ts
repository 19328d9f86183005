// The one observer interface: everything the domain (store, watch, registry, change
// streams) and the DNS interface report that is worth a metric or a log line. Metrics (metrics.ts) and the
// log (logEvents below) each implement the events they care about; app.ts joins them.
// A new metric: an event here if none fits, its call where it happens, its counter in metrics.ts.
import type { FastifyBaseLogger } from 'fastify';
import type { Change } from './registry/types.ts';

/** The certificates the gateway follows on disk: the HTTPS server's, and its etcd client's. */
export type CertificateName = 'serving' | 'etcd-client';
export type CertificateReloadResult = 'reloaded' | 'refused';

export interface GatewayEvents {
  /** One store round trip of `op` that took `seconds` (status probes included). */
  storeRequest(op: string, seconds: number): void;
  /** The store became reachable (true) or unreachable (false): once per change. */
  storeReachable(up: boolean, err?: unknown): void;
  /** The store's raised alarms changed ([] once cleared). */
  storeAlarms(active: string[]): void;
  /** A known defect of the store's version: once per distinct message. */
  storeWarning(message: string): void;
  /** The watch applied these changes; the cache holds them. */
  changesApplied(changes: readonly Change[]): void;
  /** A write this gateway made came back through its watch `seconds` after the store acknowledged it (not called when the watch was first). */
  writeWatched(seconds: number): void;
  /** The watch lost its place and the cache was reloaded. */
  watchReloaded(): void;
  /** One discovery read, from the cache (hit) or from the store (miss). */
  discoveryRead(result: 'hit' | 'miss'): void;
  registered(instances: number): void;
  deregistered(instances: number): void;
  heartbeat(result: 'ok' | 'not_found' | 'error'): void;
  /** Change streams open now. */
  streamsOpen(streams: number): void;
  eventsSent(events: number): void;
  /** Changes the watch applied were handed to change-stream connections `seconds` later (see metrics.ts). */
  streamDelivered(seconds: number): void;
  /** Bytes change streams hold that their clients have not read. */
  streamsUnread(bytes: number): void;
  /**
   * One read of the certificate files (a change, a poll, SIGHUP) put new ones to use
   * (`reloaded`), or found files it could not use (`refused`: they cannot be read, do
   * not load, or etcd would not take them): the current ones stay.
   */
  certificateReload(certificate: CertificateName, result: CertificateReloadResult): void;
  /** The certificate in use (from the start, or since a reload) is valid until `notAfter`. */
  certificateInUse(certificate: CertificateName, notAfter: Date): void;
  /** One DNS message answered: the question's type (or `none`) and the answer's code. */
  dnsQuery(qtype: string, rcode: string): void;
  /** Something an operator should read (a watch trouble, a start-up retry). */
  warning(message: string, err?: unknown): void;
  notice(message: string): void;
}

const EVENT_NAMES = {
  storeRequest: true,
  storeReachable: true,
  storeAlarms: true,
  storeWarning: true,
  changesApplied: true,
  writeWatched: true,
  watchReloaded: true,
  discoveryRead: true,
  registered: true,
  deregistered: true,
  heartbeat: true,
  streamsOpen: true,
  eventsSent: true,
  streamDelivered: true,
  streamsUnread: true,
  certificateReload: true,
  certificateInUse: true,
  dnsQuery: true,
  warning: true,
  notice: true,
} satisfies Record<keyof GatewayEvents, true>;

type Handler = (...args: never[]) => void;

/** One observer that tells each part the events it implements. */
export function joinEvents(...parts: Partial<GatewayEvents>[]): GatewayEvents {
  const joined: Record<string, Handler> = {};
  for (const name of Object.keys(EVENT_NAMES) as (keyof GatewayEvents)[]) {
    const handlers = parts.flatMap((part) => (part[name] ? [(part[name] as Handler).bind(part)] : []));
    joined[name] = handlers.length === 1 ? handlers[0]! : (...args) => handlers.forEach((handler) => handler(...args));
  }
  return joined as unknown as GatewayEvents;
}

/** The events that are log lines. */
export function logEvents(log: FastifyBaseLogger, store: string): Partial<GatewayEvents> {
  const reason = (err: unknown) => ({ err: err instanceof Error ? err.message : undefined });
  return {
    storeReachable: (up, err) => {
      if (up) log.info({ store }, 'store reachable');
      else log.warn({ store, ...reason(err) }, 'store unreachable');
    },
    storeAlarms: (active) => {
      if (active.length) log.warn({ store, alarms: active }, 'store alarm raised');
      else log.info({ store }, 'store alarms cleared');
    },
    storeWarning: (message) => log.warn({ store }, message),
    warning: (message, err) => log.warn(reason(err), message),
    notice: (message) => log.info(message),
  };
}
