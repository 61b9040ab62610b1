// GcStore on SQLite. Synchronous inside on purpose: better-sqlite3 runs a
// transaction to completion on the JS thread, so no request handler of this
// process can interleave with snapshot + mark + delete, and a guarded sweep
// step (check, then unlink) runs in one tick. Only one process uses a SQLite
// data directory (the pid lock), so that is all the exclusion needed; see
// src/gc/collector.ts.
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
import type { SqliteDatabase } from './db.js';

export class SqliteGcStore implements GcStore {
  private readonly s;

  constructor(private readonly db: SqliteDatabase) {
    this.s = {
      repos: db.prepare<[], GcRepoRow>('SELECT id, name FROM repos'),
      manifests: db.prepare<[], GcManifestRow>(
        'SELECT repo_id AS repoId, digest, size, media_type AS mediaType, subject, created_at AS createdAt FROM manifests',
      ),
      refs: db.prepare<[], GcRefRow>(
        'SELECT repo_id AS repoId, manifest_digest AS manifestDigest, child_digest AS childDigest, kind FROM manifest_refs',
      ),
      tags: db.prepare<[], GcTagRow>(
        `SELECT t.repo_id AS repoId, t.name, t.digest, t.updated_at AS updatedAt, p.pulled_at AS pulledAt
         FROM tags t JOIN repos r ON r.id = t.repo_id LEFT JOIN tag_pulls p ON p.repo = r.name AND p.tag = t.name`,
      ),
      links: db.prepare<[], GcLinkRow>('SELECT repo_id AS repoId, digest, created_at AS createdAt FROM repo_blobs'),
      blobs: db.prepare<[], GcBlobRow>('SELECT digest, size, created_at AS createdAt FROM blobs'),
      activeJobs: db.prepare<[], { key: string; payload: string }>(`SELECT key, payload FROM jobs WHERE status IN ('queued', 'running')`),
      images: db.prepare<[], GcImageRow>(
        `SELECT digest, COALESCE((SELECT repo FROM image_names n WHERE n.digest = images.digest ORDER BY updated_at DESC LIMIT 1), '') AS repo FROM images`,
      ),
      imageNames: db.prepare<[], GcImageNameRow>('SELECT repo, tag, digest, index_digest AS indexDigest, updated_at AS updatedAt FROM image_names'),

      deleteTag: db.prepare('DELETE FROM tags WHERE repo_id = ? AND name = ? AND digest = ?'),
      deleteManifest: db.prepare('DELETE FROM manifests WHERE repo_id = ? AND digest = ?'),
      deleteRefs: db.prepare('DELETE FROM manifest_refs WHERE repo_id = ? AND manifest_digest = ?'),
      deleteTagsOf: db.prepare('DELETE FROM tags WHERE repo_id = ? AND digest = ?'),
      deleteLink: db.prepare('DELETE FROM repo_blobs WHERE repo_id = ? AND digest = ?'),
      deleteBlob: db.prepare('DELETE FROM blobs WHERE digest = ?'),
      deleteRepo: db.prepare(
        `DELETE FROM repos WHERE id = @id AND NOT EXISTS (SELECT 1 FROM manifests WHERE repo_id = @id)
         AND NOT EXISTS (SELECT 1 FROM repo_blobs WHERE repo_id = @id) AND NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = @id)`,
      ),
      // An image named again since the snapshot (another process's push, on PostgreSQL) stays for the next run.
      deleteImage: db.prepare('DELETE FROM images WHERE digest = ? AND NOT EXISTS (SELECT 1 FROM image_names n WHERE n.digest = images.digest)'),
      // A repo whose manifest (an image or an index of it) is collected no longer names the image (other repos may still).
      deleteImageNameOf: db.prepare(
        'DELETE FROM image_names WHERE repo = (SELECT name FROM repos WHERE id = @repoId) AND (digest = @digest OR index_digest = @digest)',
      ),
      deleteStaleImageName: db.prepare(
        'DELETE FROM image_names WHERE repo = @repo AND tag = @tag AND digest = @digest AND index_digest = @indexDigest AND updated_at <= @updatedAt',
      ),
      deleteImageNameIn: db.prepare('DELETE FROM image_names WHERE repo = @repo AND (digest = @digest OR index_digest = @digest)'),
      deleteFinishedJob: db.prepare(`DELETE FROM jobs WHERE key = ? AND status NOT IN ('queued', 'running')`),
      deleteStalePulls: db.prepare(
        'DELETE FROM tag_pulls WHERE NOT EXISTS (SELECT 1 FROM tags t JOIN repos r ON r.id = t.repo_id WHERE r.name = tag_pulls.repo AND t.name = tag_pulls.tag)',
      ),

      blobRow: db.prepare<[string], { size: number }>('SELECT size FROM blobs WHERE digest = ?'),
      upload: db.prepare<[string], { id: string }>('SELECT id FROM uploads WHERE id = ?'),
      staleUploads: db.prepare<[number], UploadRow>('SELECT id, repo, updated_at AS updatedAt FROM uploads WHERE updated_at < ?'),
      allUploads: db.prepare<[], UploadRow>('SELECT id, repo, updated_at AS updatedAt FROM uploads'),
      deleteUpload: db.prepare('DELETE FROM uploads WHERE id = ?'),
      image: db.prepare<[string], { digest: string }>('SELECT digest FROM images WHERE digest = ?'),
      imageDiskSize: db.prepare<[string], { disk_size: number | null }>('SELECT disk_size FROM images WHERE digest = ?'),
      job: db.prepare<[string], { status: string }>('SELECT status FROM jobs WHERE key = ?'),
      upsertPull: db.prepare(
        'INSERT INTO tag_pulls (repo, tag, pulled_at) VALUES (?, ?, ?) ON CONFLICT (repo, tag) DO UPDATE SET pulled_at = max(pulled_at, excluded.pulled_at)',
      ),
    };
  }

