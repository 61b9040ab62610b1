// MetadataStore on PostgreSQL. Writes that make content reachable run in a
// transaction that holds the `reach` advisory lock shared, so a garbage
// collection in any process sees them either entirely before or entirely
// after its snapshot-and-delete (src/gc/collector.ts).
import { ReferencesMissingError } from '../errors.js';
import { MANIFEST_COLUMNS, prefixEnd, toManifestRecord, toReferrers, toUploadSession, type ManifestRow, type UploadRow } from '../sql-rows.js';
import type {
  CreateUploadOutcome,
  ManifestRecord,
  MetadataStore,
  Page,
  PutManifestInput,
  Referrer,
  RepoScope,
  UploadExpiry,
  UploadSession,
  UploadSessionQuota,
} from '../types.js';
import { inTransaction, LOCKS, prepared, type PgClient, type PgPool } from './db.js';

const UPLOAD_COLUMNS = 'id, repo, owner, started, created_at, updated_at';

// The lookups every pull makes, as named statements (see `prepared`).
const REPO_EXISTS = prepared('kiln_repo_exists', 'SELECT 1 FROM repos WHERE name = $1');
const REPO_BLOB_SIZE = prepared(
  'kiln_repo_blob_size',
  `SELECT b.size FROM repo_blobs rb JOIN repos r ON r.id = rb.repo_id JOIN blobs b ON b.digest = rb.digest
   WHERE r.name = $1 AND rb.digest = $2`,
);
const MANIFEST_BY_DIGEST = prepared(
  'kiln_manifest_by_digest',
  `SELECT ${MANIFEST_COLUMNS} FROM manifests m JOIN repos r ON r.id = m.repo_id WHERE r.name = $1 AND m.digest = $2`,
);
const MANIFEST_BY_TAG = prepared(
  'kiln_manifest_by_tag',
  `SELECT ${MANIFEST_COLUMNS} FROM tags t JOIN repos r ON r.id = t.repo_id JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
   WHERE r.name = $1 AND t.name = $2`,
);

/** Holds the `reach` lock shared until the transaction ends. */
export async function lockReachShared(client: PgClient): Promise<void> {
  await client.query('SELECT pg_advisory_xact_lock_shared($1, $2)', LOCKS.reach);
}

/** The id of repo `name`, created if needed (inside the caller's transaction). */
async function ensureRepo(client: PgClient, name: string): Promise<number> {
  const found = await client.query<{ id: number }>('SELECT id FROM repos WHERE name = $1', [name]);
  if (found.rows[0]) return found.rows[0].id;
  const inserted = await client.query<{ id: number }>(
    'INSERT INTO repos (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id',
    [name, Date.now()],
  );
  if (inserted.rows[0]) return inserted.rows[0].id;
  // Another transaction created it meanwhile; this statement's snapshot sees it.
  return (await client.query<{ id: number }>('SELECT id FROM repos WHERE name = $1', [name])).rows[0]!.id;
}

export class PostgresMetadataStore implements MetadataStore {
  constructor(private readonly pool: PgPool) {}

  async listRepos(page: Page, scope: RepoScope = { all: true }): Promise<string[]> {
    const after = page.last ?? '';
    const limit = page.limit ?? null;
    if (scope.all) {
      const { rows } = await this.pool.query<{ name: string }>('SELECT name FROM repos WHERE name > $1 ORDER BY name LIMIT $2', [after, limit]);
      return rows.map((r) => r.name);
    }
    // One index range per prefix (one lower bound each), read no further than the page needs, then merged.
    const found = new Set<string>();
    for (const prefix of scope.prefixes) {
      const [op, from] = after < prefix ? ['>=', prefix] : ['>', after];
      const { rows } = await this.pool.query<{ name: string }>(`SELECT name FROM repos WHERE name ${op} $1 AND name < $2 ORDER BY name LIMIT $3`, [
        from,
        prefixEnd(prefix),
        limit,
      ]);
      for (const row of rows) found.add(row.name);
    }
    const names = scope.names.filter((name) => name > after && !found.has(name));
    if (names.length > 0) {
      const { rows } = await this.pool.query<{ name: string }>('SELECT name FROM repos WHERE name = ANY($1::text[])', [names]);
      for (const row of rows) found.add(row.name);
    }
    const sorted = [...found].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return limit === null ? sorted : sorted.slice(0, limit);
  }

  async findRepoWithBlob(digest: string, scope: RepoScope): Promise<string | null> {
    const holding = `SELECT r.name FROM repos r JOIN repo_blobs rb ON rb.repo_id = r.id AND rb.digest = $1 JOIN blobs b ON b.digest = rb.digest`;
    if (scope.all) return (await this.pool.query<{ name: string }>(`${holding} LIMIT 1`, [digest])).rows[0]?.name ?? null;
    // Walks the caller's own repositories (name ranges) and probes each one's primary key: never other tenants' rows.
    for (const prefix of scope.prefixes) {
      const { rows } = await this.pool.query<{ name: string }>(`${holding} WHERE r.name >= $2 AND r.name < $3 LIMIT 1`, [digest, prefix, prefixEnd(prefix)]);
      if (rows[0]) return rows[0].name;
    }
    if (scope.names.length === 0) return null;
    const { rows } = await this.pool.query<{ name: string }>(`${holding} WHERE r.name = ANY($2::text[]) LIMIT 1`, [digest, scope.names]);
    return rows[0]?.name ?? null;
  }

