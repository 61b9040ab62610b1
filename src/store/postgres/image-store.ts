// ImageStore on PostgreSQL: the same tables and the same conventions as on
// SQLite (src/store/sql-rows.ts: '' for "no tag" and "no index").
import type { ImageName, ImageNamePage, ImageRecord, ImageSource, ImageStore, ListedImageName } from '../image-store.js';
import { cursorParams, imageNameKey, prefixEnd, toImageName, toImageRecord, uniqueDigests, type ImageNameRow, type ImageRow } from '../sql-rows.js';
import type { RepoScope } from '../types.js';
import { inTransaction, type PgPool } from './db.js';

type ListedRow = ImageNameRow & { disk_size: number | null };

const NAME_COLUMNS = 'n.repo, n.tag, n.digest, n.index_digest, n.platform, n.created_at, n.updated_at';
const LISTED = `SELECT ${NAME_COLUMNS}, i.disk_size FROM image_names n JOIN images i ON i.digest = n.digest`;
const AFTER = '(n.repo, n.tag, n.digest, n.index_digest) > ($1, $2, $3, $4)';
const ORDER = 'ORDER BY n.repo, n.tag, n.digest, n.index_digest LIMIT $5';

export class PostgresImageStore implements ImageStore {
  constructor(private readonly pool: PgPool) {}

  async upsert(source: ImageSource): Promise<ImageRecord> {
    const now = Date.now();
    await inTransaction(this.pool, async (client) => {
      await client.query(
        `INSERT INTO images (digest, created_at, updated_at) VALUES ($1, $2, $2) ON CONFLICT (digest) DO UPDATE SET updated_at = excluded.updated_at`,
        [source.digest, now],
      );
      if (source.tag === null) {
        const named = await client.query(`SELECT 1 FROM image_names WHERE repo = $1 AND digest = $2 AND tag <> '' LIMIT 1`, [source.repo, source.digest]);
        if (named.rowCount! > 0) return;
      } else {
        // A tag name makes the digest names of the same image in the repo redundant.
        await client.query(`DELETE FROM image_names WHERE repo = $1 AND tag = '' AND digest = $2`, [source.repo, source.digest]);
      }
      await client.query(
        `INSERT INTO image_names (repo, tag, digest, index_digest, platform, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (repo, tag, digest, index_digest) DO UPDATE SET platform = excluded.platform, updated_at = excluded.updated_at`,
        [source.repo, source.tag ?? '', source.digest, source.indexDigest ?? '', source.platform, now],
      );
    });
    return (await this.get(source.digest))!;
  }

  async get(digest: string): Promise<ImageRecord | null> {
    const { rows } = await this.pool.query<ImageRow>('SELECT digest, disk_size, created_at, updated_at FROM images WHERE digest = $1', [digest]);
    if (!rows[0]) return null;
    const names = await this.pool.query<ImageNameRow>(
      `SELECT ${NAME_COLUMNS} FROM image_names n WHERE n.digest = $1 ORDER BY n.updated_at DESC, n.repo, n.tag, n.index_digest`,
      [digest],
    );
    return toImageRecord(rows[0], names.rows);
  }

  async namesOfTag(repo: string, tag: string): Promise<ImageName[]> {
    const { rows } = await this.pool.query<ImageNameRow>(`SELECT ${NAME_COLUMNS} FROM image_names n WHERE n.repo = $1 AND n.tag = $2 ORDER BY n.platform, n.digest`, [
      repo,
      tag,
    ]);
    return rows.map(toImageName);
  }

  async namesOfDigest(repo: string, digest: string): Promise<ImageName[]> {
    const { rows } = await this.pool.query<ImageNameRow>(
      `SELECT ${NAME_COLUMNS} FROM image_names n WHERE n.repo = $1 AND (n.digest = $2 OR n.index_digest = $2)
       ORDER BY n.tag = '' DESC, n.updated_at DESC, n.tag, n.platform`,
      [repo, digest],
    );
    return rows.map(toImageName);
  }

  async namesAnywhere(digest: string): Promise<ImageName[]> {
    const { rows } = await this.pool.query<ImageNameRow>(
      `SELECT ${NAME_COLUMNS} FROM image_names n WHERE n.digest = $1
       UNION SELECT ${NAME_COLUMNS} FROM image_names n WHERE n.index_digest = $1 ORDER BY 7 DESC, 1, 2`,
      [digest],
    );
    return rows.map(toImageName);
  }

  async listNames(page: ImageNamePage, scope: RepoScope): Promise<ListedImageName[]> {
    const after = cursorParams(page.after);
    const limit = page.limit;
    const at = (c: typeof after) => [c.repo, c.tag, c.digest, c.indexDigest, limit];
    const listed = (rows: ListedRow[]) => rows.map((r) => ({ ...toImageName(r), diskSize: r.disk_size }));
    if (scope.all) return listed((await this.pool.query<ListedRow>(`${LISTED} WHERE ${AFTER} ${ORDER}`, at(after))).rows);
    // Each range read no further than the page needs, then merged in key order.
    const found = new Map<string, ListedRow>();
    const add = (rows: ListedRow[]) => {
      for (const r of rows) found.set(imageNameKey(r), r);
    };
    for (const prefix of scope.prefixes) {
      const from = after.repo >= prefix ? after : { repo: prefix, tag: '', digest: '', indexDigest: '' };
      add((await this.pool.query<ListedRow>(`${LISTED} WHERE ${AFTER} AND n.repo < $6 ${ORDER}`, [...at(from), prefixEnd(prefix)])).rows);
    }
    for (const name of scope.names) {
      if (name >= after.repo) add((await this.pool.query<ListedRow>(`${LISTED} WHERE n.repo = $6 AND ${AFTER} ${ORDER}`, [...at(after), name])).rows);
    }
    const sorted = [...found.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, r]) => r);
    return listed(sorted.slice(0, limit));
  }

  async setDiskSize(digest: string, size: number | null): Promise<void> {
    await this.pool.query('UPDATE images SET disk_size = $1, updated_at = $2 WHERE digest = $3', [size, Date.now(), digest]);
  }

  async deleteName(digest: string, repo: string, tag: string | null): Promise<boolean> {
    return (await this.pool.query('DELETE FROM image_names WHERE digest = $1 AND repo = $2 AND tag = $3', [digest, repo, tag ?? ''])).rowCount! > 0;
  }

  async dropTag(repo: string, tag: string, except = ''): Promise<string[]> {
    const { rows } = await this.pool.query<{ digest: string }>(
      `DELETE FROM image_names WHERE repo = $1 AND tag = $2 AND (CASE index_digest WHEN '' THEN digest ELSE index_digest END) <> $3 RETURNING digest`,
      [repo, tag, except],
    );
    return uniqueDigests(rows.map((r) => r.digest));
  }

  async dropManifest(repo: string, digest: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ digest: string }>('DELETE FROM image_names WHERE repo = $1 AND (digest = $2 OR index_digest = $2) RETURNING digest', [
      repo,
      digest,
    ]);
    return uniqueDigests(rows.map((r) => r.digest));
  }

  async delete(digest: string): Promise<boolean> {
    return inTransaction(this.pool, async (client) => {
      await client.query('DELETE FROM image_names WHERE digest = $1', [digest]);
      return (await client.query('DELETE FROM images WHERE digest = $1', [digest])).rowCount! > 0;
    });
  }
}
