// In-flight digests: a request that is about to make a blob or manifest
// visible (rename a verified file into blobs/, then write its row) pins the
// digest for the whole span, and the garbage collector never deletes a row or
// a file whose digest is pinned. See src/gc/collector.ts.

export type ReleasePin = () => void;

/** Pins as the registry takes them. */
export interface PinStore {
  /**
   * Pins `digest` for every collector that could run meanwhile; resolves once
   * the pin is in force. Call the returned function (once) to release it.
   */
  pin(digest: string): ReleasePin | Promise<ReleasePin>;
  /** Pinned by this process. */
  has(digest: string): boolean;
}

/**
 * Process-local pins: enough when the collector runs in the same process (a
 * SQLite data directory has one process). The pin is in force when `pin`
 * returns, before any await of the caller.
 */
export class DigestPins implements PinStore {
  private readonly counts = new Map<string, number>();

  pin(digest: string): ReleasePin {
    this.counts.set(digest, (this.counts.get(digest) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.counts.get(digest) ?? 1) - 1;
      if (n <= 0) this.counts.delete(digest);
      else this.counts.set(digest, n);
    };
  }

  has(digest: string): boolean {
    return this.counts.has(digest);
  }

  get size(): number {
    return this.counts.size;
  }
}
