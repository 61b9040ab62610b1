// BuildStore on SQLite: one row per build, its queue position in `seq`.
import type { BuildPatch, BuildRecord, BuildStatus, BuildStore, NewBuild } from '../build-store.js';
import type { SqliteDatabase } from './db.js';

interface Row {
  seq: number;
  id: string;
  status: BuildStatus;
  tenant: string | null;
  created_at: number;
  data: string;
}

type Data = Omit<BuildRecord, 'seq' | 'id' | 'status' | 'tenant' | 'createdAt'>;

export class SqliteBuildStore implements BuildStore {
  private readonly s;

  constructor(private readonly db: SqliteDatabase) {
    this.s = {
      insert: db.prepare('INSERT INTO builds (id, status, tenant, created_at, data) VALUES (?, ?, ?, ?, ?)'),
      get: db.prepare<[string], Row>('SELECT * FROM builds WHERE id = ?'),
      list: db.prepare<[], Row>('SELECT * FROM builds ORDER BY seq DESC'),
      owner: db.prepare<[string], { tenant: string | null }>('SELECT tenant FROM builds WHERE id = ?'),
      save: db.prepare('UPDATE builds SET status = ?, tenant = ?, data = ? WHERE id = ?'),
    };
  }

  create(build: NewBuild): BuildRecord {
    const { id, tenant, ...rest } = build;
    const data: Data = {
      ...rest,
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
      finishedAt: null,
    };
    this.s.insert.run(id, 'queued', tenant, Date.now(), JSON.stringify(data));
    return this.get(id)!;
  }

  get(id: string): BuildRecord | null {
    const row = this.s.get.get(id);
    return row ? toRecord(row) : null;
  }

  list(): BuildRecord[] {
    return this.s.list.all().map(toRecord);
  }

  withStatus(statuses: readonly BuildStatus[]): BuildRecord[] {
    if (statuses.length === 0) return [];
    const marks = statuses.map(() => '?').join(', ');
    return this.db
      .prepare<string[], Row>(`SELECT * FROM builds WHERE status IN (${marks}) ORDER BY seq`)
      .all(...statuses)
      .map(toRecord);
  }

  update(id: string, patch: BuildPatch, from?: readonly BuildStatus[]): BuildRecord | null {
    return this.db.transaction(() => {
      const current = this.get(id);
      if (current === null || (from !== undefined && !from.includes(current.status))) return null;
      const next: BuildRecord = { ...current, ...patch };
      const { seq: _seq, id: _id, status, tenant, createdAt: _createdAt, ...data } = next;
      this.s.save.run(status, tenant, JSON.stringify(data satisfies Data), id);
      return next;
    })();
  }

  ownerOf = (id: string): string | null => this.s.owner.get(id)?.tenant ?? null;
}

function toRecord(row: Row): BuildRecord {
  const data = JSON.parse(row.data) as Data;
  return { ...data, seq: row.seq, id: row.id, status: row.status, tenant: row.tenant, createdAt: row.created_at };
}
