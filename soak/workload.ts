// The load driver: a fleet of instances kept alive by heartbeats at the
// answered `interval` (registered again on 404), churn (registrations,
// replacements, status changes, deregistrations, /batch), instances left to
// expire on purpose, write-then-read pairs across replicas with minRevision,
// and blocking-query pollers. Every answer it gets goes into the run log.
import { json, now, request, revisionOf, type Reply } from './http.ts';
import { digestOf, type AckedWrite, type HeartbeatBucket, type RunLog } from './observations.ts';
import type { Random } from './random.ts';

export interface WorkloadOptions {
  services: string[];
  /** Instances kept alive by heartbeats (the fleet). */
  instances: number;
  ttl: number;
  /** Churn operations started per second. */
  churnPerSecond: number;
  /** TTL of instances left to expire on purpose. */
  abandonedTtl: number;
  /** Chance that a churn write is followed by a minRevision read on another replica. */
  pairChance: number;
  pollers: number;
  pollWaitSeconds: number;
}

type Status = 'up' | 'draining' | 'down';

interface Member {
  service: string;
  id: string;
  key: string;
  status: Status;
  /** A write of this member went unanswered: its stored status is unknown until it registers again. */
  uncertain: boolean;
  /** A churn write of this member is in flight: a second one would race it, and which status etcd ends with would be unknown. */
  busy: boolean;
  /** The replica whose heartbeat just failed: the retry goes to another one. */
  avoid?: number;
  timer?: NodeJS.Timeout;
  gone: boolean;
}

/** The part of the run log the driver writes. */
export type WorkloadLog = Pick<
  RunLog,
  'writes' | 'renewals' | 'notFound' | 'failedHeartbeats' | 'unansweredDeregistrations' | 'storeFull' | 'abandoned' | 'reads' | 'heartbeats'
>;

const HEARTBEAT_BUCKET_MS = 5000;

/**
 * 507 store-full: an expected answer while the store is full, not a failure. It does not prove that
 * nothing landed: etcd applies the write that crosses its quota and then answers NOSPACE for it.
 */
const STORE_FULL = 507;
/** No answer, or a 5xx (507 included): the write may or may not have happened (a 404 says the instance was already gone). */
const mayHaveLanded = (reply: Reply): boolean => reply.status === 0 || reply.status >= 500;
const STATUSES: Status[] = ['up', 'draining', 'down'];

export class Workload {
  private readonly fleet = new Map<string, Member>();
  private serial = 0;
  private churnTimer: NodeJS.Timeout | undefined;
  private churning = false;
  private beating = false;
  private polling = false;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(
    private readonly opts: WorkloadOptions,
    private readonly replicas: () => string[],
    private readonly random: Random,
    private readonly log: WorkloadLog,
  ) {}

  /** Registers the fleet (through /batch, 100 at a time) and starts heartbeats, churn and pollers. */
  async start(): Promise<void> {
    this.beating = true;
    const members: Member[] = [];
    for (let i = 0; i < this.opts.instances; i++) members.push(this.newMember());
    for (let i = 0; i < members.length; i += 100) {
      const chunk = members.slice(i, i + 100);
      for (let attempt = 0; attempt < 5; attempt++) {
        if (await this.batch(chunk, [], this.opts.ttl, false)) break;
      }
    }
    this.churning = true;
    this.churnTimer = setInterval(() => this.track(this.churn()), 1000 / this.opts.churnPerSecond);
    this.polling = true;
    for (let i = 0; i < this.opts.pollers; i++) this.track(this.poll(this.random.pick(this.opts.services)));
  }

  /** Stops churn and pollers and waits for their requests (heartbeats go on, untracked). */
  async quiesce(): Promise<void> {
    this.churning = false;
    this.polling = false;
    clearInterval(this.churnTimer);
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
  }

  /** The store was restored from a snapshot: what it holds of each instance's status is unknown until it registers again. */
  storeRestored(): void {
    for (const m of this.fleet.values()) m.uncertain = true;
  }

