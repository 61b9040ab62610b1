// The API's side of the durable job queue: it queues work, asks for cancels
// and retries, and reads state. It never runs a job: worker processes do
// (src/jobs/worker.ts), woken through `onEnqueue` when they run beside it.
import type { JobRecord, JobStore } from '../store/job-store.js';

export class JobQueue {
  private readonly listeners: Array<(kind: string) => void> = [];

  constructor(readonly store: JobStore) {}

  /** Called whenever a job may be ready to run (the local worker pool wakes its workers). */
  onEnqueue(listener: (kind: string) => void): void {
    this.listeners.push(listener);
  }

  async enqueue(kind: string, key: string, payload: unknown): Promise<JobRecord> {
    const job = await this.store.enqueue(kind, key, payload);
    if (job.status === 'queued') this.notify(kind);
    return job;
  }

  async retry(key: string): Promise<boolean> {
    const job = await this.store.get(key);
    if (!job || !(await this.store.requeue(key))) return false;
    this.notify(job.kind);
    return true;
  }

  /** Cancels a queued job, or asks the worker of a running one to stop it. */
  cancel(key: string, reason = 'cancelled'): Promise<'cancelled' | 'signalled' | null> {
    return this.store.requestCancel(key, reason);
  }

  /** Resolves once the job is no longer queued or running, or after `timeoutMs`; returns it. */
  async settled(key: string, timeoutMs: number): Promise<JobRecord | null> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.store.get(key);
      if (!job || (job.status !== 'queued' && job.status !== 'running') || Date.now() >= until) return job;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private notify(kind: string): void {
    for (const listener of this.listeners) listener(kind);
  }
}
