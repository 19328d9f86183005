// One open change stream: what it may see, how far it has got, and its outbox.
import type { StreamMemory } from './memory.ts';
import { Outbox, type StreamSink } from './outbox.ts';

export interface Scope {
  /** Named services (a per-service stream or ?service=): only these. Undefined: every service allowed. */
  services?: string[];
  /** Further narrowing (access rights): may this subscriber see this service? */
  allowed?: (service: string) => boolean;
}

export class Subscriber {
  /** Highest revision this subscriber has been given (or skipped as out of scope). */
  lastId = 0;
  lastEventAt = Date.now();
  /** A reset snapshot is on its way (after a reload): live changes until then are in it. */
  resetPending = false;
  closed = false;
  readonly outbox: Outbox;
  private readonly named: Set<string> | undefined;

  constructor(
    readonly sink: StreamSink,
    readonly scope: Scope,
    memory: StreamMemory,
    bufferBytes: number,
    tooSlow: (sub: Subscriber) => void,
    /** A live change that waited for this stream's connection was handed over after `seconds`. */
    waited: (seconds: number) => void,
  ) {
    this.named = scope.services && new Set(scope.services);
    this.outbox = new Outbox(sink, memory, bufferBytes, () => tooSlow(this), waited);
  }

  sees(service: string): boolean {
    return (!this.named || this.named.has(service)) && (!this.scope.allowed || this.scope.allowed(service));
  }

  /** The services this subscriber asked for by name and may see (undefined: every service it may see). */
  namedServices(): string[] | undefined {
    return this.scope.services?.filter((s) => this.sees(s));
  }
}
