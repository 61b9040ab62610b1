// Bakes give way to the registry on their host. The server tells its local
// workers when blob transfers start and stop (worker-pool.ts); while they run,
// a bake's processes are stopped (SIGSTOP) and continue when the registry is
// quiet. Measured on two cores: even at SCHED_IDLE, a bake beside a pull made
// the pull up to 1.5× slower (src/registry/transfer-activity.ts says why).
//
// A bake gives way for at most its budget (KILN_BAKE_YIELD) in all, so a
// registry that is never quiet delays each bake by that much and no more;
// after that it runs beside the transfers at idle priority, as before. A
// `kiln worker` started on its own hears nothing and never pauses.

/** The registry's state as this worker last heard it. */
export class RegistryState {
  private busy = false;
  private readonly listeners = new Set<(busy: boolean) => void>();

  get isBusy(): boolean {
    return this.busy;
  }

  set(busy: boolean): void {
    if (busy === this.busy) return;
    this.busy = busy;
    for (const listener of [...this.listeners]) listener(busy);
  }

  /** Calls `listener` on every change; returns the unsubscribe. */
  watch(listener: (busy: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** What can be paused: a bake's processes. */
export interface Pausable {
  pause(): void;
  resume(): void;
}

export interface Yielding {
  /** Milliseconds paused so far, the current pause included. */
  pausedMs(): number;
  /** Resumes the target if paused and stops watching. */
  stop(): void;
}

/** Pauses `target` while `registry` is busy, for at most `budgetMs` in all (0: never). */
export function yieldWhileBusy(target: Pausable, registry: RegistryState, budgetMs: number): Yielding {
  let pausedBefore = 0;
  let pausedAt: number | null = null;
  let budgetTimer: NodeJS.Timeout | null = null;
  let stopped = false;

  const pausedMs = () => pausedBefore + (pausedAt === null ? 0 : Date.now() - pausedAt);
  const resume = () => {
    if (pausedAt === null) return;
    pausedBefore += Date.now() - pausedAt;
    pausedAt = null;
    if (budgetTimer) clearTimeout(budgetTimer);
    budgetTimer = null;
    target.resume();
  };
  const pause = () => {
    const left = budgetMs - pausedBefore;
    if (stopped || pausedAt !== null || left <= 0) return;
    pausedAt = Date.now();
    target.pause();
    budgetTimer = setTimeout(resume, left);
  };
  const unwatch = registry.watch((busy) => (busy ? pause() : resume()));
  if (registry.isBusy) pause();
  return {
    pausedMs,
    stop() {
      stopped = true;
      unwatch();
      resume();
    },
  };
}
