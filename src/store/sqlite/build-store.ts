// BuildStore on SQLite: one row per build, the fields the queries filter on
// as columns (status, owner, end time, whether the files are kept, the
// runner's lease), the rest as JSON. Listings are paged in the database by owner (tenant, seq) and
// status. The schema is in migrations.ts.
import type { BuildLease, BuildListQuery, BuildPatch, BuildRecord, BuildStatus, BuildStore, NewBuild, SeenLease } from '../build-store.js';
import { LEASED_BUILD_STATUSES, TERMINAL_BUILD_STATUSES } from '../build-store.js';
import { buildFromRow as toRecord, initialBuildData, patchedBuild, type BuildRow as Row } from '../build-rows.js';
import type { SqliteDatabase } from './db.js';

const ENDED = TERMINAL_BUILD_STATUSES.map((s) => `'${s}'`).join(', ');
const LEASED = LEASED_BUILD_STATUSES.map((s) => `'${s}'`).join(', ');

export class SqliteBuildStore implements BuildStore {
  private readonly s;

  constructor(private readonly db: SqliteDatabase) {
    this.s = {
      insert: db.prepare('INSERT INTO builds (id, status, tenant, created_at, runner, lease_until, data) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      hold: db.prepare('UPDATE builds SET runner = ?, lease_until = ? WHERE id = ?'),
      get: db.prepare<[string], Row>('SELECT * FROM builds WHERE id = ?'),
      owner: db.prepare<[string], { tenant: string | null }>('SELECT tenant FROM builds WHERE id = ?'),
      save: db.prepare('UPDATE builds SET status = ?, tenant = ?, finished_at = ?, files_removed_at = ?, data = ? WHERE id = ?'),
      endedBefore: db.prepare<[number, number], Row>(
        `SELECT * FROM builds WHERE status IN (${ENDED}) AND finished_at IS NOT NULL AND finished_at < ? AND files_removed_at IS NULL ORDER BY finished_at LIMIT ?`,
      ),
    };
  }

  async create(build: NewBuild): Promise<BuildRecord> {
    this.s.insert.run(build.id, 'queued', build.tenant, Date.now(), build.lease?.runner ?? null, build.lease?.leaseUntil ?? null, JSON.stringify(initialBuildData(build)));
    return this.getSync(build.id)!;
  }

  async get(id: string): Promise<BuildRecord | null> {
    return this.getSync(id);
  }

  async list(query: BuildListQuery): Promise<BuildRecord[]> {
    const where: string[] = [];
    const params: Array<string | number> = [];
    if (query.tenant !== undefined) {
      where.push('tenant = ?');
      params.push(query.tenant);
    }
    if (query.status !== undefined) {
      where.push('status = ?');
      params.push(query.status);
    }
    if (query.after !== undefined) {
      // An unknown id compares with NULL, which matches nothing: an empty page.
      where.push('seq < (SELECT seq FROM builds WHERE id = ?)');
      params.push(query.after);
    }
    const sql = `SELECT * FROM builds ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`;
    return this.db.prepare<Array<string | number>, Row>(sql).all(...params, Math.max(0, Math.floor(query.limit))).map(toRecord);
  }

  async withStatus(statuses: readonly BuildStatus[]): Promise<BuildRecord[]> {
    if (statuses.length === 0) return [];
    const marks = statuses.map(() => '?').join(', ');
    return this.db
      .prepare<string[], Row>(`SELECT * FROM builds WHERE status IN (${marks}) ORDER BY seq`)
      .all(...statuses)
      .map(toRecord);
  }

  async update(id: string, patch: BuildPatch, from?: readonly BuildStatus[]): Promise<BuildRecord | null> {
    return this.db.transaction(() => {
      const current = this.getSync(id);
      if (current === null || (from !== undefined && !from.includes(current.status))) return null;
      const { next, data } = patchedBuild(current, patch);
      this.s.save.run(next.status, next.tenant, next.finishedAt, next.filesRemovedAt, data, id);
      return next;
    }).immediate();
  }

  async ownerOf(id: string): Promise<string | null> {
    return this.ownerOfNow(id);
  }

  /**
   * The same answer without waiting, for the auth policy (whose owner lookup
   * is synchronous): SQLite answers in-process. A backend over the network
   * cannot offer this; see the README on running several API processes.
   */
  ownerOfNow = (id: string): string | null => this.s.owner.get(id)?.tenant ?? null;

  async endedBefore(cutoff: number, limit: number): Promise<BuildRecord[]> {
    return this.s.endedBefore.all(cutoff, limit).map(toRecord);
  }

  async claim(id: string, lease: BuildLease, patch: BuildPatch): Promise<BuildRecord | null> {
    return this.db.transaction(() => {
      const current = this.getSync(id);
      if (current === null || current.status !== 'queued' || (current.runner !== null && current.runner !== lease.runner)) return null;
      const { next, data } = patchedBuild(current, patch);
      this.s.save.run(next.status, next.tenant, next.finishedAt, next.filesRemovedAt, data, id);
      this.s.hold.run(lease.runner, lease.leaseUntil, id);
      return { ...next, runner: lease.runner, leaseUntil: lease.leaseUntil };
    }).immediate();
  }

  async renew(runner: string, ids: readonly string[], leaseUntil: number): Promise<string[]> {
    if (ids.length === 0) return [];
    const marks = ids.map(() => '?').join(', ');
    return this.db
      .prepare<Array<string | number>, { id: string }>(`UPDATE builds SET lease_until = ? WHERE runner = ? AND status IN (${LEASED}) AND id IN (${marks}) RETURNING id`)
      .all(leaseUntil, runner, ...ids)
      .map((r) => r.id);
  }

  async takeOver(id: string, seen: SeenLease, patch: BuildPatch, from: readonly BuildStatus[]): Promise<BuildRecord | null> {
    return this.db.transaction(() => {
      const current = this.getSync(id);
      if (current === null || !from.includes(current.status) || current.runner !== seen.runner || current.leaseUntil !== seen.leaseUntil) return null;
      const { next, data } = patchedBuild(current, patch);
      this.s.save.run(next.status, next.tenant, next.finishedAt, next.filesRemovedAt, data, id);
      return next;
    }).immediate();
  }

  private getSync(id: string): BuildRecord | null {
    const row = this.s.get.get(id);
    return row ? toRecord(row) : null;
  }
}
