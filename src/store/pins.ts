// In-flight digests: a request that is about to make a blob or manifest
// visible (rename a verified file into blobs/, then write its row) pins the
// digest for the whole span, and the garbage collector never deletes a row or
// a file whose digest is pinned. Process-local by design: it closes the
// windows between awaits inside one server. See src/gc/collector.ts.
export class DigestPins {
  private readonly counts = new Map<string, number>();

  /** Pins `digest`; call the returned function (once) to release it. */
  pin(digest: string): () => void {
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
