// The durable job queue's records: one job per unique key (e.g. `bake:sha256:…`),
// so enqueueing the same work twice yields one job.

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
}

export interface JobStore {
  /** Inserts a queued job unless one with the key exists; returns the job either way. */
  enqueue(kind: string, key: string, payload: unknown): JobRecord;
  get(key: string): JobRecord | null;
  list(kind?: string): JobRecord[];
  /** Atomically moves the oldest queued job of `kind` to running. */
  claim(kind: string): JobRecord | null;
  finish(id: number, status: 'done' | 'failed' | 'cancelled', error?: string): void;
  progress(id: number, done: number, total: number): void;
  /** Puts a failed or cancelled job back in the queue; false when it is not in such a state. */
  requeue(key: string): boolean;
  /** Jobs left running by a crash go back to the queue. Returns how many. */
  requeueInterrupted(): number;
  delete(key: string): boolean;
}
