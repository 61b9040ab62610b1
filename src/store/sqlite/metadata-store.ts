// MetadataStore on SQLite (better-sqlite3, WAL). Calls are synchronous inside
// and exposed as promises so a networked database can implement the same interface.
import { ReferencesMissingError } from '../errors.js';
import { MANIFEST_COLUMNS, prefixEnd, toManifestRecord, toReferrers, toUploadSession, type ManifestRow, type UploadRow } from '../sql-rows.js';
import type { SqliteDatabase } from './db.js';
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

export class SqliteMetadataStore implements MetadataStore {
  private readonly s;

  constructor(readonly db: SqliteDatabase) {
    this.s = {
      repoId: db.prepare<[string], { id: number }>('SELECT id FROM repos WHERE name = ?'),
      insertRepo: db.prepare('INSERT OR IGNORE INTO repos (name, created_at) VALUES (?, ?)'),
      listRepos: db.prepare<[string, number], { name: string }>('SELECT name FROM repos WHERE name > ? ORDER BY name LIMIT ?'),
      // One lower bound each: given two, SQLite may seek by the looser one and scan every name in between.
      listReposFrom: db.prepare<[string, string, number], { name: string }>('SELECT name FROM repos WHERE name >= ? AND name < ? ORDER BY name LIMIT ?'),
      listReposAfter: db.prepare<[string, string, number], { name: string }>('SELECT name FROM repos WHERE name > ? AND name < ? ORDER BY name LIMIT ?'),
      anyRepoWithBlob: db.prepare<[string], { name: string }>(
        'SELECT r.name FROM repo_blobs rb JOIN repos r ON r.id = rb.repo_id JOIN blobs b ON b.digest = rb.digest WHERE rb.digest = ? LIMIT 1',
      ),
      // Walks the caller's own repositories (a name range) and probes each one's primary key: never other tenants' rows.
      repoInRangeWithBlob: db.prepare<[string, string, string], { name: string }>(
        `SELECT r.name FROM repos r JOIN repo_blobs rb ON rb.repo_id = r.id AND rb.digest = ? JOIN blobs b ON b.digest = rb.digest
         WHERE r.name >= ? AND r.name < ? LIMIT 1`,
      ),
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
        `SELECT ${MANIFEST_COLUMNS}
         FROM manifests m JOIN repos r ON r.id = m.repo_id WHERE r.name = ? AND m.digest = ?`,
      ),
      upsertTag: db.prepare(
        `INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`,
      ),
      getTaggedManifest: db.prepare<[string, string], ManifestRow>(
        `SELECT ${MANIFEST_COLUMNS}
         FROM tags t JOIN repos r ON r.id = t.repo_id JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
         WHERE r.name = ? AND t.name = ?`,
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
        `SELECT ${MANIFEST_COLUMNS}
         FROM manifests m JOIN repos r ON r.id = m.repo_id WHERE r.name = ? AND m.subject = ? ORDER BY m.created_at, m.digest`,
      ),
      createUpload: db.prepare('INSERT INTO uploads (id, repo, owner, started, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)'),
      countUploads: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM uploads'),
      countOwnerUploads: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM uploads WHERE owner = ?'),
      getUpload: db.prepare<[string], UploadRow>('SELECT id, repo, owner, started, created_at, updated_at FROM uploads WHERE id = ?'),
      touchUpload: db.prepare('UPDATE uploads SET updated_at = ?, started = 1 WHERE id = ?'),
      deleteUpload: db.prepare('DELETE FROM uploads WHERE id = ?'),
      expiredUploads: db.prepare<[number, number], UploadRow>(
        `SELECT id, repo, owner, started, created_at, updated_at FROM uploads WHERE updated_at < ?
         UNION SELECT id, repo, owner, started, created_at, updated_at FROM uploads WHERE started = 0 AND created_at < ?`,
      ),
    };
  }

  private ensureRepo(name: string): number {
    const found = this.s.repoId.get(name);
    if (found) return found.id;
    this.s.insertRepo.run(name, Date.now());
    return this.s.repoId.get(name)!.id;
  }

  async listRepos(page: Page, scope: RepoScope = { all: true }): Promise<string[]> {
    const after = page.last ?? '';
    const limit = page.limit ?? -1;
    if (scope.all) return this.s.listRepos.all(after, limit).map((r) => r.name);
    // One index range per prefix, each read no further than the page needs, then merged.
    const found = new Set<string>();
    for (const prefix of scope.prefixes) {
      const rows = after < prefix ? this.s.listReposFrom.all(prefix, prefixEnd(prefix), limit) : this.s.listReposAfter.all(after, prefixEnd(prefix), limit);
      for (const row of rows) found.add(row.name);
    }
    const names = scope.names.filter((name) => name > after && !found.has(name));
    for (const name of names) if (this.s.repoId.get(name)) found.add(name);
    const sorted = [...found].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return limit < 0 ? sorted : sorted.slice(0, limit);
  }

  async findRepoWithBlob(digest: string, scope: RepoScope): Promise<string | null> {
    if (scope.all) return this.s.anyRepoWithBlob.get(digest)?.name ?? null;
    for (const prefix of scope.prefixes) {
      const row = this.s.repoInRangeWithBlob.get(digest, prefix, prefixEnd(prefix));
      if (row) return row.name;
    }
    for (const name of scope.names) {
      if (this.s.repoBlobSize.get(name, digest)) return name;
    }
    return null;
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
    }).immediate();
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
    }).immediate();
  }

  async getManifest(repo: string, digest: string): Promise<ManifestRecord | null> {
    const row = this.s.getManifest.get(repo, digest);
    return row ? toManifestRecord(row) : null;
  }

  async resolveTag(repo: string, tag: string): Promise<string | null> {
    return this.s.resolveTag.get(repo, tag)?.digest ?? null;
  }

  async getTaggedManifest(repo: string, tag: string): Promise<ManifestRecord | null> {
    const row = this.s.getTaggedManifest.get(repo, tag);
    return row ? toManifestRecord(row) : null;
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
    }).immediate();
  }

  async listReferrers(repo: string, subject: string, artifactType?: string): Promise<Referrer[]> {
    return toReferrers(this.s.referrers.all(repo, subject), artifactType);
  }

  async createUpload(session: { id: string; repo: string; owner: string }, quota: UploadSessionQuota): Promise<CreateUploadOutcome> {
    const now = Date.now();
    // One transaction: two requests racing for the last slot cannot both get it.
    return this.db.transaction((): CreateUploadOutcome => {
      const ownerOpen = this.s.countOwnerUploads.get(session.owner)!.n;
      if (ownerOpen >= quota.perOwner) return { created: false, limit: 'perOwner', open: ownerOpen };
      const open = this.s.countUploads.get()!.n;
      if (open >= quota.total) return { created: false, limit: 'total', open };
      this.s.createUpload.run(session.id, session.repo, session.owner, now, now);
      return { created: true };
    }).immediate();
  }

  async getUpload(id: string): Promise<UploadSession | null> {
    const row = this.s.getUpload.get(id);
    return row ? toUploadSession(row) : null;
  }

  async countUploads(): Promise<number> {
    return this.s.countUploads.get()!.n;
  }

  async touchUpload(id: string): Promise<void> {
    this.s.touchUpload.run(Date.now(), id);
  }

  async deleteUpload(id: string): Promise<void> {
    this.s.deleteUpload.run(id);
  }

  async listExpiredUploads(expiry: UploadExpiry): Promise<UploadSession[]> {
    return this.s.expiredUploads.all(expiry.idleBefore, expiry.emptyBefore).map(toUploadSession);
  }
}
