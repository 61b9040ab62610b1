// ImageStore on SQLite.
import type { ImageRecord, ImageSource, ImageStore } from '../image-store.js';
import type { SqliteDatabase } from './db.js';

interface ImageRow {
  digest: string;
  index_digest: string | null;
  platform: string | null;
  disk_size: number | null;
  created_at: number;
  updated_at: number;
}

interface NameRow {
  digest: string;
  repo: string;
  tag: string;
  updated_at: number;
}

export class SqliteImageStore implements ImageStore {
  private readonly s;

  constructor(private readonly db: SqliteDatabase) {
    this.s = {
      upsert: db.prepare(
        `INSERT INTO images (digest, index_digest, platform, created_at, updated_at) VALUES (@digest, @indexDigest, @platform, @now, @now)
         ON CONFLICT (digest) DO UPDATE SET index_digest = COALESCE(excluded.index_digest, images.index_digest),
           platform = COALESCE(excluded.platform, images.platform), updated_at = excluded.updated_at`,
      ),
      upsertName: db.prepare(
        `INSERT INTO image_names (digest, repo, tag, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (digest, repo, tag) DO UPDATE SET updated_at = excluded.updated_at`,
      ),
      get: db.prepare<[string], ImageRow>('SELECT * FROM images WHERE digest = ?'),
      names: db.prepare<[string], NameRow>('SELECT * FROM image_names WHERE digest = ? ORDER BY updated_at DESC, repo, tag'),
      allNames: db.prepare<[], NameRow>('SELECT * FROM image_names ORDER BY updated_at DESC, repo, tag'),
      byIndex: db.prepare<[string], ImageRow>('SELECT * FROM images WHERE index_digest = ? ORDER BY created_at'),
      list: db.prepare<[], ImageRow>('SELECT * FROM images ORDER BY created_at DESC, digest'),
      setDiskSize: db.prepare('UPDATE images SET disk_size = ?, updated_at = ? WHERE digest = ?'),
      delete: db.prepare('DELETE FROM images WHERE digest = ?'),
      deleteNames: db.prepare('DELETE FROM image_names WHERE digest = ?'),
      deleteName: db.prepare('DELETE FROM image_names WHERE digest = ? AND repo = ? AND tag = ?'),
    };
  }

  upsert(source: ImageSource): ImageRecord {
    const now = Date.now();
    this.db.transaction(() => {
      this.s.upsert.run({ digest: source.digest, indexDigest: source.indexDigest, platform: source.platform, now });
      // '' stands for "pushed by digest" so the primary key stays simple.
      this.s.upsertName.run(source.digest, source.repo, source.tag ?? '', now);
    }).immediate();
    return this.get(source.digest)!;
  }

  get(digest: string): ImageRecord | null {
    const row = this.s.get.get(digest);
    return row ? toRecord(row, this.s.names.all(digest)) : null;
  }

  byIndex(indexDigest: string): ImageRecord[] {
    return this.s.byIndex.all(indexDigest).map((row) => toRecord(row, this.s.names.all(row.digest)));
  }

  list(): ImageRecord[] {
    const names = new Map<string, NameRow[]>();
    for (const n of this.s.allNames.all()) names.set(n.digest, [...(names.get(n.digest) ?? []), n]);
    return this.s.list.all().map((row) => toRecord(row, names.get(row.digest) ?? []));
  }

  setDiskSize(digest: string, size: number | null): void {
    this.s.setDiskSize.run(size, Date.now(), digest);
  }

  deleteName(digest: string, repo: string, tag: string | null): boolean {
    return this.s.deleteName.run(digest, repo, tag ?? '').changes > 0;
  }

  delete(digest: string): boolean {
    return this.db.transaction(() => {
      this.s.deleteNames.run(digest);
      return this.s.delete.run(digest).changes > 0;
    }).immediate();
  }
}

function toRecord(row: ImageRow, names: NameRow[]): ImageRecord {
  return {
    digest: row.digest,
    indexDigest: row.index_digest,
    platform: row.platform,
    diskSize: row.disk_size,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    names: names.map((n) => ({ repo: n.repo, tag: n.tag === '' ? null : n.tag, updatedAt: n.updated_at })),
  };
}
