// Each name's answer records, encoded once per change of its service: a query then
// only shuffles and copies them (wire.ts), instead of encoding every record of
// every answer. An entry is used only while its service keeps the revision label
// it was made at (every change applied to a service gives it a new one, and a
// reload keeps a label only for a service whose instances did not change); the
// change listener drops a service's entries as the watch applies a change to it,
// and a reload drops them all, so entries of services that are gone hold no
// memory. Only answers about instances that exist are kept, so names asked at
// random (unknown services or tags) hold none either.
import type { Change } from '../registry/types.ts';

/** The registry's change listeners (registry/index.ts). */
export interface ChangeFeed {
  onChanges(listener: (changes: Change[]) => void): void;
  onReset(listener: () => void): void;
}

interface Entry<T> {
  revision: number;
  answer: T;
}

export class PreparedAnswers<T> {
  private readonly byService = new Map<string, Map<string, Entry<T>>>();

  constructor(feed: ChangeFeed) {
    feed.onChanges((changes) => {
      for (const c of changes) this.byService.delete(c.service);
    });
    feed.onReset(() => this.byService.clear());
  }

  /**
   * The answer kept for `question` about `service` at its revision label `revision`,
   * else `make`'s, kept until the service changes (undefined is not kept).
   */
  get(service: string, revision: number, question: string, make: () => T | undefined): T | undefined {
    const kept = this.byService.get(service)?.get(question);
    if (kept?.revision === revision) return kept.answer;
    const answer = make();
    if (answer === undefined) return undefined;
    let entries = this.byService.get(service);
    if (!entries) this.byService.set(service, (entries = new Map()));
    entries.set(question, { revision, answer });
    return answer;
  }
}
