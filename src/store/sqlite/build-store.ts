// BuildStore on SQLite: one row per build, the fields the queries filter on
// as columns (status, owner, end time, whether the files are kept), the rest
// as JSON. Listings are paged in the database by owner (tenant, seq) and
// status. The schema is in migrations.ts.
import type { BuildListQuery, BuildPatch, BuildRecord, BuildStatus, BuildStore, NewBuild } from '../build-store.js';
import { TERMINAL_BUILD_STATUSES } from '../build-store.js';
import type { SqliteDatabase } from './db.js';

interface Row {
  seq: number;
  id: string;
  status: BuildStatus;
  tenant: string | null;
  created_at: number;
  finished_at: number | null;
  files_removed_at: number | null;
  data: string;
}

type Data = Omit<BuildRecord, 'seq' | 'id' | 'status' | 'tenant' | 'createdAt' | 'finishedAt' | 'filesRemovedAt'>;

const ENDED = TERMINAL_BUILD_STATUSES.map((s) => `'${s}'`).join(', ');

export class SqliteBuildStore implements BuildStore {
  private readonly s;

  constructor(private readonly db: SqliteDatabase) {
    this.s = {
      insert: db.prepare('INSERT INTO builds (id, status, tenant, created_at, data) VALUES (?, ?, ?, ?, ?)'),
      get: db.prepare<[string], Row>('SELECT * FROM builds WHERE id = ?'),
      owner: db.prepare<[string], { tenant: string | null }>('SELECT tenant FROM builds WHERE id = ?'),
      save: db.prepare('UPDATE builds SET status = ?, tenant = ?, finished_at = ?, files_removed_at = ?, data = ? WHERE id = ?'),
      endedBefore: db.prepare<[number, number], Row>(
        `SELECT * FROM builds WHERE status IN (${ENDED}) AND finished_at IS NOT NULL AND finished_at < ? AND files_removed_at IS NULL ORDER BY finished_at LIMIT ?`,
      ),
    };
  }

  async create(build: NewBuild): Promise<BuildRecord> {
    const { id, tenant, ...rest } = build;
    const data: Data = {
      ...rest,
      baseRefs: rest.baseRefs.map((r) => ({ ...r })),
      secretIds: [...rest.secretIds],
      error: null,
      builder: null,
      imageName: null,
      imageDigest: null,
      diskStatus: null,
      diskSize: null,
      cacheImports: [],
      cacheExport: null,
      cacheUse: null,
      baseImages: [],
      provenance: null,
      startedAt: null,
      pushingAt: null,
      bakingAt: null,
    };
    this.s.insert.run(id, 'queued', tenant, Date.now(), JSON.stringify(data));
    return this.getSync(id)!;
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
      const next: BuildRecord = { ...current, ...patch };
      const { seq: _seq, id: _id, status, tenant, createdAt: _createdAt, finishedAt, filesRemovedAt, ...data } = next;
      this.s.save.run(status, tenant, finishedAt, filesRemovedAt, JSON.stringify(data satisfies Data), id);
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

  private getSync(id: string): BuildRecord | null {
    const row = this.s.get.get(id);
    return row ? toRecord(row) : null;
  }
}

function toRecord(row: Row): BuildRecord {
  // Rows written before these fields existed lack them; finishedAt was kept in the JSON then (migration 2 copied it out).
  const data = JSON.parse(row.data) as Omit<Data, 'baseRefs' | 'secretIds'> & Partial<Pick<Data, 'baseRefs' | 'secretIds'>> & { finishedAt?: number | null };
  const { finishedAt: legacyFinishedAt, baseRefs, secretIds, ...rest } = data;
  return {
    ...rest,
    baseRefs: baseRefs ?? [],
    secretIds: secretIds ?? [],
    seq: row.seq,
    id: row.id,
    status: row.status,
    tenant: row.tenant,
    createdAt: row.created_at,
    finishedAt: row.finished_at ?? legacyFinishedAt ?? null,
    filesRemovedAt: row.files_removed_at,
  };
}
