// The etcd side of Store.watch: one long-lived gRPC watch stream per watch.
// Kept apart from etcd.ts so each file stays readable; like etcd-errors.ts it
// is private to the etcd store.

import { EtcdPermissionDeniedError, type Etcd3, type IKeyValue, type IWatchResponse, type Watcher } from 'etcd3';
import { StoreCompactedError, StoreUnavailableError } from '../errors.ts';
import { isAuthTokenError, toStoreError } from './etcd-errors.ts';
import type { Watch, WatchEvent, WatchHandlers } from './store.ts';

const num = (s: string | number | undefined): number => Number(s ?? 0);

/**
 * How long one try of a new watch waits for etcd to confirm it before opening it
 * again elsewhere: etcd confirms in milliseconds, a frozen member never does.
 */
const CONFIRM_MS = 1500;

function toWatchEvent(ev: { type: string; kv: IKeyValue; prev_kv?: IKeyValue | null }): WatchEvent {
  const isPut = ev.type.toLowerCase() === 'put'; // proto enum name: 'PUT' / 'DELETE'
  const out: WatchEvent = {
    type: isPut ? 'put' : 'delete',
    key: ev.kv.key.toString('utf8'),
    value: isPut ? ev.kv.value.toString('utf8') : '',
    modRevision: num(ev.kv.mod_revision),
    createRevision: num(ev.kv.create_revision),
    lease: String(ev.kv.lease ?? '0'),
  };
  if (ev.prev_kv) {
    out.prevValue = ev.prev_kv.value.toString('utf8');
    // A replayed deregister shows the last record with its own revision, as a live one does.
    out.prevModRevision = num(ev.prev_kv.mod_revision);
  }
  return out;
}

export interface WatchDeps {
  /** The store's client now: it changes when the store reconnects (reopen()). */
  client(): Etcd3;
  timeoutMs: number;
  /** One unary call, so etcd3 replaces a stale auth token (streams never do). */
  refreshAuth(): Promise<void>;
  hasAuth: boolean;
  onClosed(w: EtcdWatch): void;
}

/**
 * One etcd3 watcher on a prefix, plus our own resume point. etcd3 resumes a
 * broken stream from `header.revision + 1` of the last response, but etcd sets
 * that header to the *current* store revision on a created response and on a
 * catch-up response cut at 1000 revisions; resuming from there could skip
 * events. So after etcd3's own handlers run we put back `next` = one past the
 * last event we delivered.
 */
export class EtcdWatch implements Watch {
  private watcher: Watcher | undefined;
  private next: number;
  private delivered = 0;
  private connected = false;
  private dead = false;
  private closed = false;
  private authRetried = false;
  /** Resolves start(): set until the first 'connected' (or a terminal error). */
  private settle: (() => void) | undefined;

  constructor(
    private readonly deps: WatchDeps,
    private readonly prefix: string,
    fromRevision: number,
    private readonly handlers: WatchHandlers,
  ) {
    this.next = fromRevision > 0 ? fromRevision : 0; // 0 = "from now", fixed on the first created response
  }