  private readonly view: GcPointView = {
    blobRowExists: (digest) => this.s.blobRow.get(digest) !== undefined,
    // One process per SQLite data directory: its pins are all in its own PinStore.
    pinned: () => false,
    uploadSessionExists: (id) => this.s.upload.get(id) !== undefined,
    imageWanted: (digest) => this.s.image.get(digest) !== undefined || this.view.bakeActive(digest),
    bakeActive: (digest) => {
      const status = this.s.job.get(`bake:${digest}`)?.status;
      return status === 'queued' || status === 'running';
    },
  };

  /** The pid lock keeps other processes out; runs of this one queue in the collector. */
  async runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  async collect<T>(decide: (snapshot: GcSnapshot) => GcDecision<T>): Promise<T> {
    return this.db.transaction(() => {
      const { result, deletion } = decide(this.snapshot());
      if (deletion) this.apply(deletion);
      return result;
    }).immediate();
  }

  async read(): Promise<GcSnapshot> {
    return this.db.transaction(() => this.snapshot())();
  }

  /** The checks run against the database as `fn` asks; nothing else runs until `fn` returns. */
  async guard<T>(_subjects: GcSubjects, fn: (view: GcPointView) => T): Promise<T> {
    return fn(this.view);
  }

  private snapshot(): GcSnapshot {
    return {
      repos: this.s.repos.all(),
      manifests: this.s.manifests.all(),
      refs: this.s.refs.all(),
      tags: this.s.tags.all(),
      links: this.s.links.all(),
      blobs: this.s.blobs.all(),
      jobRoots: jobRootsOf(this.s.activeJobs.all()),
      images: this.s.images.all(),
      imageNames: this.s.imageNames.all(),
      pinned: [],
    };
  }

  private apply(d: GcDeletion): void {
    for (const t of d.tags) this.s.deleteTag.run(t.repoId, t.name, t.digest);
    for (const m of d.manifests) {
      this.s.deleteManifest.run(m.repoId, m.digest);
      this.s.deleteRefs.run(m.repoId, m.digest);
      this.s.deleteTagsOf.run(m.repoId, m.digest);
      this.s.deleteImageNameOf.run({ digest: m.digest, repoId: m.repoId });
    }
    for (const l of d.links) this.s.deleteLink.run(l.repoId, l.digest);
    for (const b of d.blobs) this.s.deleteBlob.run(b);
    for (const r of d.repos) this.s.deleteRepo.run({ id: r });
    for (const n of d.imageNames ?? []) this.s.deleteImageNameIn.run(n);
    for (const n of d.staleImageNames ?? []) this.s.deleteStaleImageName.run(n);
    for (const i of d.images) {
      if (this.s.deleteImage.run(i).changes > 0) this.s.deleteFinishedJob.run(`bake:${i}`);
    }
    if (d.tags.length > 0 || d.manifests.length > 0 || d.repos.length > 0) this.s.deleteStalePulls.run();
  }

  async uploadsIdleSince(cutoffMs: number): Promise<UploadRow[]> {
    return this.s.staleUploads.all(cutoffMs);
  }

  async uploads(): Promise<UploadRow[]> {
    return this.s.allUploads.all();
  }

  async deleteUpload(id: string): Promise<void> {
    this.s.deleteUpload.run(id);
  }

  async deleteBlobRows(digests: readonly string[]): Promise<void> {
    this.db.transaction(() => {
      for (const d of digests) this.s.deleteBlob.run(d);
    }).immediate();
  }

  async bakeStatus(digest: string): Promise<string | null> {
    return this.s.job.get(`bake:${digest}`)?.status ?? null;
  }

  async imageDiskSize(digest: string): Promise<number | null> {
    return this.s.imageDiskSize.get(digest)?.disk_size ?? null;
  }

  async recordPulls(entries: Iterable<readonly [string, string, number]>): Promise<void> {
    this.db.transaction(() => {
      for (const [repo, tag, at] of entries) this.s.upsertPull.run(repo, tag, at);
    }).immediate();
  }

  async integrityCheck(): Promise<string[]> {
    const rows = this.db.pragma('integrity_check') as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).filter((r) => r !== 'ok').map((line) => `SQLite integrity check: ${line}`);
  }
}
