// JobStore on SQLite. Several processes (the server and its workers) share
// the database file; every state change is one statement or one transaction.
import { workerDiedMessage, type ExpireOptions, type ExpiredJob, type JobRecord, type JobStore, type LeaseState } from '../job-store.js';
import { toJobRecord as toRecord, type JobRow } from '../sql-rows.js';
import type { SqliteDatabase } from './db.js';

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
      nextQueued: db.prepare<[string, number], { id: number }>(
        `SELECT id FROM jobs WHERE kind = ? AND status = 'queued' AND not_before <= ? ORDER BY id LIMIT 1`,
      ),
      markRunning: db.prepare(
        `UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = @now, updated_at = @now, error = NULL,
         progress_done = 0, lease_owner = @worker, lease_until = @until, cancel_requested = 0 WHERE id = @id AND status = 'queued'`,
      ),
      renew: db.prepare(`UPDATE jobs SET lease_until = @until WHERE id = @id AND status = 'running' AND lease_owner = @worker`),
      finish: db.prepare(
        `UPDATE jobs SET status = @status, error = @error, finished_at = @now, updated_at = @now, lease_owner = NULL, lease_until = NULL
         WHERE id = @id AND status = 'running' AND lease_owner = @worker`,
      ),
      release: db.prepare(
        `UPDATE jobs SET status = 'queued', attempts = max(attempts - 1, 0), updated_at = @now, lease_owner = NULL, lease_until = NULL
         WHERE id = @id AND status = 'running' AND lease_owner = @worker`,
      ),
      progress: db.prepare(
        `UPDATE jobs SET progress_done = @done, progress_total = @total, updated_at = @now WHERE id = @id AND lease_owner = @worker`,
      ),
      running: db.prepare<[], JobRow>(`SELECT * FROM jobs WHERE status = 'running'`),
      expire: db.prepare(
        `UPDATE jobs SET status = @status, error = @error, not_before = @notBefore, finished_at = @finishedAt, updated_at = @now,
         lease_owner = NULL, lease_until = NULL WHERE id = @id AND status = 'running' AND lease_owner IS @owner`,
      ),
      cancelQueued: db.prepare(
        `UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ?, updated_at = ? WHERE key = ? AND status = 'queued'`,
      ),
      flagCancel: db.prepare(`UPDATE jobs SET cancel_requested = 1, error = ?, updated_at = ? WHERE key = ? AND status = 'running'`),
      requeue: db.prepare(
        `UPDATE jobs SET status = 'queued', error = NULL, attempts = 0, not_before = 0, finished_at = NULL, updated_at = ?
         WHERE key = ? AND status IN ('failed', 'cancelled')`,
      ),
      delete: db.prepare('DELETE FROM jobs WHERE key = ?'),
    };
  }

  async enqueue(kind: string, key: string, payload: unknown): Promise<JobRecord> {
    const now = Date.now();
    this.s.insert.run(kind, key, JSON.stringify(payload), now, now);
    return toRecord(this.s.byKey.get(key)!);
  }

  async get(key: string): Promise<JobRecord | null> {
    const row = this.s.byKey.get(key);
    return row ? toRecord(row) : null;
  }

  async list(kind?: string): Promise<JobRecord[]> {
    return (kind ? this.s.allOfKind.all(kind) : this.s.all.all()).map(toRecord);
  }

  async claim(kind: string, worker: string, leaseMs: number): Promise<JobRecord | null> {
    return this.db.transaction(() => {
      const now = Date.now();
      const next = this.s.nextQueued.get(kind, now);
      if (!next) return null;
      this.s.markRunning.run({ now, worker, until: now + leaseMs, id: next.id });
      return toRecord(this.s.byId.get(next.id)!);
    }).immediate();
  }

  async renew(id: number, worker: string, leaseMs: number): Promise<LeaseState> {
    if (this.s.renew.run({ until: Date.now() + leaseMs, id, worker }).changes === 0) return 'lost';
    return this.s.byId.get(id)?.cancel_requested ? 'cancel' : 'held';
  }

  async finish(id: number, worker: string, status: 'done' | 'failed' | 'cancelled', error?: string): Promise<boolean> {
    return this.s.finish.run({ status, error: error ?? null, now: Date.now(), id, worker }).changes > 0;
  }

  async release(id: number, worker: string): Promise<boolean> {
    return this.s.release.run({ now: Date.now(), id, worker }).changes > 0;
  }

  async progress(id: number, worker: string, done: number, total: number): Promise<void> {
    this.s.progress.run({ done, total, now: Date.now(), id, worker });
  }

  async expireLeases(options: ExpireOptions): Promise<ExpiredJob[]> {
    const { now } = options;
    return this.db.transaction(() => {
      const expired: ExpiredJob[] = [];
      for (const row of this.s.running.all()) {
        const lapsed = row.lease_until === null || row.lease_until < now || (row.lease_owner !== null && options.isDead(row.lease_owner));
        if (!lapsed) continue;
        const failed = row.attempts >= options.maxAttempts;
        this.s.expire.run({
          status: failed ? 'failed' : 'queued',
          error: failed ? workerDiedMessage(row.attempts, options.maxAttempts) : null,
          notBefore: failed ? 0 : now + options.backoffMs(row.attempts),
          finishedAt: failed ? now : null,
          now,
          id: row.id,
          owner: row.lease_owner,
        });
        expired.push({ key: row.key, leaseOwner: row.lease_owner, failed });
      }
      return expired;
    }).immediate();
  }

  async requestCancel(key: string, reason: string): Promise<'cancelled' | 'signalled' | null> {
    const now = Date.now();
    if (this.s.cancelQueued.run(reason, now, now, key).changes > 0) return 'cancelled';
    if (this.s.flagCancel.run(reason, now, key).changes > 0) return 'signalled';
    return null;
  }

  async requeue(key: string): Promise<boolean> {
    return this.s.requeue.run(Date.now(), key).changes > 0;
  }

  async delete(key: string): Promise<boolean> {
    return this.s.delete.run(key).changes > 0;
  }
}
