// "Has the store reached revision R?" for minRevision reads from the future
// (API.md "Hostile clients"): answered by one cheap round trip that reads no
// data, shared by every request that asks while it is in flight, and a "not
// yet" is believed for a window, so that a burst of reads ahead of the store
// costs it one request per window, not one range of the service or the prefix each.

export class StoreRevision {
  /** The highest revision the store answered with (revisions only rise; a restored store is caught by the read's own check). */
  private known = 0;
  private checkedAt = -Infinity;
  private inFlight: Promise<void> | undefined;

  constructor(
    /** One round trip that resolves the store's current revision. */
    private readonly read: () => Promise<number>,
    private readonly windowMs: number,
  ) {}

  /** The store's revision as last seen. */
  get revision(): number {
    return this.known;
  }

  async reached(revision: number): Promise<boolean> {
    if (this.known >= revision) return true;
    if (!this.inFlight && Date.now() - this.checkedAt < this.windowMs) return false;
    this.inFlight ??= this.read()
      .then((r) => {
        this.known = Math.max(this.known, r);
        this.checkedAt = Date.now();
      })
      .finally(() => (this.inFlight = undefined));
    await this.inFlight;
    return this.known >= revision;
  }
}
