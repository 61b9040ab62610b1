// ImageStore on SQLite. In image_names, '' stands for "no tag" (named by
// digest) and for "no index", so the primary key stays simple; it is also
// the listing's order: (repo, tag, digest, index_digest).
import type { ImageName, ImageNamePage, ImageRecord, ImageSource, ImageStore, ListedImageName } from '../image-store.js';
import { cursorParams, imageNameKey as keyOf, prefixEnd, toImageName as toName, toImageRecord as toRecord, uniqueDigests as unique, type ImageNameRow as NameRow, type ImageRow } from '../sql-rows.js';
import type { RepoScope } from '../types.js';
import type { SqliteDatabase } from './db.js';



const NAME_COLUMNS = 'n.repo, n.tag, n.digest, n.index_digest, n.platform, n.created_at, n.updated_at';
const AFTER = '(n.repo, n.tag, n.digest, n.index_digest) > (@repo, @tag, @digest, @indexDigest)';
const ORDER = 'ORDER BY n.repo, n.tag, n.digest, n.index_digest LIMIT @limit';

export class SqliteImageStore implements ImageStore {
  private readonly s;

  constructor(private readonly db: SqliteDatabase) {
    this.s = {
      upsert: db.prepare(
        `INSERT INTO images (digest, created_at, updated_at) VALUES (@digest, @now, @now)
         ON CONFLICT (digest) DO UPDATE SET updated_at = excluded.updated_at`,
      ),
      upsertName: db.prepare(
        `INSERT INTO image_names (repo, tag, digest, index_digest, platform, created_at, updated_at) VALUES (@repo, @tag, @digest, @indexDigest, @platform, @now, @now)
         ON CONFLICT (repo, tag, digest, index_digest) DO UPDATE SET platform = excluded.platform, updated_at = excluded.updated_at`,
      ),
      // A tag name makes the digest names of the same image in the repo redundant.
      dropDigestNames: db.prepare(`DELETE FROM image_names WHERE repo = ? AND tag = '' AND digest = ?`),
      hasTagName: db.prepare<[string, string], { one: number }>(`SELECT 1 AS one FROM image_names WHERE repo = ? AND digest = ? AND tag <> '' LIMIT 1`),
      get: db.prepare<[string], ImageRow>('SELECT digest, disk_size, created_at, updated_at FROM images WHERE digest = ?'),
      names: db.prepare<[string], NameRow>(`SELECT ${NAME_COLUMNS} FROM image_names n WHERE n.digest = ? ORDER BY n.updated_at DESC, n.repo, n.tag, n.index_digest`),
      namesOfTag: db.prepare<[string, string], NameRow>(`SELECT ${NAME_COLUMNS} FROM image_names n WHERE n.repo = ? AND n.tag = ? ORDER BY n.platform, n.digest`),
      namesOfDigest: db.prepare<{ repo: string; digest: string }, NameRow>(
        `SELECT ${NAME_COLUMNS} FROM image_names n WHERE n.repo = @repo AND (n.digest = @digest OR n.index_digest = @digest)
         ORDER BY n.tag = '' DESC, n.updated_at DESC, n.tag, n.platform`,
      ),
      namesAnywhere: db.prepare<{ digest: string }, NameRow>(
        `SELECT ${NAME_COLUMNS} FROM image_names n WHERE n.digest = @digest
         UNION SELECT ${NAME_COLUMNS} FROM image_names n WHERE n.index_digest = @digest ORDER BY 7 DESC, 1, 2`,
      ),
      listAll: db.prepare<Record<string, unknown>, NameRow & { disk_size: number | null }>(
        `SELECT ${NAME_COLUMNS}, i.disk_size FROM image_names n JOIN images i ON i.digest = n.digest WHERE ${AFTER} ${ORDER}`,
      ),
      // One range per prefix: the lower bound is the cursor or the prefix, whichever is later.
      listRange: db.prepare<Record<string, unknown>, NameRow & { disk_size: number | null }>(
        `SELECT ${NAME_COLUMNS}, i.disk_size FROM image_names n JOIN images i ON i.digest = n.digest WHERE ${AFTER} AND n.repo < @end ${ORDER}`,
      ),
      listRepo: db.prepare<Record<string, unknown>, NameRow & { disk_size: number | null }>(
        `SELECT ${NAME_COLUMNS}, i.disk_size FROM image_names n JOIN images i ON i.digest = n.digest WHERE n.repo = @name AND ${AFTER} ${ORDER}`,
      ),
      setDiskSize: db.prepare('UPDATE images SET disk_size = ?, updated_at = ? WHERE digest = ?'),
      delete: db.prepare('DELETE FROM images WHERE digest = ?'),
      deleteNames: db.prepare('DELETE FROM image_names WHERE digest = ?'),
      deleteName: db.prepare('DELETE FROM image_names WHERE digest = ? AND repo = ? AND tag = ?'),
      dropTag: db.prepare<[string, string, string], { digest: string }>(
        `DELETE FROM image_names WHERE repo = ? AND tag = ? AND (CASE index_digest WHEN '' THEN digest ELSE index_digest END) <> ? RETURNING digest`,
      ),
      dropManifest: db.prepare<{ repo: string; digest: string }, { digest: string }>(
        'DELETE FROM image_names WHERE repo = @repo AND (digest = @digest OR index_digest = @digest) RETURNING digest',
      ),
    };
  }

