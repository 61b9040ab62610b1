// A small LRU of manifest bytes by digest. Manifests are immutable once
// stored, so entries never go stale; the cache only saves a file read on the
// hottest request a registry serves.
export class ManifestCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(digest: string): Buffer | undefined {
    const hit = this.entries.get(digest);
    if (hit) {
      this.entries.delete(digest);
      this.entries.set(digest, hit);
    }
    return hit;
  }

  set(digest: string, data: Buffer): void {
    if (data.length > this.maxBytes / 4 || this.entries.has(digest)) return;
    this.entries.set(digest, data);
    this.bytes += data.length;
    for (const [key, value] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(key);
      this.bytes -= value.length;
    }
  }

  delete(digest: string): void {
    const hit = this.entries.get(digest);
    if (hit) {
      this.entries.delete(digest);
      this.bytes -= hit.length;
    }
  }
}
