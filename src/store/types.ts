// The blob and metadata store contracts. Every store contract (this file,
// job-store.ts, image-store.ts, build-store.ts, api-key-store.ts, gc-store.ts)
// is async and free of paths and SQL; each backend lives in its own folder
// (fs/, sqlite/, …) and src/store/open.ts picks them.
import type { Readable, Writable } from 'node:stream';
import type { ParsedDigest } from '../oci/digest.js';

export interface BlobInfo {
  digest: string;
  size: number;
}

/** A blob as listed by the store: the garbage collector keeps young unreferenced ones. */
export interface StoredBlob extends BlobInfo {
  modifiedAt: Date;
}

/** Stored upload data, with or without a session row (the collector removes old ones without). */
export interface StoredUpload {
  id: string;
  modifiedAt: Date;
  /** Bytes it takes up in the store. */
  size: number;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

export interface AppendOptions {
  /** Offset the client says the chunk starts at; a mismatch is a RangeMismatchError. */
  expectedOffset?: number;
  /** Declared length of the body, checked against what arrives. */
  expectedLength?: number;
}

/** A blob (or a byte range of it) opened to be served once. */
export interface BlobSource {
  /**
   * Writes the bytes into `dest` and ends it. A read error destroys `dest` and
   * rejects; a `dest` closed early (client gone) stops the copy quietly.
   */
  copyTo(dest: Writable): Promise<void>;
}

export interface BlobStore {
  init(): Promise<void>;
  stat(digest: string): Promise<BlobInfo | null>;
  /** Streams a blob or a byte range of it, for consumers that transform it; null when absent. */
  open(digest: string, range?: ByteRange): Promise<Readable | null>;
  /**
   * Opens a blob for serving; null when absent. `range` is the exact bytes
   * promised to the client (the whole blob is 0..size-1), so a short file
   * fails instead of ending early. Separate from `open` so each store can
   * serve in its cheapest way (the filesystem store reuses its buffers; an
   * object store could pipe or redirect).
   */
  openSource(digest: string, range: ByteRange): Promise<BlobSource | null>;
  /**
   * A URL the client can fetch the blob from directly (ranges included),
   * valid for a short while; null when this store serves the bytes itself.
   * The registry answers a blob GET with a 307 to it.
   */
  redirectUrl(digest: string): Promise<string | null>;
  /** Writes a small in-memory object (a manifest), verified against `expected` when given. */
  putBytes(data: Uint8Array, expected: ParsedDigest): Promise<BlobInfo>;
  readBytes(digest: string): Promise<Buffer | null>;
  delete(digest: string): Promise<boolean>;
  list(): AsyncIterable<StoredBlob>;
  /** Entries where blobs live that are not blobs (names that are no digest): fsck reports them. */
  strays(): AsyncIterable<string>;
  /** Moves a corrupt blob aside where nothing serves it (fsck); returns where it went, for the report. */
  quarantine(digest: string): Promise<string>;

