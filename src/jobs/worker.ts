// The job loop of one worker process: claim a job with a lease, renew the
// lease while the handler works, stop the handler when a cancel is asked or
// the lease is lost, record the outcome. One job at a time: a machine runs as
// many worker processes as it has bake slots (KILN_WORKERS).
//
// Before each claim the worker returns to the queue the jobs of workers that
// died (their lease ran out, or their process on this host is gone), so a
// kill -9 costs one retry, not the job.
import type { JobRecord, JobStore } from '../store/job-store.js';
import { renewIntervalMs, retryBackoffMs, type JobSettings } from './settings.js';
import { holderIsDead } from './worker-id.js';

export interface JobContext {
  /** Aborted when the job is cancelled, its lease is lost, or the worker stops. */
  signal: AbortSignal;
  /** Reports progress; written to the store at most every 250 ms. */
  progress(done: number, total: number): void;
}

export type JobHandler = (job: JobRecord, ctx: JobContext) => Promise<void>;

export interface WorkerLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const PROGRESS_INTERVAL_MS = 250;

class Stopped extends Error {}
class LeaseLost extends Error {}

export class JobWorker {
  private stopping = false;
  private wakeUp: (() => void) | null = null;
  private current: AbortController | null = null;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly store: JobStore,
    private readonly handlers: ReadonlyMap<string, JobHandler>,
    private readonly settings: JobSettings,
    readonly id: string,
    private readonly log: WorkerLog,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Looks for work now instead of at the next poll. */
  wake(): void {
    this.wakeUp?.();
  }

  /** Stops claiming; a running job is stopped and handed back unrun, for the next worker. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.current?.abort(new Stopped('the worker is shutting down'));
    this.wake();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      let job: JobRecord | null = null;
      try {
        await this.expireLeases();
        job = await this.claim();
      } catch (err) {
        this.log.error({ err }, 'could not read the job queue');
      }
      if (job) await this.runJob(job);
      else await this.idle();
    }
  }

  private async expireLeases(): Promise<void> {
    const expired = await this.store.expireLeases({
      now: Date.now(),
      maxAttempts: this.settings.maxAttempts,
      backoffMs: retryBackoffMs,
      isDead: (owner) => holderIsDead(owner),
    });
    for (const e of expired) this.log.warn({ job: e.key, worker: e.leaseOwner, failed: e.failed }, 'a job lost its worker');
  }

  private async claim(): Promise<JobRecord | null> {
    for (const kind of this.handlers.keys()) {
      const job = await this.store.claim(kind, this.id, this.settings.leaseMs);
      if (job) return job;
    }
    return null;
  }

  private idle(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.settings.pollMs);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wakeUp = null;
        resolve();
      }
      this.wakeUp = done;
    });
  }

  private async runJob(job: JobRecord): Promise<void> {
    const controller = new AbortController();
    this.current = controller;
    // A stop that came while the job was being claimed.
    if (this.stopping) controller.abort(new Stopped('the worker is shutting down'));
    const renew = setInterval(() => void this.renew(job, controller), renewIntervalMs(this.settings));
    let lastWrite = 0;
    const ctx: JobContext = {
      signal: controller.signal,
      progress: (done, total) => {
        const now = Date.now();
        if (now - lastWrite < PROGRESS_INTERVAL_MS && done < total) return;
        lastWrite = now;
        this.store.progress(job.id, this.id, done, total).catch((err: unknown) => this.log.error({ err, job: job.key }, 'could not record progress'));
      },
    };
    this.log.info({ job: job.key, attempt: job.attempts }, 'job started');
    try {
      await this.handlers.get(job.kind)!(job, ctx);
      await this.settle(job, this.store.finish(job.id, this.id, 'done'));
      this.log.info({ job: job.key }, 'job done');
    } catch (err) {
      const reason = controller.signal.reason as unknown;
      if (reason instanceof Stopped) await this.settle(job, this.store.release(job.id, this.id));
      else if (reason instanceof LeaseLost) this.log.warn({ job: job.key }, 'the job was taken from this worker (its lease ran out); its result is dropped');
      else {
        const cancelled = controller.signal.aborted;
        const message = cancelled ? 'cancelled' : errorMessage(err);
        await this.settle(job, this.store.finish(job.id, this.id, cancelled ? 'cancelled' : 'failed', message));
        this.log.info({ job: job.key, error: message }, cancelled ? 'job cancelled' : 'job failed');
      }
    } finally {
      clearInterval(renew);
      this.current = null;
    }
  }

  private async renew(job: JobRecord, controller: AbortController): Promise<void> {
    try {
      const state = await this.store.renew(job.id, this.id, this.settings.leaseMs);
      if (state === 'cancel') controller.abort(new Error('cancelled'));
      if (state === 'lost') controller.abort(new LeaseLost());
    } catch (err) {
      // The next renewal may get through; the lease is three renewals long.
      this.log.error({ err, job: job.key }, 'could not renew the job lease');
    }
  }

  private async settle(job: JobRecord, write: Promise<boolean>): Promise<void> {
    const recorded = await write.catch((err: unknown) => {
      // The lease runs out and the next worker runs the job again.
      this.log.error({ err, job: job.key }, 'could not record the outcome of a job');
      return true;
    });
    if (!recorded) this.log.warn({ job: job.key }, 'the job was taken from this worker (its lease ran out); its result is not recorded');
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
