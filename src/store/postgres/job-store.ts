// JobStore on PostgreSQL, shared by every API process and worker of a
// deployment.
//
// Claims use `SELECT … FOR UPDATE SKIP LOCKED` on the jobs table itself
// rather than a queue library such as pg-boss: a job here is one row with a
// unique key per digest (so at most one bake per digest exists and runs), its
// state is read by the images API in the same table, and leases, attempts and
// cancels are a few columns. pg-boss would keep a second copy of that state
// in its own schema, with its own retention and its own notion of a job's
// identity, for no feature Kiln needs. SKIP LOCKED lets many workers poll at
// once without blocking on each other's claims.
import { workerDiedMessage, type ExpireOptions, type ExpiredJob, type JobRecord, type JobStore, type LeaseState } from '../job-store.js';
import { toJobRecord, type JobRow } from '../sql-rows.js';
import { inTransaction, type PgPool } from './db.js';

export class PostgresJobStore implements JobStore {
  constructor(private readonly pool: PgPool) {}

  async enqueue(kind: string, key: string, payload: unknown): Promise<JobRecord> {
    const now = Date.now();
    const { rows } = await this.pool.query<JobRow>(
      `WITH ins AS (
         INSERT INTO jobs (kind, key, payload, status, created_at, updated_at) VALUES ($1, $2, $3, 'queued', $4, $4)
         ON CONFLICT (key) DO NOTHING RETURNING *)
       SELECT * FROM ins UNION ALL SELECT * FROM jobs WHERE key = $2 AND NOT EXISTS (SELECT 1 FROM ins)`,
      [kind, key, JSON.stringify(payload), now],
    );
    return toJobRecord(rows[0]!);
  }

  async get(key: string): Promise<JobRecord | null> {
    const { rows } = await this.pool.query<JobRow>('SELECT * FROM jobs WHERE key = $1', [key]);
    return rows[0] ? toJobRecord(rows[0]) : null;
  }

  async list(kind?: string): Promise<JobRecord[]> {
    const { rows } = kind
      ? await this.pool.query<JobRow>('SELECT * FROM jobs WHERE kind = $1 ORDER BY id', [kind])
      : await this.pool.query<JobRow>('SELECT * FROM jobs ORDER BY id');
    return rows.map(toJobRecord);
  }

  async claim(kind: string, worker: string, leaseMs: number): Promise<JobRecord | null> {
    const now = Date.now();
    const { rows } = await this.pool.query<JobRow>(
      `UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = $3, updated_at = $3, error = NULL,
         progress_done = 0, lease_owner = $2, lease_until = $4, cancel_requested = 0
       WHERE id = (SELECT id FROM jobs WHERE kind = $1 AND status = 'queued' AND not_before <= $3 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
       RETURNING *`,
      [kind, worker, now, now + leaseMs],
    );
    return rows[0] ? toJobRecord(rows[0]) : null;
  }

  async renew(id: number, worker: string, leaseMs: number): Promise<LeaseState> {
    const { rows } = await this.pool.query<{ cancel_requested: number }>(
      `UPDATE jobs SET lease_until = $3 WHERE id = $1 AND status = 'running' AND lease_owner = $2 RETURNING cancel_requested`,
      [id, worker, Date.now() + leaseMs],
    );
    if (!rows[0]) return 'lost';
    return rows[0].cancel_requested ? 'cancel' : 'held';
  }

  async finish(id: number, worker: string, status: 'done' | 'failed' | 'cancelled', error?: string): Promise<boolean> {
    const now = Date.now();
    const result = await this.pool.query(
      `UPDATE jobs SET status = $3, error = $4, finished_at = $5, updated_at = $5, lease_owner = NULL, lease_until = NULL
       WHERE id = $1 AND status = 'running' AND lease_owner = $2`,
      [id, worker, status, error ?? null, now],
    );
    return result.rowCount! > 0;
  }

  async release(id: number, worker: string): Promise<boolean> {
    const result = await this.pool.query(
      `UPDATE jobs SET status = 'queued', attempts = greatest(attempts - 1, 0), updated_at = $3, lease_owner = NULL, lease_until = NULL
       WHERE id = $1 AND status = 'running' AND lease_owner = $2`,
      [id, worker, Date.now()],
    );
    return result.rowCount! > 0;
  }

  async progress(id: number, worker: string, done: number, total: number): Promise<void> {
    await this.pool.query(`UPDATE jobs SET progress_done = $3, progress_total = $4, updated_at = $5 WHERE id = $1 AND lease_owner = $2`, [
      id,
      worker,
      done,
      total,
      Date.now(),
    ]);
  }

  async expireLeases(options: ExpireOptions): Promise<ExpiredJob[]> {
    const { now } = options;
    return inTransaction(this.pool, async (client) => {
      // Rows another process is expiring (or claiming) right now are skipped: it deals with them.
      const { rows } = await client.query<JobRow>(`SELECT * FROM jobs WHERE status = 'running' FOR UPDATE SKIP LOCKED`);
      const expired: ExpiredJob[] = [];
      for (const row of rows) {
        const lapsed = row.lease_until === null || row.lease_until < now || (row.lease_owner !== null && options.isDead(row.lease_owner));
        if (!lapsed) continue;
        const failed = row.attempts >= options.maxAttempts;
        await client.query(
          `UPDATE jobs SET status = $2, error = $3, not_before = $4, finished_at = $5, updated_at = $6, lease_owner = NULL, lease_until = NULL WHERE id = $1`,
          [
            row.id,
            failed ? 'failed' : 'queued',
            failed ? workerDiedMessage(row.attempts, options.maxAttempts) : null,
            failed ? 0 : now + options.backoffMs(row.attempts),
            failed ? now : null,
            now,
          ],
        );
        expired.push({ key: row.key, leaseOwner: row.lease_owner, failed });
      }
      return expired;
    });
  }

  async requestCancel(key: string, reason: string): Promise<'cancelled' | 'signalled' | null> {
    const now = Date.now();
    const queued = await this.pool.query(
      `UPDATE jobs SET status = 'cancelled', error = $2, finished_at = $3, updated_at = $3 WHERE key = $1 AND status = 'queued'`,
      [key, reason, now],
    );
    if (queued.rowCount! > 0) return 'cancelled';
    const running = await this.pool.query(`UPDATE jobs SET cancel_requested = 1, error = $2, updated_at = $3 WHERE key = $1 AND status = 'running'`, [
      key,
      reason,
      now,
    ]);
    return running.rowCount! > 0 ? 'signalled' : null;
  }

  async requeue(key: string): Promise<boolean> {
    const result = await this.pool.query(
      `UPDATE jobs SET status = 'queued', error = NULL, attempts = 0, not_before = 0, finished_at = NULL, updated_at = $2
       WHERE key = $1 AND status IN ('failed', 'cancelled')`,
      [key, Date.now()],
    );
    return result.rowCount! > 0;
  }

  async delete(key: string): Promise<boolean> {
    return (await this.pool.query('DELETE FROM jobs WHERE key = $1', [key])).rowCount! > 0;
  }
}
