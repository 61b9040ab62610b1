// The durable job queue's records: one job per unique key (e.g. `bake:sha256:…`),
// so enqueueing the same work twice yields one job.
//
// Jobs are run by worker processes that may die at any moment (kill -9, OOM,
// a lost machine). A worker claims a job with a lease and renews it while it
// works; a job whose lease ran out goes back to the queue (with a backoff),
// and after `maxAttempts` claims that all ended that way it is failed instead
// of being handed to the next worker to crash.

export type JobStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobRecord {
  id: number;
  kind: string;
  key: string;
  payload: unknown;
  status: JobStatus;
  attempts: number;
  error: string | null;
  progressDone: number;
  progressTotal: number;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** The worker holding the job while it runs (`host:pid:nonce`), null otherwise. */
  leaseOwner: string | null;
  /** When the running job's lease ends unless renewed (ms since the epoch). */
  leaseUntil: number | null;
  /** Someone asked to stop the job; its worker learns it when it renews the lease. */
  cancelRequested: boolean;
}

/** What a renewal tells the worker. */
export type LeaseState = 'held' | 'cancel' | 'lost';

/** A running job whose lease ran out, as expireLeases found it. */
export interface ExpiredJob {
  key: string;
  leaseOwner: string | null;
  /** true: it had been claimed maxAttempts times and is now failed. */
  failed: boolean;
}

export interface ExpireOptions {
  now: number;
  maxAttempts: number;
  backoffMs(attempts: number): number;
  isDead(owner: string): boolean;
}

/** The message of a job failed because its workers kept dying; shared by every backend. */
export function workerDiedMessage(attempts: number, maxAttempts: number): string {
  return `the job's worker stopped without finishing it ${attempts} times (it was killed or crashed); it is not tried again (KILN_JOB_MAX_ATTEMPTS=${maxAttempts}); retry it once the cause is fixed`;
}

export interface JobStore {
  /** Inserts a queued job unless one with the key exists; returns the job either way. */
  enqueue(kind: string, key: string, payload: unknown): Promise<JobRecord>;
  get(key: string): Promise<JobRecord | null>;
  list(kind?: string): Promise<JobRecord[]>;
  /**
   * Atomically moves the oldest queued job of `kind` whose backoff is over to
   * running, held by `worker` for `leaseMs`; counts the attempt.
   */
  claim(kind: string, worker: string, leaseMs: number): Promise<JobRecord | null>;
  /** Extends the lease of a job `worker` holds; says whether it still does and whether a cancel was asked. */
  renew(id: number, worker: string, leaseMs: number): Promise<LeaseState>;
  /** Ends a job `worker` holds; false when its lease was lost (another worker may have it now). */
  finish(id: number, worker: string, status: 'done' | 'failed' | 'cancelled', error?: string): Promise<boolean>;
  /** Hands a job back unrun (a worker shutting down): queued again, the attempt not counted. */
  release(id: number, worker: string): Promise<boolean>;
  progress(id: number, worker: string, done: number, total: number): Promise<void>;
  /**
   * Running jobs whose lease ended before `now`, or whose owner `isDead` says
   * is gone, are queued again (not before `now + backoff(attempts)`), or
   * failed once they were claimed `maxAttempts` times.
   */
  expireLeases(options: ExpireOptions): Promise<ExpiredJob[]>;
  /**
   * Asks a job to stop: a queued one is cancelled at once ('cancelled'), a
   * running one is flagged for its worker ('signalled'); null when there is
   * nothing to cancel.
   */
  requestCancel(key: string, reason: string): Promise<'cancelled' | 'signalled' | null>;
  /** Puts a failed or cancelled job back in the queue with fresh attempts; false when it is not in such a state. */
  requeue(key: string): Promise<boolean>;
  delete(key: string): Promise<boolean>;
}
