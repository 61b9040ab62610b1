// What the garbage collector and fsck need from the metadata database: one
// consistent snapshot of every table that roots or holds content, the deletion
// of what the collector decided is garbage with no writer committing in
// between, point checks for the file sweep that stay true while the sweep acts
// on them, and the last pull time of tags (for cache retention). How each
// backend keeps writers out is its own business; src/gc/collector.ts says why
// the collector needs it.

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
/** The job roots among active job rows: bake jobs name the manifest they bake (`{digest, repo}`). */
export function jobRootsOf(rows: Iterable<{ key: string; payload: string }>): GcJobRoot[] {
  const roots: GcJobRoot[] = [];
  for (const job of rows) {
    try {
      const payload = JSON.parse(job.payload) as { repo?: unknown; digest?: unknown };
      if (typeof payload.repo === 'string' && typeof payload.digest === 'string') roots.push({ key: job.key, repo: payload.repo, digest: payload.digest });
    } catch {
      // not a payload that names a manifest
    }
  }
  return roots;
}

export interface GcImageRow {
  digest: string;
  /** The repo of its latest name; '' when no name is left (the image is then garbage unless a bake of it is pending). */
  repo: string;
}

/** A name of a baked image: `tag` '' for a digest name, `indexDigest` '' when not picked from an index. */
export interface GcImageNameRow {
  repo: string;
  tag: string;
  digest: string;
  indexDigest: string;
  updatedAt: number;
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
  /** Names of the baked images (a tenant's view of them), checked against the tags and manifests. */
  imageNames: GcImageNameRow[];
  /** Digests pinned by requests of any process, as far as the database knows them (this process's own are in its PinStore). */
  pinned: string[];
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
  /**
   * Image names of deleted manifests (as image or as index), by repo name:
   * for a backend whose image names live apart from its manifests (PostgreSQL
   * metadata, image names in SQLite). A backend holding both drops them with
   * the manifests.
   */
  imageNames?: { repo: string; digest: string }[];
  /** Image names whose tag or manifest is gone (missed by the image service, or from before names followed them); not if named again since. */
  staleImageNames?: GcImageNameRow[];
}

export interface UploadRow {
  id: string;
  repo: string;
  updatedAt: number;
}

/** What the mark phase returns: its result, and the rows to delete (none for a dry run). */
export interface GcDecision<T> {
  result: T;
  deletion: GcDeletion | null;
}

/** What a guarded step of the file sweep will ask about (a backend that must fetch its answers fetches these). */
export interface GcSubjects {
  blobs?: readonly string[];
  uploads?: readonly string[];
  images?: readonly string[];
}

/** Synchronous answers, true for as long as the guarded function runs. */
export interface GcPointView {
  blobRowExists(digest: string): boolean;
  /** Pinned in the database by a request of some process. */
  pinned(digest: string): boolean;
  uploadSessionExists(id: string): boolean;
  /** An image record exists, or a bake of it is queued or running. */
  imageWanted(digest: string): boolean;
  bakeActive(digest: string): boolean;
}

export interface GcStore {
  /** Runs `fn` while no other collection runs, in this or any other process. */
  runExclusive<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Takes a snapshot, lets `decide` mark it, and deletes what `decide`
   * returns, with no writer (of any process) committing in between.
   * `decide` is synchronous and pure.
   */
  collect<T>(decide: (snapshot: GcSnapshot) => GcDecision<T>): Promise<T>;
  /** A consistent read of every table (for fsck; the collector uses `collect`). */
  read(): Promise<GcSnapshot>;
  /**
   * Runs `fn` with point checks about `subjects` that no writer can falsify
   * until `fn` returns, so `fn` may remove a file in the same step as the
   * check that nothing wants it. `fn` reads the view before its first await;
   * when it returns a promise (object-store deletes), a backend that keeps
   * other processes' writers out (PostgreSQL) does so until it settles, and
   * within the process the collector's holds (PinStore.holdForDelete) do.
   */
  guard<T>(subjects: GcSubjects, fn: (view: GcPointView) => T): Promise<T>;

  uploadsIdleSince(cutoffMs: number): Promise<UploadRow[]>;
  uploads(): Promise<UploadRow[]>;
  deleteUpload(id: string): Promise<void>;
  /** Deletes blob rows (fsck: a quarantined blob reads as missing, so clients push it again). */
  deleteBlobRows(digests: readonly string[]): Promise<void>;

  /** Status of the bake job of `digest`, if there is one. */
  bakeStatus(digest: string): Promise<string | null>;
  imageDiskSize(digest: string): Promise<number | null>;

  /** Records pull times in one transaction: `[repo, tag, unix ms]`. */
  recordPulls(entries: Iterable<readonly [string, string, number]>): Promise<void>;
  /** The database's own consistency check: one line per problem, empty when sound. */
  integrityCheck(): Promise<string[]>;
}
