// In-flight digests: a request that is about to make a blob or manifest
// visible (move verified bytes to their digest, then write its row) pins the
// digest for the whole span, and the garbage collector never deletes a row or
// the bytes of a pinned digest. The other way round, the collector holds a
// digest while it deletes its bytes (an object-store delete takes a while),
// and a request pinning that digest waits for the delete to finish before it
// writes the bytes again. See src/gc/collector.ts.

export type ReleasePin = () => void;

/** Pins as the registry takes them. */
export interface PinStore {
  /**
   * Pins `digest` for every collector that could run meanwhile; resolves once
   * the pin is in force and no delete of the digest is in flight. Call the
   * returned function (once) to release it.
   */
  pin(digest: string): ReleasePin | Promise<ReleasePin>;
  /** Pinned by this process. */
  has(digest: string): boolean;
  /**
   * For the collector, in the same step as its check that `digest` is
   * unpinned and unreferenced: pins of `digest` wait until the returned
   * function is called (after the bytes are deleted).
   */
  holdForDelete(digest: string): ReleasePin;
}

/**
 * Process-local pins: enough when the collector runs in the same process (a
 * SQLite data directory has one process). The pin counts from the moment
 * `pin` is called, before any await of the caller.
 */
export class DigestPins implements PinStore {
  private readonly counts = new Map<string, number>();
  private readonly deletes = new Map<string, Promise<void>>();

  pin(digest: string): ReleasePin | Promise<ReleasePin> {
    this.counts.set(digest, (this.counts.get(digest) ?? 0) + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const n = (this.counts.get(digest) ?? 1) - 1;
      if (n <= 0) this.counts.delete(digest);
      else this.counts.set(digest, n);
    };
    const deleting = this.deletes.get(digest);
    return deleting ? deleting.then(() => release) : release;
  }

  has(digest: string): boolean {
    return this.counts.has(digest);
  }

  holdForDelete(digest: string): ReleasePin {
    let done!: () => void;
    const deleting = new Promise<void>((resolve) => (done = resolve));
    this.deletes.set(digest, deleting);
    return () => {
      if (this.deletes.get(digest) === deleting) this.deletes.delete(digest);
      done();
    };
  }

  get size(): number {
    return this.counts.size;
  }
}
