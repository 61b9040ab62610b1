// Builds: one row per build in the metadata database, and where a build's files
// live in the data directory (builds/<id>/ holds source.tar.gz, build.log,
// result.json). The queue order is the insertion order (`seq`).
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { DataDir } from './data-dir.js';
import type { SqliteDatabase } from './sqlite-db.js';

export type BuildStatus = 'queued' | 'building' | 'pushing' | 'baking' | 'ready' | 'failed' | 'cancelled';

export const TERMINAL_BUILD_STATUSES: readonly BuildStatus[] = ['ready', 'failed', 'cancelled'];

export interface BuildCacheUse {
  totalSteps: number;
  cachedSteps: number;
}

/** A base image the build took from this registry: kept alive while the build runs. */
export interface BuildBaseImage {
  ref: string;
  repo: string;
  digest: string;
}

export interface BuildRecord {
  id: string;
  /** Position in submission order; the queue is FIFO on it. */
  seq: number;
  status: BuildStatus;
  /** The tenant the build runs for, who owns `builds/<id>`; null for admin builds of a caller without one. */
  tenant: string | null;
  /** Subject of the credential that submitted it. */
  requestedBy: string;
  /** An admin build fills the global cache instead of a tenant's. */
  admin: boolean;
  globalKey: string | null;
  buildArgs: Record<string, string>;
  platform: string | null;
  timeoutSeconds: number;
  /** Dockerfile text sent with the request; null when the source's own is used. */
  dockerfile: string | null;
  /** `sha256:` of the source archive exactly as uploaded. */
  sourceSha256: string;
  error: string | null;
  /** `buildah 1.28.2`, once known. */
  builder: string | null;
  /** `R/builds/<id>`, once planned. */
  imageName: string | null;
  imageDigest: string | null;
  diskStatus: 'pending' | 'baking' | 'ready' | 'failed' | null;
  diskSize: number | null;
  cacheImports: string[];
  cacheExport: string | null;
  cacheUse: BuildCacheUse | null;
  baseImages: BuildBaseImage[];
  /** The provenance record, as the builds module assembles it. */
  provenance: unknown;
  createdAt: number;
  startedAt: number | null;
  pushingAt: number | null;
  bakingAt: number | null;
  finishedAt: number | null;
}

export type NewBuild = Pick<
  BuildRecord,
  'id' | 'tenant' | 'requestedBy' | 'admin' | 'globalKey' | 'buildArgs' | 'platform' | 'timeoutSeconds' | 'dockerfile' | 'sourceSha256'
>;

export type BuildPatch = Partial<Omit<BuildRecord, 'id' | 'seq' | 'createdAt'>>;

export interface BuildStore {
  create(build: NewBuild): BuildRecord;
  get(id: string): BuildRecord | null;
  /** Newest first. */
  list(): BuildRecord[];
  /** Builds in any of `statuses`, oldest first. */
  withStatus(statuses: readonly BuildStatus[]): BuildRecord[];
  /** Applies `patch` when the build's status is one of `from` (any status when omitted); null when it was not. */
  update(id: string, patch: BuildPatch, from?: readonly BuildStatus[]): BuildRecord | null;
  /** The tenant that owns a build, for the auth policy. */
  ownerOf(id: string): string | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS builds (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  tenant TEXT,
  created_at INTEGER NOT NULL,
  data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS builds_status ON builds(status, seq);
`;

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
    db.exec(SCHEMA);
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

/** Where a build's files live: `builds/<id>/{source.tar.gz, build.log, result.json}`. */
export class BuildFiles {
  constructor(private readonly dirs: DataDir) {}

  dir(id: string): string {
    return this.dirs.buildDir(id);
  }
  /** The ids that have a directory. */
  async ids(): Promise<string[]> {
    const entries = await readdir(this.dirs.buildsRoot, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  }
  /** The uploaded source, gzip-compressed. */
  source(id: string): string {
    return path.join(this.dir(id), 'source.tar.gz');
  }
  /** The source while it is being received. */
  partialSource(id: string): string {
    return path.join(this.dir(id), 'source.upload');
  }
  log(id: string): string {
    return path.join(this.dir(id), 'build.log');
  }
  /** The build's final record, written when it ends. */
  result(id: string): string {
    return path.join(this.dir(id), 'result.json');
  }
  /** The FROM repos the submitter was checked to be allowed to pull. */
  pullRepos(id: string): string {
    return path.join(this.dir(id), 'pull-repos.json');
  }
}