  /** Prepares an upload; a session that is never used should cost no memory (most clients open more than they use). */
  createUpload(id: string): Promise<void>;
  /** Appends a streamed chunk, hashing as it is written; returns the new upload size. */
  appendUpload(id: string, body: Readable, options?: AppendOptions): Promise<number>;
  /** Bytes received so far; null for an upload the store does not know. */
  uploadSize(id: string): Promise<number | null>;
  /** Verifies the upload against `expected` and moves it into place; the upload is gone afterwards. */
  commitUpload(id: string, expected: ParsedDigest): Promise<BlobInfo>;
  abortUpload(id: string): Promise<void>;
  listUploads(): AsyncIterable<StoredUpload>;
}

export interface ManifestRecord {
  repo: string;
  digest: string;
  mediaType: string;
  size: number;
  artifactType: string | null;
  configMediaType: string | null;
  subject: string | null;
  annotations: Record<string, string> | null;
  createdAt: number;
}

export type ReferenceKind = 'config' | 'layer' | 'manifest' | 'blob';

export interface ManifestReference {
  digest: string;
  kind: ReferenceKind;
}

export interface PutManifestInput {
  repo: string;
  digest: string;
  mediaType: string;
  size: number;
  artifactType: string | null;
  configMediaType: string | null;
  subject: string | null;
  annotations: Record<string, string> | null;
  references: ManifestReference[];
  /** Tag to point at the manifest in the same transaction. */
  tag?: string;
}

export interface Page {
  /** Return entries strictly after this one (lexical order). */
  last?: string;
  /** At most this many entries. */
  limit?: number;
}

export interface UploadSession {
  id: string;
  repo: string;
  /** Whose quota the session counts against (a tenant, or a namespace when auth is off). */
  owner: string;
  /** Whether any data was ever appended. */
  started: boolean;
  createdAt: number;
  updatedAt: number;
}

/** Upload sessions that may be open at once. */
export interface UploadSessionQuota {
  perOwner: number;
  total: number;
}

export type CreateUploadOutcome = { created: true } | { created: false; limit: 'perOwner' | 'total'; open: number };

/** Which sessions the janitor removes. */
export interface UploadExpiry {
  /** Sessions last used before this (ms since the epoch). */
  idleBefore: number;
  /** Sessions that never received a byte, created before this. */
  emptyBefore: number;
}

/**
 * The repositories a caller may see, as the database can page through them:
 * every repository, or those under some prefixes plus some exact names.
 * Callers still filter by the exact policy; this only bounds what is read.
 */
export type RepoScope = { all: true } | { all: false; prefixes: readonly string[]; names: readonly string[] };

export interface Referrer {
  mediaType: string;
  digest: string;
  size: number;
  artifactType: string | null;
  annotations: Record<string, string> | null;
}

export interface TagRecord {
  repo: string;
  tag: string;
  digest: string;
  updatedAt: number;
}

export interface MetadataStore {
  /** Repository names in order, after `page.last`, limited to `scope` (default: all). */
  listRepos(page: Page, scope?: RepoScope): Promise<string[]>;
  /** A repository within `scope` that holds the blob, or null (for mounts without `from`). */
  findRepoWithBlob(digest: string, scope: RepoScope): Promise<string | null>;
  repoExists(repo: string): Promise<boolean>;

  /** Records that `repo` holds the blob (after the bytes are safely stored). */
  linkBlob(repo: string, digest: string, size: number): Promise<void>;
  /** Size of the blob if `repo` holds it. */
  repoBlobSize(repo: string, digest: string): Promise<number | null>;
  unlinkBlob(repo: string, digest: string): Promise<boolean>;
  /** Known size of a blob held by any repo (for mounts and existence checks). */
  blobSize(digest: string): Promise<number | null>;

  putManifest(input: PutManifestInput): Promise<void>;
  getManifest(repo: string, digest: string): Promise<ManifestRecord | null>;
  resolveTag(repo: string, tag: string): Promise<string | null>;
  /** The manifest a tag points at, in one lookup (the hottest read: GET/HEAD manifest by tag); null when either is absent. */
  getTaggedManifest(repo: string, tag: string): Promise<ManifestRecord | null>;
  listTags(repo: string, page: Page): Promise<string[]>;
  tagsOf(repo: string, digest: string): Promise<string[]>;
  deleteTag(repo: string, tag: string): Promise<boolean>;
  /** Deletes the manifest and every tag pointing at it. */
  deleteManifest(repo: string, digest: string): Promise<boolean>;
  listReferrers(repo: string, subject: string, artifactType?: string): Promise<Referrer[]>;

  /** Records a new session unless its owner, or the registry, is at its quota; check and insert are atomic. */
  createUpload(session: { id: string; repo: string; owner: string }, quota: UploadSessionQuota): Promise<CreateUploadOutcome>;
  getUpload(id: string): Promise<UploadSession | null>;
  /** Marks the session used now (and as having received data). */
  touchUpload(id: string): Promise<void>;
  deleteUpload(id: string): Promise<void>;
  listExpiredUploads(expiry: UploadExpiry): Promise<UploadSession[]>;
  countUploads(): Promise<number>;
}
