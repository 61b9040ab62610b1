// JobStore on SQLite.
import type { JobRecord, JobStatus, JobStore } from '../job-store.js';
import type { SqliteDatabase } from './db.js';

interface JobRow {
  id: number;
  kind: string;
  key: string;
  payload: string;
  status: JobStatus;
  attempts: number;
  error: string | null;
  progress_done: number;
  progress_total: number;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  finished_at: number | null;
}

export class SqliteJobStore implements JobStore {
  private readonly s;

  constructor(private readonly db: SqliteDatabase) {
    this.s = {
      insert: db.prepare(
        `INSERT INTO jobs (kind, key, payload, status, created_at, updated_at) VALUES (?, ?, ?, 'queued', ?, ?)
         ON CONFLICT (key) DO NOTHING`,
      ),
      byKey: db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE key = ?'),
      byId: db.prepare<[number], JobRow>('SELECT * FROM jobs WHERE id = ?'),
      all: db.prepare<[], JobRow>('SELECT * FROM jobs ORDER BY id'),
      allOfKind: db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE kind = ? ORDER BY id'),
      nextQueued: db.prepare<[string], { id: number }>(`SELECT id FROM jobs WHERE kind = ? AND status = 'queued' ORDER BY id LIMIT 1`),
      markRunning: db.prepare(
        `UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, updated_at = ?, error = NULL,
         progress_done = 0 WHERE id = ? AND status = 'queued'`,
      ),
      finish: db.prepare('UPDATE jobs SET status = ?, error = ?, finished_at = ?, updated_at = ? WHERE id = ?'),
      progress: db.prepare('UPDATE jobs SET progress_done = ?, progress_total = ?, updated_at = ? WHERE id = ?'),
      requeue: db.prepare(
        `UPDATE jobs SET status = 'queued', error = NULL, finished_at = NULL, updated_at = ? WHERE key = ? AND status IN ('failed', 'cancelled')`,
      ),
      requeueRunning: db.prepare(`UPDATE jobs SET status = 'queued', updated_at = ? WHERE status = 'running'`),
      delete: db.prepare('DELETE FROM jobs WHERE key = ?'),
    };
  }

  enqueue(kind: string, key: string, payload: unknown): JobRecord {
    const now = Date.now();
    this.s.insert.run(kind, key, JSON.stringify(payload), now, now);
    return toRecord(this.s.byKey.get(key)!);
  }

  get(key: string): JobRecord | null {
    const row = this.s.byKey.get(key);
    return row ? toRecord(row) : null;
  }

  list(kind?: string): JobRecord[] {
    return (kind ? this.s.allOfKind.all(kind) : this.s.all.all()).map(toRecord);
  }

  claim(kind: string): JobRecord | null {
    return this.db.transaction(() => {
      const next = this.s.nextQueued.get(kind);
      if (!next) return null;
      const now = Date.now();
      this.s.markRunning.run(now, now, next.id);
      return toRecord(this.s.byId.get(next.id)!);
    })();
  }

  finish(id: number, status: 'done' | 'failed' | 'cancelled', error?: string): void {
    const now = Date.now();
    this.s.finish.run(status, error ?? null, now, now, id);
  }

  progress(id: number, done: number, total: number): void {
    this.s.progress.run(done, total, Date.now(), id);
  }

  requeue(key: string): boolean {
    return this.s.requeue.run(Date.now(), key).changes > 0;
  }

  requeueInterrupted(): number {
    return this.s.requeueRunning.run(Date.now()).changes;
  }

  delete(key: string): boolean {
    return this.s.delete.run(key).changes > 0;
  }
}

function toRecord(row: JobRow): JobRecord {
  return {
    id: row.id,
    kind: row.kind,
    key: row.key,
    payload: JSON.parse(row.payload) as unknown,
    status: row.status,
    attempts: row.attempts,
    error: row.error,
    progressDone: row.progress_done,
    progressTotal: row.progress_total,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}
