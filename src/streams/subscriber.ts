// One open change stream: what it may see, how far it has got, and its outbox.
import { Outbox, type StreamSink } from './outbox.ts';

export interface Scope {
  /** Named services (a per-service stream or ?service=): only these. Undefined: every service allowed. */
  services?: string[];
  /** Further narrowing (access rights): may this subscriber see this service? */
  allowed?: (service: string) => boolean;
  /** Whose rights `allowed` checks (a token name): streams with the same key and services share snapshots. */
  accessKey?: string;
}

export class Subscriber {
  /** Highest revision this subscriber has been given (or skipped as out of scope). */
  lastId = 0;
  lastEventAt = Date.now();
  /** A reset snapshot is on its way (after a reload): live changes until then are in it. */
  resetPending = false;
  closed = false;
  readonly outbox: Outbox;
  /** Subscribers with the same key see the same services (undefined: shares with none). */
  readonly scopeKey: string | undefined;
  private readonly named: Set<string> | undefined;

  constructor(
    readonly sink: StreamSink,
    readonly scope: Scope,
    bufferBytes: number,
    tooSlow: (sub: Subscriber) => void,
  ) {
    this.named = scope.services && new Set(scope.services);
    this.outbox = new Outbox(sink, bufferBytes, () => tooSlow(this));
    const names = scope.services ? [...this.named!].sort().join('/') : '*';
    this.scopeKey = scope.allowed && scope.accessKey === undefined ? undefined : `${scope.accessKey ?? ''}|${names}`;
  }

  sees(service: string): boolean {
    return (!this.named || this.named.has(service)) && (!this.scope.allowed || this.scope.allowed(service));
  }

  /** The services this subscriber asked for by name and may see (undefined: every service it may see). */
  namedServices(): string[] | undefined {
    return this.scope.services?.filter((s) => this.sees(s));
  }
}
