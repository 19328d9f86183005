// Which etcd members to send calls to. etcd3 spreads calls over the members at
// random and learns about a bad one only from calls that fail on it; a frozen
// member (SIGSTOP, a hung host) fails none quickly: every call sent to it waits
// out its whole deadline, so every third call would. So each member is asked
// alone, on a connection of its own, at a fixed interval; one that does not
// answer in time (or has no leader) while another does is held out of the shared
// client (its breaker isolated) until it answers again. The probes also learn
// which member answers on each endpoint (etcd-endpoints.ts names an endpoint whose
// member left the cluster). Private to the etcd store.

import type { Etcd3 } from 'etcd3';
import type { CircuitBreakerPolicy } from 'cockatiel';

export interface Member {
  /** The configured endpoint (ETCD_ENDPOINTS entry) this member is reached at. */
  endpoint: string;
  /** A client that talks to this member only. */
  client: Etcd3;
  /** This member's breaker in the shared client. */
  breaker: CircuitBreakerPolicy;
}

export class MemberProbes {
  /** Settles once every member was asked once (at most one probe deadline): wait for it before the first call. */
  readonly firstRound: Promise<void>;
  private readonly held = new Map<Member, { dispose(): void }>();
  /** Endpoint → id of the member that last answered on it (decimal, as etcd's headers carry it). */
  readonly answeredBy = new Map<string, string>();
  private readonly timer: NodeJS.Timeout;
  private probing = false;
  private closed = false;

  constructor(
    private readonly members: Member[],
    /** One status call to the given member; resolves the id of the member that answered in time, undefined if none did. */
    private readonly answers: (client: Etcd3) => Promise<string | undefined>,
    intervalMs: number,
  ) {
    this.timer = setInterval(() => void this.probe(), intervalMs);
    this.timer.unref();
    this.firstRound = this.probe();
  }

  private async probe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      const answered = await Promise.all(this.members.map((m) => this.answers(m.client)));
      if (this.closed) return;
      this.members.forEach((m, i) => answered[i] !== undefined && this.answeredBy.set(m.endpoint, answered[i]));
      // No member answers: the store is down, not one member; calls find out by themselves.
      const someAnswer = answered.some((id) => id !== undefined);
      this.members.forEach((m, i) => this.hold(m, someAnswer && answered[i] === undefined));
    } finally {
      this.probing = false;
    }
  }

  private hold(m: Member, out: boolean): void {
    const handle = this.held.get(m);
    if (out && !handle) this.held.set(m, m.breaker.isolate());
    if (!out && handle) {
      handle.dispose();
      this.held.delete(m);
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const m of this.members) {
      this.hold(m, false);
      m.client.close();
    }
  }
}
