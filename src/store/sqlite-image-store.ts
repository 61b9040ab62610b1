// What Kiln knows about each image it bakes: where it came from and the
// disk's size. The bake's state lives in its job; this table is the catalogue.
import type { SqliteDatabase } from './sqlite-db.js';

export interface ImageRecord {
  /** Digest of the single-platform image manifest that is baked. */
  digest: string;
  repo: string;
  tag: string | null;
  /** The index this image was picked from, for multi-platform pushes. */
  indexDigest: string | null;
  platform: string | null;
  diskSize: number | null;
  createdAt: number;
  updatedAt: number;
}

export interface ImageSource {
  digest: string;
  repo: string;
  tag: string | null;
  indexDigest: string | null;
  platform: string | null;
}

export interface ImageStore {
  /** Records an image to bake, or refreshes where it was last pushed from. */
  upsert(source: ImageSource): ImageRecord;
  get(digest: string): ImageRecord | null;
  /** Images picked from an index. */
  byIndex(indexDigest: string): ImageRecord[];
  list(): ImageRecord[];
  setDiskSize(digest: string, size: number | null): void;
  delete(digest: string): boolean;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS images (
  digest TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  tag TEXT,
  index_digest TEXT,
  platform TEXT,
  disk_size INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS images_index ON images(index_digest) WHERE index_digest IS NOT NULL;
`;

interface ImageRow {
  digest: string;
  repo: string;
  tag: string | null;
  index_digest: string | null;
  platform: string | null;
  disk_size: number | null;
  created_at: number;
  updated_at: number;
}

export class SqliteImageStore implements ImageStore {
  private readonly s;

  constructor(db: SqliteDatabase) {
    db.exec(SCHEMA);
    this.s = {
      upsert: db.prepare(
        `INSERT INTO images (digest, repo, tag, index_digest, platform, created_at, updated_at)
         VALUES (@digest, @repo, @tag, @indexDigest, @platform, @now, @now)
         ON CONFLICT (digest) DO UPDATE SET repo = excluded.repo, tag = COALESCE(excluded.tag, images.tag),
           index_digest = COALESCE(excluded.index_digest, images.index_digest),
           platform = COALESCE(excluded.platform, images.platform), updated_at = excluded.updated_at`,
      ),
      get: db.prepare<[string], ImageRow>('SELECT * FROM images WHERE digest = ?'),
      byIndex: db.prepare<[string], ImageRow>('SELECT * FROM images WHERE index_digest = ? ORDER BY created_at'),
      list: db.prepare<[], ImageRow>('SELECT * FROM images ORDER BY created_at DESC, digest'),
      setDiskSize: db.prepare('UPDATE images SET disk_size = ?, updated_at = ? WHERE digest = ?'),
      delete: db.prepare('DELETE FROM images WHERE digest = ?'),
    };
  }

  upsert(source: ImageSource): ImageRecord {
    this.s.upsert.run({ ...source, now: Date.now() });
    return this.get(source.digest)!;
  }

  get(digest: string): ImageRecord | null {
    const row = this.s.get.get(digest);
    return row ? toRecord(row) : null;
  }

  byIndex(indexDigest: string): ImageRecord[] {
    return this.s.byIndex.all(indexDigest).map(toRecord);
  }

  list(): ImageRecord[] {
    return this.s.list.all().map(toRecord);
  }

  setDiskSize(digest: string, size: number | null): void {
    this.s.setDiskSize.run(size, Date.now(), digest);
  }

  delete(digest: string): boolean {
    return this.s.delete.run(digest).changes > 0;
  }
}

function toRecord(row: ImageRow): ImageRecord {
  return {
    digest: row.digest,
    repo: row.repo,
    tag: row.tag,
    indexDigest: row.index_digest,
    platform: row.platform,
    diskSize: row.disk_size,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
