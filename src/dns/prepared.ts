// Each name's answer records, encoded once per change of its service: a query then
// only shuffles and copies them (wire.ts), instead of encoding every record of
// every answer. A service's entries are dropped as soon as the watch applies a
// change to it (the listener runs before any later query reads the cache), and all
// of them when the cache is reloaded. Only answers about instances that exist are
// kept, so names asked at random (unknown services or tags) hold no memory.
import type { Change } from '../registry/types.ts';

/** The registry's change listeners (registry/index.ts). */
export interface ChangeFeed {
  onChanges(listener: (changes: Change[]) => void): void;
  onReset(listener: () => void): void;
}

export class PreparedAnswers<T> {
  private readonly byService = new Map<string, Map<string, T>>();

  constructor(feed: ChangeFeed) {
    feed.onChanges((changes) => {
      for (const c of changes) this.byService.delete(c.service);
    });
    feed.onReset(() => this.byService.clear());
  }

  /** The answer kept for `question` about `service`, else `make`'s, kept until the service changes (undefined is not kept). */
  get(service: string, question: string, make: () => T | undefined): T | undefined {
    const kept = this.byService.get(service)?.get(question);
    if (kept !== undefined) return kept;
    const made = make();
    if (made === undefined) return undefined;
    let answers = this.byService.get(service);
    if (!answers) this.byService.set(service, (answers = new Map()));
    answers.set(question, made);
    return made;
  }
}