  stopHeartbeats(): void {
    this.beating = false;
    for (const m of this.fleet.values()) clearTimeout(m.timer);
  }

  private track(p: Promise<unknown>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private newMember(service = this.random.pick(this.opts.services)): Member {
    const id = `i-${++this.serial}`;
    return { service, id, key: `${service}/${id}`, status: 'up', uncertain: false, busy: false, gone: false };
  }

  private replica(except?: number): number {
    const n = this.replicas().length;
    if (except === undefined || n < 2) return this.random.int(0, n - 1);
    return (except + this.random.int(1, n - 1)) % n;
  }

  private body(m: Member, ttl: number) {
    return {
      address: `10.${this.serial % 250}.${(this.serial >> 8) % 250}.7`,
      port: 8000 + (this.serial % 1000),
      ttl,
      tags: ['soak'],
      metadata: { serial: String(this.serial) },
      weight: this.random.int(1, 200),
      status: m.status,
    };
  }

  /** Records a 2xx write with its revision; returns the revision (undefined when not acknowledged). */
  private ack(op: AckedWrite['op'], replica: number, reply: Reply, sentAt: number, changes: AckedWrite['changes']): number | undefined {
    const revision = revisionOf(reply);
    if (reply.status < 200 || reply.status > 299 || !Number.isFinite(revision)) return undefined;
    this.log.writes.push({ op, replica, revision, sentAt, answeredAt: now(), changes });
    return revision;
  }

  // ---- fleet: registration and heartbeats ----

  private async register(m: Member, ttl: number, op: 'register' | 'replace' = 'register'): Promise<number | undefined> {
    const replica = this.replica();
    const sentAt = now();
    const status = m.status; // what the body says, whatever answers arrive meanwhile
    const reply = await request(this.replicas()[replica]!, 'PUT', `/services/${m.service}/instances/${m.id}`, this.body(m, ttl));
    const revision = this.ack(op, replica, reply, sentAt, [{ key: m.key, kind: 'put', status }]);
    if (reply.status === STORE_FULL) this.log.storeFull?.push({ key: m.key, sentAt });
    if (revision === undefined) {
      m.uncertain = true;
      return undefined;
    }
    m.uncertain = false;
    this.log.renewals.push({ key: m.key, sentAt, ttl: json<{ ttl: number }>(reply)?.ttl ?? ttl, registration: true });
    return revision;
  }

  private join(m: Member, firstBeatMs: number): void {
    this.fleet.set(m.key, m);
    this.schedule(m, firstBeatMs);
  }

  private schedule(m: Member, ms: number): void {
    if (!this.beating || m.gone) return;
    clearTimeout(m.timer);
    // Heartbeats are not tracked: with a fleet beating there is always one in flight, and quiesce() would never end.
    m.timer = setTimeout(() => void this.heartbeat(m), ms);
  }

  private countHeartbeat(kind: keyof Omit<HeartbeatBucket, 'at'>): void {
    const at = Math.floor(now() / HEARTBEAT_BUCKET_MS) * HEARTBEAT_BUCKET_MS;
    let b = this.log.heartbeats.at(-1);
    if (!b || b.at !== at) this.log.heartbeats.push((b = { at, ok: 0, notFound: 0, failed: 0 }));
    b[kind]++;
  }

  private async heartbeat(m: Member, status?: Status): Promise<void> {
    if (m.gone) return;
    const replica = this.replica(m.avoid);
    m.avoid = undefined;
    const sentAt = now();
    const reply = await request(
      this.replicas()[replica]!,
      'PUT',
      `/services/${m.service}/instances/${m.id}/heartbeat`,
      status ? { status } : undefined,
    );
    if (m.gone) return;
    if (reply.status === 200) {
      this.countHeartbeat('ok');
      const answer = json<{ ttl: number; interval?: number }>(reply);
      this.log.renewals.push({ key: m.key, sentAt, ttl: answer?.ttl ?? this.opts.ttl, registration: false });
      if (status && status !== m.status && !m.uncertain) this.ack('status', replica, reply, sentAt, [{ key: m.key, kind: 'put', status }]);
      if (status) m.status = status;
      this.schedule(m, (answer?.interval ?? this.opts.ttl / 3) * 1000);
      return;
    }
    if (status) m.uncertain = true;
    if (status && reply.status === STORE_FULL) {
      // Not a failed heartbeat: the store refused the status change. Whether the lease was renewed is unknown: a plain heartbeat soon.
      this.log.storeFull?.push({ key: m.key, sentAt });
      this.schedule(m, 1000);
      return;
    }
    if (reply.status === 404) {
      this.countHeartbeat('notFound');
      this.log.notFound.push({ key: m.key, replica, sentAt, answeredAt: now() });
      await this.register(m, this.opts.ttl);
      this.schedule(m, (this.opts.ttl / 3) * 1000);
      return;
    }
    this.countHeartbeat('failed');
    this.log.failedHeartbeats?.push({ key: m.key, replica, status: reply.status, sentAt, answeredAt: now() });
    m.avoid = replica;
    this.schedule(m, 1000); // another replica, soon: well within the TTL
  }

  // ---- churn ----

  private members(): Member[] {
    return [...this.fleet.values()];
  }

  private async busyWith<T>(m: Member, write: () => Promise<T>): Promise<T> {
    m.busy = true;
    try {
      return await write();
    } finally {
      m.busy = false;
    }
  }

  private async churn(): Promise<void> {
    if (!this.churning) return;
    const roll = this.random.next();
    const list = this.members();
    if (roll < 0.2 || list.length < 10) {
      const m = this.newMember();
      const r = await this.register(m, this.opts.ttl);
      this.join(m, (this.opts.ttl / 3) * 1000);
      if (r !== undefined) await this.pair(m.service, r);
    } else if (roll < 0.4) {
      const m = this.random.pick(list);
      if (m.uncertain || m.busy) return;
      const r = await this.busyWith(m, () => this.register(m, this.opts.ttl, 'replace'));
      if (r !== undefined) await this.pair(m.service, r);
    } else if (roll < 0.6) {
      const m = this.random.pick(list);
      const status = this.random.pick(STATUSES.filter((s) => s !== m.status));
      if (m.busy) return;
      clearTimeout(m.timer);
      await this.busyWith(m, () => this.heartbeat(m, status));
    } else if (roll < 0.75) {
      const m = this.random.pick(list);
      this.leave(m);
      const replica = this.replica();
      const sentAt = now();
      const reply = await request(this.replicas()[replica]!, 'DELETE', `/services/${m.service}/instances/${m.id}`);
      const r = this.ack('deregister', replica, reply, sentAt, [{ key: m.key, kind: 'delete' }]);
      if (r !== undefined) await this.pair(m.service, r);
      else if (mayHaveLanded(reply)) this.log.unansweredDeregistrations?.push({ key: m.key, sentAt });
    } else if (roll < 0.85) {
      const joining = Array.from({ length: this.random.int(1, 6) }, () => this.newMember());
      // Batches also take the fleet back to its size: new single registrations outnumber
      // deregistrations, and a registry that keeps growing would hide any trend in memory.
      const excess = this.fleet.size + joining.length - this.opts.instances;
      const want = Math.min(list.length, Math.max(excess, this.random.chance(0.5) ? 1 : 0));
      const leaving = new Set<Member>();
      while (leaving.size < want) leaving.add(this.random.pick(list));
      for (const m of leaving) this.leave(m);
      await this.batch(joining, [...leaving], this.opts.ttl, false);
    } else {
      await this.abandon([this.newMember()], this.opts.abandonedTtl);
    }
  }

  private leave(m: Member): void {
    m.gone = true;
    clearTimeout(m.timer);
    this.fleet.delete(m.key);
  }

  /** POST /batch; registered members join the fleet unless `abandoned`. True when acknowledged. */
  private async batch(register: Member[], deregister: Member[], ttl: number, abandoned: boolean): Promise<boolean> {
    const replica = this.replica();
    const sentAt = now();
    const body = {
      register: register.map((m) => ({ service: m.service, id: m.id, ...this.body(m, ttl) })),
      deregister: deregister.map((m) => ({ service: m.service, id: m.id })),
    };
    const reply = await request(this.replicas()[replica]!, 'POST', '/batch', body, 15_000);
    const changes: AckedWrite['changes'] = [
      ...register.map((m) => ({ key: m.key, kind: 'put' as const, status: m.status })),
      ...deregister.map((m) => ({ key: m.key, kind: 'delete' as const })),
    ];
    const revision = this.ack('batch', replica, reply, sentAt, changes);
    if (reply.status === STORE_FULL) this.log.storeFull?.push(...register.map((m) => ({ key: m.key, sentAt })));
    if (revision === undefined && mayHaveLanded(reply))
      for (const m of deregister) this.log.unansweredDeregistrations?.push({ key: m.key, sentAt });
    for (const m of register) {
      if (revision !== undefined) {
        this.log.renewals.push({ key: m.key, sentAt, ttl, registration: true });
        if (abandoned) this.log.abandoned.push({ key: m.key, registeredAt: sentAt, ttl });
      } else m.uncertain = true;
      if (!abandoned) this.join(m, this.random.between(0.1, 1) * (ttl / 3) * 1000);
    }
    if (revision !== undefined && register[0]) await this.pair(register[0].service, revision);
    return revision !== undefined;
  }

  /** Registers instances that get no heartbeat: they must expire. */
  private async abandon(members: Member[], ttl: number): Promise<boolean> {
    return this.batch(members, [], ttl, true);
  }

  /** A burst of `count` registrations (through /batch, all at once), left to expire. */
  async burst(count: number, ttl: number): Promise<string> {
    const chunks: Member[][] = [];
    for (let i = 0; i < count; i += 100) chunks.push(Array.from({ length: Math.min(100, count - i) }, () => this.newMember()));
    const acked = await Promise.all(chunks.map((c) => this.abandon(c, ttl)));
    return `${acked.filter(Boolean).length * 100}/${count} acknowledged`;
  }

  // ---- reads ----

  /** The write at `revision` must show on another replica read with minRevision. */
  private async pair(service: string, revision: number): Promise<void> {
    if (!this.random.chance(this.opts.pairChance)) return;
    await this.read('minRevision', service, revision, `minRevision=${revision}`, 8000);
  }

  private async read(
    kind: 'minRevision' | 'blocking',
    service: string,
    bound: number,
    query: string,
    timeoutMs: number,
    waitMs?: number,
  ): Promise<number | undefined> {
    const replica = this.replica();
    const sentAt = now();
    const reply = await request(this.replicas()[replica]!, 'GET', `/services/${service}?${query}`, undefined, timeoutMs);
    const body = reply.status === 200 ? json<{ instances: { id: string; revision: number }[] }>(reply) : undefined;
    const lines = (body?.instances ?? []).map((i) => `${service}/${i.id}@${i.revision}`);
    const label = revisionOf(reply);
    this.log.reads.push({
      kind,
      service,
      replica,
      bound,
      status: reply.status,
      label,
      digest: digestOf(lines),
      count: lines.length,
      waitMs,
      stale: reply.headers['x-registry-stale'] === 'true',
      sentAt,
      answeredAt: now(),
    });
    return reply.status === 200 ? label : undefined;
  }

  /** A blocking-query poller: index = the last label it got, on a random replica each time. */
  private async poll(service: string): Promise<void> {
    let index = 0;
    const wait = this.opts.pollWaitSeconds;
    while (this.polling) {
      const label = await this.read('blocking', service, index, `index=${index}&wait=${wait}s`, (wait * 1.2 + 10) * 1000, wait * 1000);
      if (label === undefined) await new Promise((r) => setTimeout(r, 1000));
      else index = Math.max(index, label);
    }
  }
}
