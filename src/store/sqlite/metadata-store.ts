// MetadataStore on SQLite (better-sqlite3, WAL). Calls are synchronous inside
// and exposed as promises so a networked database can implement the same interface.
import { ReferencesMissingError } from '../errors.js';
import type { SqliteDatabase } from './db.js';
import type {
  ManifestRecord,
  MetadataStore,
  Page,
  PutManifestInput,
  Referrer,
  UploadSession,
} from '../types.js';

interface ManifestRow {
  name: string;
  digest: string;
  media_type: string;
  size: number;
  artifact_type: string | null;
  config_media_type: string | null;
  subject: string | null;
  annotations: string | null;
  created_at: number;
}

export class SqliteMetadataStore implements MetadataStore {
  private readonly s;

  constructor(readonly db: SqliteDatabase) {
    this.s = {
      repoId: db.prepare<[string], { id: number }>('SELECT id FROM repos WHERE name = ?'),
      insertRepo: db.prepare('INSERT OR IGNORE INTO repos (name, created_at) VALUES (?, ?)'),
      listRepos: db.prepare<[string, number], { name: string }>('SELECT name FROM repos WHERE name > ? ORDER BY name LIMIT ?'),
      insertBlob: db.prepare('INSERT OR IGNORE INTO blobs (digest, size, created_at) VALUES (?, ?, ?)'),
      // created_at is refreshed on every link: the GC grace period counts from the last upload or mount.
      linkBlob: db.prepare(
        'INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES (?, ?, ?) ON CONFLICT (repo_id, digest) DO UPDATE SET created_at = excluded.created_at',
      ),
      repoBlobSize: db.prepare<[string, string], { size: number }>(
        `SELECT b.size FROM repo_blobs rb JOIN repos r ON r.id = rb.repo_id JOIN blobs b ON b.digest = rb.digest
         WHERE r.name = ? AND rb.digest = ?`,
      ),
      unlinkBlob: db.prepare('DELETE FROM repo_blobs WHERE repo_id = (SELECT id FROM repos WHERE name = ?) AND digest = ?'),
      blobSize: db.prepare<[string], { size: number }>('SELECT size FROM blobs WHERE digest = ?'),
      upsertManifest: db.prepare(
        `INSERT INTO manifests (repo_id, digest, media_type, size, artifact_type, config_media_type, subject, annotations, created_at)
         VALUES (@repoId, @digest, @mediaType, @size, @artifactType, @configMediaType, @subject, @annotations, @now)
         ON CONFLICT (repo_id, digest) DO NOTHING`,
      ),
      // GC safety (src/gc/collector.ts, rule 2a): references are re-checked inside the insert transaction.
      hasLinkedBlob: db.prepare<[number, string], { one: number }>(
        'SELECT 1 AS one FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest WHERE rb.repo_id = ? AND rb.digest = ?',
      ),
      hasManifest: db.prepare<[number, string], { one: number }>('SELECT 1 AS one FROM manifests WHERE repo_id = ? AND digest = ?'),
      insertRef: db.prepare('INSERT OR IGNORE INTO manifest_refs (repo_id, manifest_digest, child_digest, kind) VALUES (?, ?, ?, ?)'),
      getManifest: db.prepare<[string, string], ManifestRow>(
        `SELECT r.name, m.digest, m.media_type, m.size, m.artifact_type, m.config_media_type, m.subject, m.annotations, m.created_at
         FROM manifests m JOIN repos r ON r.id = m.repo_id WHERE r.name = ? AND m.digest = ?`,
      ),
      upsertTag: db.prepare(
        `INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`,
      ),
      resolveTag: db.prepare<[string, string], { digest: string }>(
        'SELECT t.digest FROM tags t JOIN repos r ON r.id = t.repo_id WHERE r.name = ? AND t.name = ?',
      ),
      listTags: db.prepare<[string, string, number], { name: string }>(
        'SELECT t.name FROM tags t JOIN repos r ON r.id = t.repo_id WHERE r.name = ? AND t.name > ? ORDER BY t.name LIMIT ?',
      ),
      tagsOf: db.prepare<[string, string], { name: string }>(
        'SELECT t.name FROM tags t JOIN repos r ON r.id = t.repo_id WHERE r.name = ? AND t.digest = ? ORDER BY t.name',
      ),
      deleteTag: db.prepare('DELETE FROM tags WHERE repo_id = (SELECT id FROM repos WHERE name = ?) AND name = ?'),
      deleteTagsOf: db.prepare('DELETE FROM tags WHERE repo_id = ? AND digest = ?'),
      deleteManifest: db.prepare('DELETE FROM manifests WHERE repo_id = ? AND digest = ?'),
      deleteRefs: db.prepare('DELETE FROM manifest_refs WHERE repo_id = ? AND manifest_digest = ?'),
      referrers: db.prepare<[string, string], ManifestRow>(
        `SELECT r.name, m.digest, m.media_type, m.size, m.artifact_type, m.config_media_type, m.subject, m.annotations, m.created_at
         FROM manifests m JOIN repos r ON r.id = m.repo_id WHERE r.name = ? AND m.subject = ? ORDER BY m.created_at, m.digest`,
      ),
      createUpload: db.prepare('INSERT INTO uploads (id, repo, created_at, updated_at) VALUES (?, ?, ?, ?)'),
      getUpload: db.prepare<[string], { id: string; repo: string; created_at: number; updated_at: number }>(
        'SELECT id, repo, created_at, updated_at FROM uploads WHERE id = ?',
      ),
      touchUpload: db.prepare('UPDATE uploads SET updated_at = ? WHERE id = ?'),
      deleteUpload: db.prepare('DELETE FROM uploads WHERE id = ?'),
      staleUploads: db.prepare<[number], { id: string; repo: string; created_at: number; updated_at: number }>(
        'SELECT id, repo, created_at, updated_at FROM uploads WHERE updated_at < ?',
      ),
    };
  }