  /**
   * Resolves once etcd created the watch (or it died at once: then onError is called).
   * etcd3 opens the stream on a random member, and one on a frozen member never
   * confirms nor fails: a try that is not confirmed within CONFIRM_MS is abandoned
   * and the watch opened again on a new stream (another random member), until the
   * call timeout. Nothing was delivered yet, so every try starts at the same revision.
   */
  async start(): Promise<void> {
    const deadline = Date.now() + this.deps.timeoutMs;
    await new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const attempt = () => {
        const left = deadline - Date.now();
        if (left <= 0) {
          this.settle = undefined;
          void this.close();
          reject(new StoreUnavailableError('the store did not answer in time'));
          return;
        }
        if (this.watcher) this.abandon(this.watcher);
        this.open();
        timer = setTimeout(attempt, Math.min(CONFIRM_MS, left));
      };
      this.settle = () => {
        clearTimeout(timer);
        this.settle = undefined;
        resolve();
      };
      attempt();
    });
  }

  /** Drop a try that never confirmed; its late events are ignored (it is no longer this.watcher). */
  private abandon(w: Watcher): void {
    this.watcher = undefined;
    let timer: NodeJS.Timeout | undefined;
    // cancel() waits for an answer the frozen member never sends: bounded, in the background.
    void Promise.race([w.cancel().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, this.deps.timeoutMs)))]).then(() =>
      clearTimeout(timer),
    );
  }

  private open(): Watcher {
    // A namespace of its own gives this watch its own gRPC stream. etcd3 wedges a stream's
    // attach queue when etcd answers a create with created+canceled (a stale auth token):
    // no later watcher on that stream would ever connect. '' = no key prefix.
    const b = this.deps.client().namespace('').watch().prefix(this.prefix).withPreviousKV();
    if (this.next > 0) b.startRevision(String(this.next));
    // watcher() attaches listeners before the first tick: an 'error' with no listener would crash the process.
    const w = b.watcher();
    this.watcher = w;
    w.on('error', (err: Error) => this.onWatcherError(w, err));
    w.on('connected', (res: IWatchResponse) => {
      if (w !== this.watcher || this.closed) return;
      if (this.next <= 0) this.next = num(res.header.revision) + 1;
      this.resumeFrom(w);
      this.connected = true;
      this.authRetried = false;
      this.settle?.();
      this.handlers.onConnected?.();
    });
    w.on('disconnected', (err: Error) => {
      // etcd3 emits this twice per drop (gRPC error, then stream end): report once.
      if (w !== this.watcher || this.closed || !this.connected) return;
      this.connected = false;
      this.handlers.onDisconnected?.(toStoreError(err));
    });
    w.on('data', (res: IWatchResponse) => {
      if (w !== this.watcher || this.closed || this.dead) return;
      // etcd sends all events of one revision (one txn) in one response, in order.
      const events = res.events.map(toWatchEvent);
      const last = events[events.length - 1];
      // With events, the last one's revision is what is certainly complete (see class comment);
      // without events this is a progress notify, whose header is exact.
      const revision = last ? last.modRevision : num(res.header.revision);
      if (revision + 1 > this.next) this.next = revision + 1;
      this.resumeFrom(w);
      if (events.length === 0 && revision <= this.delivered) return;
      this.delivered = Math.max(this.delivered, revision);
      this.handlers.onBatch({ events, revision });
    });
    return w;
  }

  /**
   * Go on from the store's current client (after EtcdStore.reconnect): a new stream
   * from one past the last revision delivered, the old one abandoned. What the old
   * stream still brings is ignored (it is no longer this.watcher) and the new one
   * replays it: no event lost or delivered twice, and the handlers see no error.
   * A dead watch (its error reported, or re-authenticating) opens on the current
   * client by itself.
   */
  reopen(): void {
    if (this.closed || this.dead || !this.watcher) return;
    this.abandon(this.watcher);
    this.open();
  }

  private resumeFrom(w: Watcher): void {
    if (this.next > 0) w.request.start_revision = String(this.next);
  }

  private onWatcherError(w: Watcher, err: Error): void {
    // etcd3 already dropped this watcher: never cancel() it (its detach would wait forever).
    if (w !== this.watcher || this.closed || this.dead) return;
    this.dead = true;
    this.connected = false;
    // A watch created with a stale simple token is cancelled as "permission denied"
    // (LIBRARIES.md pitfall 13): refresh the token with one unary call, then watch again.
    const authLike = err instanceof EtcdPermissionDeniedError || isAuthTokenError(err);
    if (this.deps.hasAuth && authLike && !this.authRetried) {
      this.authRetried = true;
      void this.deps.refreshAuth().then(() => {
        if (this.closed) return;
        this.dead = false;
        this.open();
      });
      return;
    }
    this.settle?.();
    // "Watcher canceled: " with an empty reason is a compaction (etcd3 hides compact_revision).
    this.handlers.onError(authLike ? toStoreError(err) : new StoreCompactedError());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.deps.onClosed(this);
    const w = this.watcher;
    if (!w || this.dead) return;
    // cancel() waits for etcd's answer: bound it, a frozen etcd must not hang shutdown.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([w.cancel().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, this.deps.timeoutMs)))]);
    clearTimeout(timer);
  }
}
