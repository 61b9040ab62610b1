// BuildStore on PostgreSQL: the same row shape as SQLite (store/build-rows.ts),
// paged in the database by owner (tenant, seq) and status. A conditional
// update, claim or take-over locks the row (SELECT … FOR UPDATE) for its
// read-merge-write, so of several processes claiming one queued build exactly
// one wins, and a renewal (one UPDATE) and a take-over never both succeed.
//
// The auth policy asks who owns a build synchronously. Owners never change
// after creation, so the answers are kept by id: `loadOwners` brings them in
// before the policy is asked (the token authorizer awaits it), `ownerOfNow`
// answers from what was loaded, and a build not loaded yet answers null,
// which the policy reads as "owned by no tenant": it refuses, never grants.
import type { BuildLease, BuildListQuery, BuildPatch, BuildRecord, BuildStatus, BuildStore, NewBuild, SeenLease } from '../build-store.js';
import { LEASED_BUILD_STATUSES, TERMINAL_BUILD_STATUSES } from '../build-store.js';
import { buildFromRow, initialBuildData, patchedBuild, type BuildRow } from '../build-rows.js';
import { inTransaction, type PgPool } from './db.js';

/** Owners kept in memory at most; past this the oldest answers are dropped (and loaded again when asked). */
const OWNER_CACHE_ENTRIES = 50_000;

export class PostgresBuildStore implements BuildStore {
  private readonly owners = new Map<string, string | null>();

  constructor(private readonly pool: PgPool) {}

  async create(build: NewBuild): Promise<BuildRecord> {
    const { rows } = await this.pool.query<BuildRow>(
      'INSERT INTO builds (id, status, tenant, created_at, runner, lease_until, data) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *',
      [build.id, 'queued', build.tenant, Date.now(), build.lease?.runner ?? null, build.lease?.leaseUntil ?? null, JSON.stringify(initialBuildData(build))],
    );
    const created = buildFromRow(rows[0]!);
    this.remember(created.id, created.tenant);
    return created;
  }

  async get(id: string): Promise<BuildRecord | null> {
    const { rows } = await this.pool.query<BuildRow>('SELECT * FROM builds WHERE id = $1', [id]);
    return rows[0] ? buildFromRow(rows[0]) : null;
  }

  async list(query: BuildListQuery): Promise<BuildRecord[]> {
    const where: string[] = [];
    const params: Array<string | number> = [];
    const param = (value: string | number) => `$${params.push(value)}`;
    if (query.tenant !== undefined) where.push(`tenant = ${param(query.tenant)}`);
    if (query.status !== undefined) where.push(`status = ${param(query.status)}`);
    // An unknown id compares with NULL, which matches nothing: an empty page.
    if (query.after !== undefined) where.push(`seq < (SELECT seq FROM builds WHERE id = ${param(query.after)})`);
    const limit = param(Math.max(0, Math.floor(query.limit)));
    const sql = `SELECT * FROM builds ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ${limit}`;
    return (await this.pool.query<BuildRow>(sql, params)).rows.map(buildFromRow);
  }

  async withStatus(statuses: readonly BuildStatus[]): Promise<BuildRecord[]> {
    if (statuses.length === 0) return [];
    const { rows } = await this.pool.query<BuildRow>('SELECT * FROM builds WHERE status = ANY($1) ORDER BY seq', [[...statuses]]);
    return rows.map(buildFromRow);
  }

  async update(id: string, patch: BuildPatch, from?: readonly BuildStatus[]): Promise<BuildRecord | null> {
    return this.patchWhen(id, patch, (current) => from === undefined || from.includes(current.status));
  }

  async claim(id: string, lease: BuildLease, patch: BuildPatch): Promise<BuildRecord | null> {
    return this.patchWhen(id, patch, (current) => current.status === 'queued' && (current.runner === null || current.runner === lease.runner), lease);
  }

  async renew(runner: string, ids: readonly string[], leaseUntil: number): Promise<string[]> {
    if (ids.length === 0) return [];
    const { rows } = await this.pool.query<{ id: string }>('UPDATE builds SET lease_until = $1 WHERE runner = $2 AND status = ANY($3) AND id = ANY($4) RETURNING id', [
      leaseUntil,
      runner,
      [...LEASED_BUILD_STATUSES],
      [...ids],
    ]);
    return rows.map((r) => r.id);
  }

  async takeOver(id: string, seen: SeenLease, patch: BuildPatch, from: readonly BuildStatus[]): Promise<BuildRecord | null> {
    return this.patchWhen(id, patch, (current) => from.includes(current.status) && current.runner === seen.runner && current.leaseUntil === seen.leaseUntil);
  }

  /** Applies `patch` (and `lease`, when given) under a row lock when `allowed` says so of the current row. */
  private async patchWhen(id: string, patch: BuildPatch, allowed: (current: BuildRecord) => boolean, lease?: BuildLease): Promise<BuildRecord | null> {
    return inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<BuildRow>('SELECT * FROM builds WHERE id = $1 FOR UPDATE', [id]);
      if (!rows[0]) return null;
      const current = buildFromRow(rows[0]);
      if (!allowed(current)) return null;
      const { next, data } = patchedBuild(current, patch);
      const runner = lease?.runner ?? next.runner;
      const leaseUntil = lease?.leaseUntil ?? next.leaseUntil;
      await client.query('UPDATE builds SET status = $2, finished_at = $3, files_removed_at = $4, data = $5, runner = $6, lease_until = $7 WHERE id = $1', [
        id,
        next.status,
        next.finishedAt,
        next.filesRemovedAt,
        data,
        runner,
        leaseUntil,
      ]);
      return { ...next, runner, leaseUntil };
    });
  }

  async ownerOf(id: string): Promise<string | null> {
    await this.loadOwners([id]);
    return this.ownerOfNow(id);
  }

  /** The owner of a build whose owner was loaded (or that this process created); null otherwise. */
  ownerOfNow = (id: string): string | null => this.owners.get(id) ?? null;

  /** Loads the owners of the builds among `ids` not known yet, so `ownerOfNow` answers them; unknown ids stay unknown. */
  loadOwners = async (ids: readonly string[]): Promise<void> => {
    const missing = [...new Set(ids)].filter((id) => !this.owners.has(id));
    if (missing.length === 0) return;
    const { rows } = await this.pool.query<{ id: string; tenant: string | null }>('SELECT id, tenant FROM builds WHERE id = ANY($1)', [missing]);
    for (const row of rows) this.remember(row.id, row.tenant);
  };

  async endedBefore(cutoff: number, limit: number): Promise<BuildRecord[]> {
    const { rows } = await this.pool.query<BuildRow>(
      `SELECT * FROM builds WHERE status = ANY($1) AND finished_at IS NOT NULL AND finished_at < $2 AND files_removed_at IS NULL ORDER BY finished_at LIMIT $3`,
      [[...TERMINAL_BUILD_STATUSES], cutoff, limit],
    );
    return rows.map(buildFromRow);
  }

  private remember(id: string, tenant: string | null): void {
    this.owners.delete(id);
    this.owners.set(id, tenant);
    if (this.owners.size > OWNER_CACHE_ENTRIES) this.owners.delete(this.owners.keys().next().value!);
  }
}
