// What the garbage collector and fsck need from the embedded SQLite database:
// one consistent snapshot of every table that roots or holds content, the
// deletion of what the collector decided is garbage in the same synchronous
// transaction, synchronous point checks for the file sweep, and the last
// pull time of tags (for cache retention).
//
// Synchronous on purpose: better-sqlite3 runs a transaction to completion on
// the JS thread, so no request handler of this process can interleave with
// snapshot + mark + delete. A networked database (PostgreSQL) would need the
// same steps under row or advisory locks instead; see src/gc/collector.ts.
import type { SqliteDatabase } from './sqlite-db.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tag_pulls (
  repo TEXT NOT NULL,
  tag TEXT NOT NULL,
  pulled_at INTEGER NOT NULL,
  PRIMARY KEY (repo, tag)
) WITHOUT ROWID;
`;

export interface GcRepoRow {
  id: number;
  name: string;
}
export interface GcManifestRow {
  repoId: number;
  digest: string;
  size: number;
  mediaType: string;
  subject: string | null;
  createdAt: number;
}
export interface GcRefRow {
  repoId: number;
  manifestDigest: string;
  childDigest: string;
  kind: string;
}
export interface GcTagRow {
  repoId: number;
  name: string;
  digest: string;
  /** Last push of the tag. */
  updatedAt: number;
  /** Last pull by tag, when one was recorded. */
  pulledAt: number | null;
}
export interface GcLinkRow {
  repoId: number;
  digest: string;
  createdAt: number;
}
export interface GcBlobRow {
  digest: string;
  size: number;
  createdAt: number;
}
/** A queued or running job that names a manifest (bake jobs: `{digest, repo}`). */
export interface GcJobRoot {
  key: string;
  repo: string;
  digest: string;
}
export interface GcImageRow {
  digest: string;
  repo: string;
}

export interface GcSnapshot {
  repos: GcRepoRow[];
  manifests: GcManifestRow[];
  refs: GcRefRow[];
  tags: GcTagRow[];
  links: GcLinkRow[];
  blobs: GcBlobRow[];
  jobRoots: GcJobRoot[];
  images: GcImageRow[];
}

/** Rows to delete, as decided by the mark phase. */
export interface GcDeletion {
  tags: { repoId: number; name: string; digest: string }[];
  manifests: { repoId: number; digest: string }[];
  links: { repoId: number; digest: string }[];
  blobs: string[];
  repos: number[];
  /** Image records (and their finished bake jobs) whose disks go. */
  images: string[];
}

export interface UploadRow {
  id: string;
  repo: string;
  updatedAt: number;
}

export class SqliteGcStore {
  private readonly s;

  /** Construct after the metadata, job and image stores: it reads their tables. */
  constructor(private readonly db: SqliteDatabase) {
    db.exec(SCHEMA);
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
      deleteImage: db.prepare('DELETE FROM images WHERE digest = ?'),
      deleteImageNames: db.prepare('DELETE FROM image_names WHERE digest = ?'),
      // A repo whose manifest is collected no longer names the image (other repos may still).
      deleteImageNameOf: db.prepare('DELETE FROM image_names WHERE digest = ? AND repo = (SELECT name FROM repos WHERE id = ?)'),
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

  /**
   * Takes a snapshot, lets `decide` mark it, and deletes what `decide`
   * returns, all in one synchronous transaction. `decide` must not await.
   */
  collect<T>(decide: (snapshot: GcSnapshot) => { result: T; deletion: GcDeletion | null }): T {
    return this.db.transaction(() => {
      const snapshot = this.snapshot();
      const { result, deletion } = decide(snapshot);
      if (deletion) this.apply(deletion);
      return result;
    }).immediate();
  }

  /** A consistent read of every table (for fsck; the collector uses `collect`). */
  read(): GcSnapshot {
    return this.db.transaction(() => this.snapshot())();
  }

  private snapshot(): GcSnapshot {
    const jobRoots: GcJobRoot[] = [];
    for (const job of this.s.activeJobs.all()) {
      try {
        const payload = JSON.parse(job.payload) as { repo?: unknown; digest?: unknown };
        if (typeof payload.repo === 'string' && typeof payload.digest === 'string') jobRoots.push({ key: job.key, repo: payload.repo, digest: payload.digest });
      } catch {
        // not a payload that names a manifest
      }
    }
    return {
      repos: this.s.repos.all(),
      manifests: this.s.manifests.all(),
      refs: this.s.refs.all(),
      tags: this.s.tags.all(),
      links: this.s.links.all(),
      blobs: this.s.blobs.all(),
      jobRoots,
      images: this.s.images.all(),
    };
  }

  private apply(d: GcDeletion): void {
    for (const t of d.tags) this.s.deleteTag.run(t.repoId, t.name, t.digest);
    for (const m of d.manifests) {
      this.s.deleteManifest.run(m.repoId, m.digest);
      this.s.deleteRefs.run(m.repoId, m.digest);
      this.s.deleteTagsOf.run(m.repoId, m.digest);
      this.s.deleteImageNameOf.run(m.digest, m.repoId);
    }
    for (const l of d.links) this.s.deleteLink.run(l.repoId, l.digest);
    for (const b of d.blobs) this.s.deleteBlob.run(b);
    for (const r of d.repos) this.s.deleteRepo.run({ id: r });
    for (const i of d.images) {
      this.s.deleteImage.run(i);
      this.s.deleteImageNames.run(i);
      this.s.deleteFinishedJob.run(`bake:${i}`);
    }
    if (d.tags.length > 0 || d.manifests.length > 0 || d.repos.length > 0) this.s.deleteStalePulls.run();
  }

  // ---- point checks, for the file sweep (call in the same tick as the unlink) ----

  blobRowExists(digest: string): boolean {
    return this.s.blobRow.get(digest) !== undefined;
  }

  blobRowSize(digest: string): number | null {
    return this.s.blobRow.get(digest)?.size ?? null;
  }

  uploadSessionExists(id: string): boolean {
    return this.s.upload.get(id) !== undefined;
  }

  /** An image record exists, or a bake of it is queued or running. */
  imageWanted(digest: string): boolean {
    return this.s.image.get(digest) !== undefined || this.bakeActive(digest);
  }

  bakeActive(digest: string): boolean {
    const status = this.s.job.get(`bake:${digest}`)?.status;
    return status === 'queued' || status === 'running';
  }

  bakeStatus(digest: string): string | null {
    return this.s.job.get(`bake:${digest}`)?.status ?? null;
  }

  imageDiskSize(digest: string): number | null {
    return this.s.imageDiskSize.get(digest)?.disk_size ?? null;
  }

  // ---- upload sessions ----

  uploadsIdleSince(cutoffMs: number): UploadRow[] {
    return this.s.staleUploads.all(cutoffMs);
  }

  uploads(): UploadRow[] {
    return this.s.allUploads.all();
  }

  deleteUpload(id: string): void {
    this.s.deleteUpload.run(id);
  }

  /** Deletes blob rows (fsck: a quarantined blob reads as missing, so clients push it again). */
  deleteBlobRows(digests: readonly string[]): void {
    this.db.transaction(() => {
      for (const d of digests) this.s.deleteBlob.run(d);
    })();
  }

  // ---- tag pulls ----

  /** Records pull times in one transaction: `[repo, tag, unix ms]`. */
  recordPulls(entries: Iterable<readonly [string, string, number]>): void {
    this.db.transaction(() => {
      for (const [repo, tag, at] of entries) this.s.upsertPull.run(repo, tag, at);
    })();
  }

  integrityCheck(): string[] {
    const rows = this.db.pragma('integrity_check') as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).filter((r) => r !== 'ok');
  }
}
