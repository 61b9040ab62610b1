// Durable job queue: jobs live in the metadata database, a worker pool per
// kind runs them, and jobs that were running when the process died are
// queued again at start. Failures are recorded with their reason and retried
// only on request.
import { EventEmitter } from 'node:events';
import type { JobRecord, JobStore } from '../store/job-store.js';

export interface JobContext {
  signal: AbortSignal;
  /** Reports progress; written to the store at most every 250 ms. */
  progress(done: number, total: number): void;
}

export type JobHandler = (job: JobRecord, ctx: JobContext) => Promise<void>;

interface Worker {
  handler: JobHandler;
  concurrency: number;
  running: Map<number, AbortController>;
}

const PROGRESS_INTERVAL_MS = 250;

export class JobQueue extends EventEmitter {
  private readonly workers = new Map<string, Worker>();
  private started = false;
  private stopping = false;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(readonly store: JobStore) {
    super();
  }

  register(kind: string, handler: JobHandler, concurrency: number): void {
    this.workers.set(kind, { handler, concurrency: Math.max(1, concurrency), running: new Map() });
  }

  /** Requeues work interrupted by a crash and starts the workers. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.store.requeueInterrupted();
    for (const kind of this.workers.keys()) this.pump(kind);
  }

  enqueue(kind: string, key: string, payload: unknown): JobRecord {
    const job = this.store.enqueue(kind, key, payload);
    this.pump(kind);
    return job;
  }

  retry(key: string): boolean {
    const job = this.store.get(key);
    if (!job || !this.store.requeue(key)) return false;
    this.pump(job.kind);
    return true;
  }

  /** Cancels a queued or running job. */
  cancel(key: string): boolean {
    const job = this.store.get(key);
    if (!job) return false;
    const controller = this.workers.get(job.kind)?.running.get(job.id);
    if (controller) {
      controller.abort(new Error('cancelled'));
      return true;
    }
    if (job.status !== 'queued') return false;
    this.store.finish(job.id, 'cancelled', 'cancelled before it started');
    this.emit('change', this.store.get(key));
    return true;
  }

  /**
   * Stops taking work and aborts running jobs; they stay `running` in the
   * store and are picked up again by the next start.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const worker of this.workers.values()) for (const c of worker.running.values()) c.abort(new Error('shutting down'));
    await Promise.allSettled([...this.inFlight]);
  }

  /** Resolves once no job of `kind` is queued or running (for tests and CLI waits). */
  async idle(kind: string): Promise<void> {
    while (this.store.list(kind).some((j) => j.status === 'queued' || j.status === 'running')) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private pump(kind: string): void {
    const worker = this.workers.get(kind);
    if (!worker || !this.started || this.stopping) return;
    while (worker.running.size < worker.concurrency) {
      const job = this.store.claim(kind);
      if (!job) return;
      const controller = new AbortController();
      worker.running.set(job.id, controller);
      this.emit('change', job);
      const run = this.run(worker, job, controller).finally(() => {
        worker.running.delete(job.id);
        this.inFlight.delete(run);
        this.pump(kind);
      });
      this.inFlight.add(run);
    }
  }

  private async run(worker: Worker, job: JobRecord, controller: AbortController): Promise<void> {
    let lastWrite = 0;
    const ctx: JobContext = {
      signal: controller.signal,
      progress: (done, total) => {
        const now = Date.now();
        if (now - lastWrite < PROGRESS_INTERVAL_MS && done < total) return;
        lastWrite = now;
        this.store.progress(job.id, done, total);
      },
    };
    try {
      await worker.handler(job, ctx);
      this.store.finish(job.id, 'done');
    } catch (err) {
      // A shutdown leaves the job running so the next start resumes it.
      if (this.stopping) return;
      const cancelled = controller.signal.aborted;
      this.store.finish(job.id, cancelled ? 'cancelled' : 'failed', cancelled ? 'cancelled' : errorMessage(err));
    }
    this.emit('change', this.store.get(job.key));
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