  async repoExists(repo: string): Promise<boolean> {
    return (await this.pool.query({ ...REPO_EXISTS, values: [repo] })).rowCount! > 0;
  }

  async linkBlob(repo: string, digest: string, size: number): Promise<void> {
    const now = Date.now();
    await inTransaction(this.pool, async (client) => {
      await lockReachShared(client);
      const repoId = await ensureRepo(client, repo);
      // created_at is refreshed on every link: the GC grace period counts from the last upload or mount.
      await client.query(
        `WITH b AS (INSERT INTO blobs (digest, size, created_at) VALUES ($2, $3, $4) ON CONFLICT (digest) DO NOTHING)
         INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES ($1, $2, $4)
         ON CONFLICT (repo_id, digest) DO UPDATE SET created_at = excluded.created_at`,
        [repoId, digest, size, now],
      );
    });
  }

  async repoBlobSize(repo: string, digest: string): Promise<number | null> {
    const { rows } = await this.pool.query<{ size: number }>({ ...REPO_BLOB_SIZE, values: [repo, digest] });
    return rows[0]?.size ?? null;
  }

  async unlinkBlob(repo: string, digest: string): Promise<boolean> {
    const res = await this.pool.query('DELETE FROM repo_blobs WHERE repo_id = (SELECT id FROM repos WHERE name = $1) AND digest = $2', [repo, digest]);
    return res.rowCount! > 0;
  }

  async blobSize(digest: string): Promise<number | null> {
    const { rows } = await this.pool.query<{ size: number }>('SELECT size FROM blobs WHERE digest = $1', [digest]);
    return rows[0]?.size ?? null;
  }

  async putManifest(input: PutManifestInput): Promise<void> {
    const now = Date.now();
    await inTransaction(this.pool, async (client) => {
      await lockReachShared(client);
      const repoId = await ensureRepo(client, input.repo);
      const digests = input.references.map((r) => r.digest);
      const kinds = input.references.map((r) => r.kind);
      if (digests.length > 0) {
        // GC safety (src/gc/collector.ts, rule 2a): references are re-checked under the lock.
        const gone = await client.query<{ digest: string }>(
          `SELECT r.digest FROM unnest($2::text[], $3::text[]) AS r(digest, kind)
           WHERE CASE WHEN r.kind = 'manifest'
             THEN NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = $1 AND m.digest = r.digest)
             ELSE NOT EXISTS (SELECT 1 FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest WHERE rb.repo_id = $1 AND rb.digest = r.digest)
           END`,
          [repoId, digests, kinds],
        );
        if (gone.rows.length > 0) throw new ReferencesMissingError(input.repo, gone.rows.map((r) => r.digest));
      }
      await client.query(
        `WITH b AS (INSERT INTO blobs (digest, size, created_at) VALUES ($2, $4, $9) ON CONFLICT (digest) DO NOTHING),
         refs AS (INSERT INTO manifest_refs (repo_id, manifest_digest, child_digest, kind)
           SELECT $1, $2, r.digest, r.kind FROM unnest($10::text[], $11::text[]) AS r(digest, kind) ON CONFLICT DO NOTHING)
         INSERT INTO manifests (repo_id, digest, media_type, size, artifact_type, config_media_type, subject, annotations, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo_id, digest) DO NOTHING`,
        [
          repoId,
          input.digest,
          input.mediaType,
          input.size,
          input.artifactType,
          input.configMediaType,
          input.subject,
          input.annotations ? JSON.stringify(input.annotations) : null,
          now,
          digests,
          kinds,
        ],
      );
      if (input.tag !== undefined) {
        await client.query(
          `INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`,
          [repoId, input.tag, input.digest, now],
        );
      }
    });
  }

  async getManifest(repo: string, digest: string): Promise<ManifestRecord | null> {
    const { rows } = await this.pool.query<ManifestRow>({ ...MANIFEST_BY_DIGEST, values: [repo, digest] });
    return rows[0] ? toManifestRecord(rows[0]) : null;
  }

  async resolveTag(repo: string, tag: string): Promise<string | null> {
    const { rows } = await this.pool.query<{ digest: string }>(
      'SELECT t.digest FROM tags t JOIN repos r ON r.id = t.repo_id WHERE r.name = $1 AND t.name = $2',
      [repo, tag],
    );
    return rows[0]?.digest ?? null;
  }

