// GcStore on PostgreSQL, for several processes sharing one database. One
// collection at a time across processes (session advisory lock `gcRun`).
// Snapshot + delete, and every guarded sweep step, hold the `reach` lock
// exclusive: writers that make content reachable (blob links, manifest
// inserts, pins) hold it shared for their transaction, so none commits in
// between. See src/gc/collector.ts.
//
// Bake jobs are in PostgreSQL and read in the same snapshot; image records
// still live in the data directory's SQLite database on this backend (their
// store is not on PostgreSQL yet): `bakes` is the SQLite GcStore over them,
// and answers the image rows and the disk checks.
import type {
  GcBlobRow,
  GcDecision,
  GcDeletion,
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

const NO_ROWS: GcDeletion = { tags: [], manifests: [], links: [], blobs: [], repos: [], images: [] };

export class PostgresGcStore implements GcStore {
  constructor(
    private readonly pool: PgPool,
    private readonly bakes: GcStore,
  ) {}

  async runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.holding(LOCKS.gcRun, () => fn());
  }

  async collect<T>(decide: (snapshot: GcSnapshot) => GcDecision<T>): Promise<T> {
    const side = await this.bakes.read();
    return this.holding(LOCKS.reach, async (client) => {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      try {
        const snapshot = { ...(await this.snapshot(client)), images: side.images, imageNames: side.imageNames };
        const { result, deletion } = decide(snapshot);
        if (deletion) await this.apply(client, deletion);
        await client.query('COMMIT');
        const stale = deletion?.staleImageNames ?? [];
        if (deletion && (deletion.images.length > 0 || deletion.manifests.length > 0 || stale.length > 0)) {
          // The image names of deleted manifests live in SQLite with the image records.
          const repoName = new Map(snapshot.repos.map((r) => [r.id, r.name]));
          const imageNames = deletion.manifests.flatMap((m) => {
            const repo = repoName.get(m.repoId);
            return repo === undefined ? [] : [{ repo, digest: m.digest }];
          });
          await this.bakes.collect(() => ({ result: null, deletion: { ...NO_ROWS, images: deletion.images, imageNames, staleImageNames: stale } }));
        }
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  async read(): Promise<GcSnapshot> {
    const side = await this.bakes.read();
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const snapshot = await this.snapshot(client);
      await client.query('COMMIT');
      return { ...snapshot, images: side.images, imageNames: side.imageNames };
    } finally {
      client.release();
    }
  }

  async guard<T>(subjects: GcSubjects, fn: (view: GcPointView) => T): Promise<T> {
    return this.holding(LOCKS.reach, async (client) => {
      const now = Date.now();
      const bakeKeys = (subjects.images ?? []).map((d) => `bake:${d}`);
      const [blobs, pins, uploads, activeBakes] = await Promise.all([
        subjects.blobs?.length ? column(client, 'SELECT digest AS v FROM blobs WHERE digest = ANY($1)', [subjects.blobs]) : new Set<string>(),
        subjects.blobs?.length
          ? column(client, 'SELECT DISTINCT digest AS v FROM digest_pins WHERE digest = ANY($1) AND expires_at > $2', [subjects.blobs, now])
          : new Set<string>(),
        subjects.uploads?.length ? column(client, 'SELECT id AS v FROM uploads WHERE id = ANY($1)', [subjects.uploads]) : new Set<string>(),
        bakeKeys.length ? column(client, `SELECT key AS v FROM jobs WHERE key = ANY($1) AND status IN ('queued', 'running')`, [bakeKeys]) : new Set<string>(),
      ]);
      const bakeActive = (d: string) => activeBakes.has(`bake:${d}`);
      // The SQLite side answers synchronously, inside the same step.
      return this.bakes.guard({ images: subjects.images }, (bakes) =>
        fn({
          blobRowExists: (d) => blobs.has(d),
          pinned: (d) => pins.has(d),
          uploadSessionExists: (id) => uploads.has(id),
          imageWanted: (d) => bakes.imageWanted(d) || bakeActive(d),
          bakeActive,
        }),
      );
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

  imageDiskSize(digest: string): Promise<number | null> {
    return this.bakes.imageDiskSize(digest);
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
    return [
      ...rows.filter((r) => r.n > 0).map((r) => `PostgreSQL: ${r.n} ${r.what} of a repository that no longer exists`),
      ...(await this.bakes.integrityCheck()),
    ];
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

  private async snapshot(client: PgClient): Promise<Omit<GcSnapshot, 'images' | 'imageNames'>> {
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
    return { repos, manifests, refs, tags, links, blobs, jobRoots, pinned };
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
    if (d.images.length > 0) {
      await q(`DELETE FROM jobs WHERE key = ANY($1) AND status NOT IN ('queued', 'running')`, [d.images.map((i) => `bake:${i}`)]);
    }
    await q('DELETE FROM digest_pins WHERE expires_at <= $1', [Date.now()]);
  }
}

async function column(client: PgClient, sql: string, params: unknown[]): Promise<Set<string>> {
  return new Set((await client.query<{ v: string }>(sql, params)).rows.map((r) => r.v));
}
