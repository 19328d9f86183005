// Read-your-writes: the highest store revision the client's writes were answered with
// (X-Registry-Revision). Reads send it as `minRevision`, so any replica answers with a view
// that holds those writes. Share one Session between clients to share the guarantee.

/** The highest revision a client's writes reached; reads wait for it on any replica. */
export class Session {
  #revision = 0;

  /** 0 until the first write is answered. */
  get revision(): number {
    return this.#revision;
  }

  /** Records a write's revision; a lower one (an older write answered late) changes nothing. */
  observe(revision: number): void {
    if (Number.isSafeInteger(revision) && revision > this.#revision) this.#revision = revision;
  }
}