  async getTaggedManifest(repo: string, tag: string): Promise<ManifestRecord | null> {
    const { rows } = await this.pool.query<ManifestRow>({ ...MANIFEST_BY_TAG, values: [repo, tag] });
    return rows[0] ? toManifestRecord(rows[0]) : null;
  }

  async listTags(repo: string, page: Page): Promise<string[]> {
    const { rows } = await this.pool.query<{ name: string }>(
      'SELECT t.name FROM tags t JOIN repos r ON r.id = t.repo_id WHERE r.name = $1 AND t.name > $2 ORDER BY t.name LIMIT $3',
      [repo, page.last ?? '', page.limit ?? null],
    );
    return rows.map((r) => r.name);
  }

  async tagsOf(repo: string, digest: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ name: string }>(
      'SELECT t.name FROM tags t JOIN repos r ON r.id = t.repo_id WHERE r.name = $1 AND t.digest = $2 ORDER BY t.name',
      [repo, digest],
    );
    return rows.map((r) => r.name);
  }

  async deleteTag(repo: string, tag: string): Promise<boolean> {
    const res = await this.pool.query('DELETE FROM tags WHERE repo_id = (SELECT id FROM repos WHERE name = $1) AND name = $2', [repo, tag]);
    return res.rowCount! > 0;
  }

  async deleteManifest(repo: string, digest: string): Promise<boolean> {
    const { rows } = await this.pool.query<{ removed: boolean }>(
      `WITH r AS (SELECT id FROM repos WHERE name = $1),
       m AS (DELETE FROM manifests WHERE repo_id = (SELECT id FROM r) AND digest = $2 RETURNING repo_id),
       t AS (DELETE FROM tags WHERE repo_id IN (SELECT repo_id FROM m) AND digest = $2),
       refs AS (DELETE FROM manifest_refs WHERE repo_id IN (SELECT repo_id FROM m) AND manifest_digest = $2)
       SELECT EXISTS (SELECT 1 FROM m) AS removed`,
      [repo, digest],
    );
    return rows[0]!.removed;
  }

  async listReferrers(repo: string, subject: string, artifactType?: string): Promise<Referrer[]> {
    const { rows } = await this.pool.query<ManifestRow>(
      `SELECT ${MANIFEST_COLUMNS} FROM manifests m JOIN repos r ON r.id = m.repo_id
       WHERE r.name = $1 AND m.subject = $2 ORDER BY m.created_at, m.digest`,
      [repo, subject],
    );
    return toReferrers(rows, artifactType);
  }

  async createUpload(session: { id: string; repo: string; owner: string }, quota: UploadSessionQuota): Promise<CreateUploadOutcome> {
    const now = Date.now();
    // Counted and inserted under one lock, by every process: two requests cannot both take the last slot.
    return inTransaction(this.pool, async (client): Promise<CreateUploadOutcome> => {
      await client.query('SELECT pg_advisory_xact_lock($1, $2)', LOCKS.uploadQuota);
      const count = async (sql: string, params: unknown[]) => Number((await client.query<{ n: string }>(sql, params)).rows[0]!.n);
      const ownerOpen = await count('SELECT COUNT(*) AS n FROM uploads WHERE owner = $1', [session.owner]);
      if (ownerOpen >= quota.perOwner) return { created: false, limit: 'perOwner', open: ownerOpen };
      const open = await count('SELECT COUNT(*) AS n FROM uploads', []);
      if (open >= quota.total) return { created: false, limit: 'total', open };
      await client.query('INSERT INTO uploads (id, repo, owner, started, created_at, updated_at) VALUES ($1, $2, $3, 0, $4, $4)', [
        session.id,
        session.repo,
        session.owner,
        now,
      ]);
      return { created: true };
    });
  }

  async getUpload(id: string): Promise<UploadSession | null> {
    const { rows } = await this.pool.query<UploadRow>(`SELECT ${UPLOAD_COLUMNS} FROM uploads WHERE id = $1`, [id]);
    return rows[0] ? toUploadSession(rows[0]) : null;
  }

  async countUploads(): Promise<number> {
    return Number((await this.pool.query<{ n: string }>('SELECT COUNT(*) AS n FROM uploads')).rows[0]!.n);
  }

  async touchUpload(id: string): Promise<void> {
    await this.pool.query('UPDATE uploads SET updated_at = $1, started = 1 WHERE id = $2', [Date.now(), id]);
  }

  async deleteUpload(id: string): Promise<void> {
    await this.pool.query('DELETE FROM uploads WHERE id = $1', [id]);
  }

  async listExpiredUploads(expiry: UploadExpiry): Promise<UploadSession[]> {
    const { rows } = await this.pool.query<UploadRow>(
      `SELECT ${UPLOAD_COLUMNS} FROM uploads WHERE updated_at < $1 UNION SELECT ${UPLOAD_COLUMNS} FROM uploads WHERE started = 0 AND created_at < $2`,
      [expiry.idleBefore, expiry.emptyBefore],
    );
    return rows.map(toUploadSession);
  }
}