  private ensureRepo(name: string): number {
    const found = this.s.repoId.get(name);
    if (found) return found.id;
    this.s.insertRepo.run(name, Date.now());
    return this.s.repoId.get(name)!.id;
  }

  async listRepos(page: Page): Promise<string[]> {
    return this.s.listRepos.all(page.last ?? '', page.limit ?? -1).map((r) => r.name);
  }

  async repoExists(repo: string): Promise<boolean> {
    return this.s.repoId.get(repo) !== undefined;
  }

  async linkBlob(repo: string, digest: string, size: number): Promise<void> {
    const now = Date.now();
    this.db.transaction(() => {
      const repoId = this.ensureRepo(repo);
      this.s.insertBlob.run(digest, size, now);
      this.s.linkBlob.run(repoId, digest, now);
    })();
  }

  async repoBlobSize(repo: string, digest: string): Promise<number | null> {
    return this.s.repoBlobSize.get(repo, digest)?.size ?? null;
  }

  async unlinkBlob(repo: string, digest: string): Promise<boolean> {
    return this.s.unlinkBlob.run(repo, digest).changes > 0;
  }

  async blobSize(digest: string): Promise<number | null> {
    return this.s.blobSize.get(digest)?.size ?? null;
  }

  async putManifest(input: PutManifestInput): Promise<void> {
    const now = Date.now();
    this.db.transaction(() => {
      const repoId = this.ensureRepo(input.repo);
      const gone = input.references.filter((ref) =>
        ref.kind === 'manifest' ? !this.s.hasManifest.get(repoId, ref.digest) : !this.s.hasLinkedBlob.get(repoId, ref.digest),
      );
      if (gone.length > 0) throw new ReferencesMissingError(input.repo, gone.map((r) => r.digest));
      this.s.insertBlob.run(input.digest, input.size, now);
      this.s.upsertManifest.run({
        repoId,
        digest: input.digest,
        mediaType: input.mediaType,
        size: input.size,
        artifactType: input.artifactType,
        configMediaType: input.configMediaType,
        subject: input.subject,
        annotations: input.annotations ? JSON.stringify(input.annotations) : null,
        now,
      });
      for (const ref of input.references) this.s.insertRef.run(repoId, input.digest, ref.digest, ref.kind);
      if (input.tag !== undefined) this.s.upsertTag.run(repoId, input.tag, input.digest, now);
    })();
  }

  async getManifest(repo: string, digest: string): Promise<ManifestRecord | null> {
    const row = this.s.getManifest.get(repo, digest);
    return row ? toManifestRecord(row) : null;
  }

  async resolveTag(repo: string, tag: string): Promise<string | null> {
    return this.s.resolveTag.get(repo, tag)?.digest ?? null;
  }

  async listTags(repo: string, page: Page): Promise<string[]> {
    return this.s.listTags.all(repo, page.last ?? '', page.limit ?? -1).map((r) => r.name);
  }

  async tagsOf(repo: string, digest: string): Promise<string[]> {
    return this.s.tagsOf.all(repo, digest).map((r) => r.name);
  }

  async deleteTag(repo: string, tag: string): Promise<boolean> {
    return this.s.deleteTag.run(repo, tag).changes > 0;
  }

  async deleteManifest(repo: string, digest: string): Promise<boolean> {
    return this.db.transaction(() => {
      const repoId = this.s.repoId.get(repo)?.id;
      if (repoId === undefined) return false;
      const removed = this.s.deleteManifest.run(repoId, digest).changes > 0;
      if (removed) {
        this.s.deleteTagsOf.run(repoId, digest);
        this.s.deleteRefs.run(repoId, digest);
      }
      return removed;
    })();
  }

  async listReferrers(repo: string, subject: string, artifactType?: string): Promise<Referrer[]> {
    return this.s.referrers
      .all(repo, subject)
      .map(toManifestRecord)
      .map((m) => ({
        mediaType: m.mediaType,
        digest: m.digest,
        size: m.size,
        // Per image-spec: a manifest without artifactType is typed by its config media type.
        artifactType: m.artifactType ?? m.configMediaType,
        annotations: m.annotations,
      }))
      .filter((r) => artifactType === undefined || r.artifactType === artifactType);
  }

  async createUpload(id: string, repo: string): Promise<void> {
    const now = Date.now();
    this.s.createUpload.run(id, repo, now, now);
  }

  async getUpload(id: string): Promise<UploadSession | null> {
    const row = this.s.getUpload.get(id);
    return row ? { id: row.id, repo: row.repo, createdAt: row.created_at, updatedAt: row.updated_at } : null;
  }

  async touchUpload(id: string): Promise<void> {
    this.s.touchUpload.run(Date.now(), id);
  }

  async deleteUpload(id: string): Promise<void> {
    this.s.deleteUpload.run(id);
  }

  async listUploadsOlderThan(cutoffMs: number): Promise<UploadSession[]> {
    return this.s.staleUploads
      .all(cutoffMs)
      .map((row) => ({ id: row.id, repo: row.repo, createdAt: row.created_at, updatedAt: row.updated_at }));
  }
}

function toManifestRecord(row: ManifestRow): ManifestRecord {
  return {
    repo: row.name,
    digest: row.digest,
    mediaType: row.media_type,
    size: row.size,
    artifactType: row.artifact_type,
    configMediaType: row.config_media_type,
    subject: row.subject,
    annotations: row.annotations ? (JSON.parse(row.annotations) as Record<string, string>) : null,
    createdAt: row.created_at,
  };
}