  async upsert(source: ImageSource): Promise<ImageRecord> {
    const now = Date.now();
    this.db.transaction(() => {
      this.s.upsert.run({ digest: source.digest, now });
      if (source.tag === null && this.s.hasTagName.get(source.repo, source.digest)) return;
      if (source.tag !== null) this.s.dropDigestNames.run(source.repo, source.digest);
      this.s.upsertName.run({ repo: source.repo, tag: source.tag ?? '', digest: source.digest, indexDigest: source.indexDigest ?? '', platform: source.platform, now });
    }).immediate();
    return (await this.get(source.digest))!;
  }

  async get(digest: string): Promise<ImageRecord | null> {
    const row = this.s.get.get(digest);
    return row ? toRecord(row, this.s.names.all(digest)) : null;
  }

  async namesOfTag(repo: string, tag: string): Promise<ImageName[]> {
    return this.s.namesOfTag.all(repo, tag).map(toName);
  }

  async namesOfDigest(repo: string, digest: string): Promise<ImageName[]> {
    return this.s.namesOfDigest.all({ repo, digest }).map(toName);
  }

  async namesAnywhere(digest: string): Promise<ImageName[]> {
    return this.s.namesAnywhere.all({ digest }).map(toName);
  }

  async listNames(page: ImageNamePage, scope: RepoScope): Promise<ListedImageName[]> {
    const after = cursorParams(page.after);
    const limit = page.limit;
    const listed = (rows: (NameRow & { disk_size: number | null })[]) => rows.map((r) => ({ ...toName(r), diskSize: r.disk_size }));
    if (scope.all) return listed(this.s.listAll.all({ ...after, limit }));
    // Each range read no further than the page needs, then merged in key order.
    const found = new Map<string, NameRow & { disk_size: number | null }>();
    const add = (rows: (NameRow & { disk_size: number | null })[]) => {
      for (const r of rows) found.set(keyOf(r), r);
    };
    for (const prefix of scope.prefixes) {
      const from = after.repo >= prefix ? after : { repo: prefix, tag: '', digest: '', indexDigest: '' };
      add(this.s.listRange.all({ ...from, end: prefixEnd(prefix), limit }));
    }
    for (const name of scope.names) if (name >= after.repo) add(this.s.listRepo.all({ ...after, name, limit }));
    const sorted = [...found.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, r]) => r);
    return listed(sorted.slice(0, limit));
  }

  async setDiskSize(digest: string, size: number | null): Promise<void> {
    this.s.setDiskSize.run(size, Date.now(), digest);
  }

  async deleteName(digest: string, repo: string, tag: string | null): Promise<boolean> {
    return this.s.deleteName.run(digest, repo, tag ?? '').changes > 0;
  }

  async dropTag(repo: string, tag: string, except = ''): Promise<string[]> {
    return unique(this.s.dropTag.all(repo, tag, except).map((r) => r.digest));
  }

  async dropManifest(repo: string, digest: string): Promise<string[]> {
    return unique(this.s.dropManifest.all({ repo, digest }).map((r) => r.digest));
  }

  async delete(digest: string): Promise<boolean> {
    return this.db.transaction(() => {
      this.s.deleteNames.run(digest);
      return this.s.delete.run(digest).changes > 0;
    }).immediate();
  }
}
