// GcStore on PostgreSQL, for several processes sharing one database. One
// collection at a time across processes (session advisory lock `gcRun`).
// Snapshot + delete, and every guarded sweep step, hold the `reach` lock
// exclusive: writers that make content reachable (blob links, manifest
// inserts, pins) hold it shared for their transaction, so none commits in
// between. See src/gc/collector.ts.
//
// Bake jobs, image records and image names are read in the same snapshot
// and deleted in the same transaction as the registry rows.
import type {
  GcBlobRow,
  GcDecision,
  GcDeletion,
  GcImageNameRow,
  GcImageRow,
  GcLinkRow,
  GcManifestRow,
  GcPointView,
  GcRefRow,
  GcRepoRow,
  GcSnapshot,
  GcStore,
  GcSubjects,
  GcTagRow,
  UploadRow,
} from '../gc-store.js';
import { jobRootsOf } from '../gc-store.js';
import { LOCKS, type PgClient, type PgPool } from './db.js';

export class PostgresGcStore implements GcStore {
  constructor(private readonly pool: PgPool) {}

  async runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.holding(LOCKS.gcRun, () => fn());
  }

  async collect<T>(decide: (snapshot: GcSnapshot) => GcDecision<T>): Promise<T> {
    return this.holding(LOCKS.reach, async (client) => {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      try {
        const { result, deletion } = decide(await this.snapshot(client));
        if (deletion) await this.apply(client, deletion);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  async read(): Promise<GcSnapshot> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const snapshot = await this.snapshot(client);
      await client.query('COMMIT');
      return snapshot;
    } finally {
      client.release();
    }
  }

  async guard<T>(subjects: GcSubjects, fn: (view: GcPointView) => T): Promise<T> {
    return this.holding(LOCKS.reach, async (client) => {
      const now = Date.now();
      const bakeKeys = (subjects.images ?? []).map((d) => `bake:${d}`);
      const [blobs, pins, uploads, activeBakes, images] = await Promise.all([
        subjects.blobs?.length ? column(client, 'SELECT digest AS v FROM blobs WHERE digest = ANY($1)', [subjects.blobs]) : new Set<string>(),
        subjects.blobs?.length
          ? column(client, 'SELECT DISTINCT digest AS v FROM digest_pins WHERE digest = ANY($1) AND expires_at > $2', [subjects.blobs, now])
          : new Set<string>(),
        subjects.uploads?.length ? column(client, 'SELECT id AS v FROM uploads WHERE id = ANY($1)', [subjects.uploads]) : new Set<string>(),
        bakeKeys.length ? column(client, `SELECT key AS v FROM jobs WHERE key = ANY($1) AND status IN ('queued', 'running')`, [bakeKeys]) : new Set<string>(),
        subjects.images?.length ? column(client, 'SELECT digest AS v FROM images WHERE digest = ANY($1)', [subjects.images]) : new Set<string>(),
      ]);
      const bakeActive = (d: string) => activeBakes.has(`bake:${d}`);
      return fn({
        blobRowExists: (d) => blobs.has(d),
        pinned: (d) => pins.has(d),
        uploadSessionExists: (id) => uploads.has(id),
        imageWanted: (d) => images.has(d) || bakeActive(d),
        bakeActive,
      });
    });
  }

  async uploadsIdleSince(cutoffMs: number): Promise<UploadRow[]> {
    return (await this.pool.query<UploadRow>('SELECT id, repo, updated_at AS "updatedAt" FROM uploads WHERE updated_at < $1', [cutoffMs])).rows;
  }

  async uploads(): Promise<UploadRow[]> {
    return (await this.pool.query<UploadRow>('SELECT id, repo, updated_at AS "updatedAt" FROM uploads')).rows;
  }

  async deleteUpload(id: string): Promise<void> {
    await this.pool.query('DELETE FROM uploads WHERE id = $1', [id]);
  }

  async deleteBlobRows(digests: readonly string[]): Promise<void> {
    await this.pool.query('DELETE FROM blobs WHERE digest = ANY($1)', [digests]);
  }

  async bakeStatus(digest: string): Promise<string | null> {
    const { rows } = await this.pool.query<{ status: string }>('SELECT status FROM jobs WHERE key = $1', [`bake:${digest}`]);
    return rows[0]?.status ?? null;
  }

  async imageDiskSize(digest: string): Promise<number | null> {
    const { rows } = await this.pool.query<{ disk_size: number | null }>('SELECT disk_size FROM images WHERE digest = $1', [digest]);
    return rows[0]?.disk_size ?? null;
  }

  async recordPulls(entries: Iterable<readonly [string, string, number]>): Promise<void> {
    const list = [...entries];
    if (list.length === 0) return;
    await this.pool.query(
      `INSERT INTO tag_pulls (repo, tag, pulled_at) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
       ON CONFLICT (repo, tag) DO UPDATE SET pulled_at = greatest(tag_pulls.pulled_at, excluded.pulled_at)`,
      [list.map((e) => e[0]), list.map((e) => e[1]), list.map((e) => e[2])],
    );
  }

  /** Rows that name a repository id no repository has (the schema has no foreign keys, for the collector's bulk deletes). */
  async integrityCheck(): Promise<string[]> {
    const { rows } = await this.pool.query<{ what: string; n: number }>(
      `SELECT 'manifests' AS what, count(*)::int AS n FROM manifests WHERE repo_id NOT IN (SELECT id FROM repos)
       UNION ALL SELECT 'tags', count(*)::int FROM tags WHERE repo_id NOT IN (SELECT id FROM repos)
       UNION ALL SELECT 'repo links', count(*)::int FROM repo_blobs WHERE repo_id NOT IN (SELECT id FROM repos)`,
    );
    return rows.filter((r) => r.n > 0).map((r) => `PostgreSQL: ${r.n} ${r.what} of a repository that no longer exists`);
  }

  /** Runs `fn` on one connection holding the session advisory lock `key` exclusively. */
  private async holding<T>(key: [number, number], fn: (client: PgClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('SELECT pg_advisory_lock($1, $2)', key);
      try {
        return await fn(client);
      } finally {
        await client.query('SELECT pg_advisory_unlock($1, $2)', key);
      }
    } finally {
      client.release();
    }
  }

  private async snapshot(client: PgClient): Promise<GcSnapshot> {
    // One REPEATABLE READ transaction: every query sees the same moment. Sequential: one connection.
    const q = async <R extends object>(sql: string, params: unknown[] = []) => (await client.query<R>(sql, params)).rows;
    const repos = await q<GcRepoRow>('SELECT id, name FROM repos');
    const manifests = await q<GcManifestRow>(
      'SELECT repo_id AS "repoId", digest, size, media_type AS "mediaType", subject, created_at AS "createdAt" FROM manifests',
    );
    const refs = await q<GcRefRow>('SELECT repo_id AS "repoId", manifest_digest AS "manifestDigest", child_digest AS "childDigest", kind FROM manifest_refs');
    const tags = await q<GcTagRow>(
      `SELECT t.repo_id AS "repoId", t.name, t.digest, t.updated_at AS "updatedAt", p.pulled_at AS "pulledAt"
       FROM tags t JOIN repos r ON r.id = t.repo_id LEFT JOIN tag_pulls p ON p.repo = r.name AND p.tag = t.name`,
    );
    const links = await q<GcLinkRow>('SELECT repo_id AS "repoId", digest, created_at AS "createdAt" FROM repo_blobs');
    const blobs = await q<GcBlobRow>('SELECT digest, size, created_at AS "createdAt" FROM blobs');
    const pinned = (await q<{ digest: string }>('SELECT DISTINCT digest FROM digest_pins WHERE expires_at > $1', [Date.now()])).map((r) => r.digest);
    const jobRoots = jobRootsOf(await q<{ key: string; payload: string }>(`SELECT key, payload FROM jobs WHERE status IN ('queued', 'running')`));
    const images = await q<GcImageRow>(
      `SELECT digest, COALESCE((SELECT repo FROM image_names n WHERE n.digest = images.digest ORDER BY updated_at DESC LIMIT 1), '') AS repo FROM images`,
    );
    const imageNames = await q<GcImageNameRow>('SELECT repo, tag, digest, index_digest AS "indexDigest", updated_at AS "updatedAt" FROM image_names');
    return { repos, manifests, refs, tags, links, blobs, jobRoots, images, imageNames, pinned };
  }

  private async apply(client: PgClient, d: GcDeletion): Promise<void> {
    const q = (sql: string, params: unknown[]) => client.query(sql, params);
    if (d.tags.length > 0) {
      await q(
        `DELETE FROM tags t USING unnest($1::bigint[], $2::text[], $3::text[]) AS d(repo_id, name, digest)
         WHERE t.repo_id = d.repo_id AND t.name = d.name AND t.digest = d.digest`,
        [d.tags.map((t) => t.repoId), d.tags.map((t) => t.name), d.tags.map((t) => t.digest)],
      );
    }
    if (d.manifests.length > 0) {
      const params = [d.manifests.map((m) => m.repoId), d.manifests.map((m) => m.digest)];
      const using = 'USING unnest($1::bigint[], $2::text[]) AS d(repo_id, digest) WHERE x.repo_id = d.repo_id AND';
      // A repo whose manifest (an image or an index of it) is collected no longer names the image (other repos may still).
      await q(
        `DELETE FROM image_names x USING unnest($1::bigint[], $2::text[]) AS d(repo_id, digest) JOIN repos r ON r.id = d.repo_id
         WHERE x.repo = r.name AND (x.digest = d.digest OR x.index_digest = d.digest)`,
        params,
      );
      await q(`DELETE FROM manifests x ${using} x.digest = d.digest`, params);
      await q(`DELETE FROM manifest_refs x ${using} x.manifest_digest = d.digest`, params);
      await q(`DELETE FROM tags x ${using} x.digest = d.digest`, params);
    }
    if (d.links.length > 0) {
      await q(
        'DELETE FROM repo_blobs x USING unnest($1::bigint[], $2::text[]) AS d(repo_id, digest) WHERE x.repo_id = d.repo_id AND x.digest = d.digest',
        [d.links.map((l) => l.repoId), d.links.map((l) => l.digest)],
      );
    }
    if (d.blobs.length > 0) await q('DELETE FROM blobs WHERE digest = ANY($1)', [d.blobs]);
    if (d.repos.length > 0) {
      await q(
        `DELETE FROM repos r WHERE r.id = ANY($1) AND NOT EXISTS (SELECT 1 FROM manifests WHERE repo_id = r.id)
         AND NOT EXISTS (SELECT 1 FROM repo_blobs WHERE repo_id = r.id) AND NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = r.id)`,
        [d.repos],
      );
    }
    if (d.tags.length > 0 || d.manifests.length > 0 || d.repos.length > 0) {
      await q(
        'DELETE FROM tag_pulls p WHERE NOT EXISTS (SELECT 1 FROM tags t JOIN repos r ON r.id = t.repo_id WHERE r.name = p.repo AND t.name = p.tag)',
        [],
      );
    }
    for (const n of d.imageNames ?? []) await q('DELETE FROM image_names WHERE repo = $1 AND (digest = $2 OR index_digest = $2)', [n.repo, n.digest]);
    for (const n of d.staleImageNames ?? []) {
      await q('DELETE FROM image_names WHERE repo = $1 AND tag = $2 AND digest = $3 AND index_digest = $4 AND updated_at <= $5', [
        n.repo,
        n.tag,
        n.digest,
        n.indexDigest,
        n.updatedAt,
      ]);
    }
    if (d.images.length > 0) {
      // An image named again since the snapshot (another process's push) stays for the next run; its finished bake goes with it.
      const { rows } = await q(
        'DELETE FROM images i WHERE i.digest = ANY($1) AND NOT EXISTS (SELECT 1 FROM image_names n WHERE n.digest = i.digest) RETURNING digest',
        [d.images],
      );
      const gone = (rows as { digest: string }[]).map((r) => `bake:${r.digest}`);
      if (gone.length > 0) await q(`DELETE FROM jobs WHERE key = ANY($1) AND status NOT IN ('queued', 'running')`, [gone]);
    }
    await q('DELETE FROM digest_pins WHERE expires_at <= $1', [Date.now()]);
  }
}

async function column(client: PgClient, sql: string, params: unknown[]): Promise<Set<string>> {
  return new Set((await client.query<{ v: string }>(sql, params)).rows.map((r) => r.v));
}
