// Last-pulled times of cache tags, for cache retention. A manifest GET or
// HEAD by tag is the hottest read of the registry, so it only sets a map
// entry; the batch is written in one transaction every few seconds (and
// before every collection, and at shutdown). Tags outside cache repos are
// not tracked: retention never applies to them.
import { isCacheLocation } from '../oci/classify.js';
import type { GcStore } from '../store/gc-store.js';

export const PULL_FLUSH_MS = 5000;

export class PullTracker {
  private pending = new Map<string, [string, string, number]>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: GcStore,
    private readonly onError: (err: unknown) => void = () => undefined,
    private readonly clock: () => number = Date.now,
  ) {}

  record(repo: string, tag: string): void {
    if (!repo.includes('cache') || !isCacheLocation(repo)) return;
    this.pending.set(`${repo}\u0000${tag}`, [repo, tag, this.clock()]);
  }

  start(everyMs = PULL_FLUSH_MS): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.flush(), everyMs);
    this.timer.unref();
  }

  /** Writes the batch; a failure goes to `onError` (the times are only a retention hint). */
  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    this.pending = new Map();
    try {
      await this.store.recordPulls(batch);
    } catch (err) {
      this.onError(err);
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }
}
