// The ground truth: every event etcd's own watch reports under the prefix,
// recorded from before the first write with a client of our own (etcd3, not
// the gateway's code). Keys are kept relative to the prefix.
import { Etcd3, type IWatchResponse, type Namespace, type Watcher } from 'etcd3';
import { ExponentialBackoff } from 'cockatiel';
import { setTimeout as sleep } from 'node:timers/promises';
import type { History, HistoryEvent } from './observations.ts';

export class HistoryRecorder {
  readonly events: HistoryEvent[] = [];
  /** The highest revision the watch has reported (events or headers). */
  revision = 0;
  broken: string | undefined;
  private startRevision = 0;
  private watcher: Watcher | undefined;
  private readonly client: Etcd3;
  private readonly ns: Namespace;

  constructor(
    endpoints: string[],
    prefix: string,
    private readonly now: () => number,
  ) {
    this.client = new Etcd3({
      hosts: endpoints,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }),
      // Reconnect fast after a leader kill: the history must keep up with auto-compaction.
      faultHandling: { watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }) as never },
    });
    this.ns = this.client.namespace(`${prefix}/`);
  }

  /** Starts watching from the current revision; resolves once the watch is established. */
  async start(): Promise<void> {
    const head = await this.ns.getAll().prefix('').exec();
    if (head.kvs.length) throw new Error('the soak prefix is not empty');
    this.startRevision = Number(head.header.revision);
    await this.watchFrom(this.startRevision);
  }

  private async watchFrom(revision: number): Promise<void> {
    this.revision = revision;
    const w = await this.ns
      .watch()
      .prefix('')
      .startRevision(String(revision + 1))
      .watcher();
    w.on('data', (res: IWatchResponse) => this.record(res));
    // Any error (a compaction past our position) means the history has a hole: the run is void.
    w.on('error', (err: Error) => (this.broken = err.message));
    this.watcher = w;
  }

  /** Before the store is restored: stops watching (a watch would wait in silence for revisions the old store had reached). */
  async pause(): Promise<void> {
    await this.watcher?.cancel().catch(() => {});
    this.watcher = undefined;
  }

  /** Once the store is restored at `revision`: the history goes on from there (the checker knows where it restarted). */
  async resume(revision: number): Promise<void> {
    await this.watchFrom(revision);
  }

  private record(res: IWatchResponse): void {
    const at = this.now();
    for (const ev of res.events) {
      const kv = ev.kv;
      const revision = Number(kv.mod_revision);
      const key = kv.key.toString();
      if (ev.type === 'Put') {
        const value = kv.value.toString();
        // Instance records are cut to their status (all the checker needs); bookkeeping is kept whole.
        const kept = key.startsWith('_/') ? value : statusOnly(value);
        this.events.push({ revision, key, type: 'put', createRevision: Number(kv.create_revision), value: kept, at });
      } else {
        this.events.push({ revision, key, type: 'delete', at });
      }
      this.revision = Math.max(this.revision, revision);
    }
    this.revision = Math.max(this.revision, Number(res.header.revision));
  }

  /** Resolves once the recorder has seen revision `r` (false after `timeoutMs`). */
  async reach(r: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.revision < r) {
      if (Date.now() > deadline || this.broken) return false;
      await sleep(50);
    }
    return true;
  }

  /** The store's current revision (a linearizable read). */
  async currentRevision(): Promise<number> {
    return Number((await this.ns.get('_/soak-probe').exec()).header.revision);
  }

  /**
   * Writes a marker under `_/` (bookkeeping space: no gateway treats it as an
   * instance) and waits until the watch delivers it: everything before it is recorded.
   */
  async fence(timeoutMs = 15_000): Promise<number> {
    const res = await this.ns.put(`_/soak-fence/${Date.now()}`).value('fence').exec();
    const r = Number(res.header.revision);
    if (!(await this.reach(r, timeoutMs))) throw new Error(`the recorder did not reach revision ${r}`);
    return r;
  }

  async compact(revision: number): Promise<void> {
    await this.client.kv.compact({ revision: String(revision), physical: false });
  }

  snapshot(): History {
    return { startRevision: this.startRevision, events: this.events, endRevision: this.revision, broken: this.broken };
  }

  async stop(): Promise<void> {
    await this.watcher?.cancel().catch(() => {});
    this.client.close();
  }
}

function statusOnly(value: string): string {
  try {
    return JSON.stringify({ status: (JSON.parse(value) as { status?: unknown }).status });
  } catch {
    return value;
  }
}
