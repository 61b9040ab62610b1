// Row shapes and their conversions, shared by the SQL backends (SQLite and
// PostgreSQL use the same column names).
import type { IssuedKey, IssuedKeyKind } from './api-key-store.js';
import type { ImageName, ImageNameCursor, ImageRecord } from './image-store.js';
import type { JobRecord, JobStatus } from './job-store.js';
import type { ManifestRecord, Referrer, UploadSession } from './types.js';

/** The columns of a ManifestRow, from `manifests m` joined with `repos r`: one list for both SQL backends. */
export const MANIFEST_COLUMNS = 'r.name, m.digest, m.media_type, m.size, m.artifact_type, m.config_media_type, m.subject, m.annotations, m.created_at';

export interface ManifestRow {
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

export function toManifestRecord(row: ManifestRow): ManifestRecord {
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

/** Referrers of a subject, optionally of one artifact type. */
export function toReferrers(rows: ManifestRow[], artifactType: string | undefined): Referrer[] {
  return rows
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

export interface UploadRow {
  id: string;
  repo: string;
  owner: string;
  /** 0 or 1 (SQLite), or a boolean-ish number (PostgreSQL's smallint/int). */
  started: number;
  created_at: number;
  updated_at: number;
}

export function toUploadSession(row: UploadRow): UploadSession {
  return { id: row.id, repo: row.repo, owner: row.owner, started: Number(row.started) === 1, createdAt: Number(row.created_at), updatedAt: Number(row.updated_at) };
}

export interface ApiKeyRow {
  jti: string;
  kind: IssuedKeyKind;
  subject: string;
  role: IssuedKey['role'];
  tenant: string | null;
  build_id: string | null;
  issued_at: number;
  expires_at: number;
  revoked_at: number | null;
}

export function toIssuedKey(row: ApiKeyRow): IssuedKey {
  return {
    jti: row.jti,
    kind: row.kind,
    subject: row.subject,
    role: row.role,
    tenant: row.tenant,
    buildId: row.build_id,
    issuedAt: new Date(row.issued_at),
    expiresAt: new Date(row.expires_at),
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  };
}

/**
 * The smallest string above every string starting with `prefix`, for an
 * index range scan `name >= prefix AND name < prefixEnd(prefix)` (byte order:
 * PostgreSQL compares with COLLATE "C").
 */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

export interface JobRow {
  id: number;
  kind: string;
  key: string;
  payload: string;
  status: JobStatus;
  attempts: number;
  error: string | null;
  progress_done: number;
  progress_total: number;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  finished_at: number | null;
  lease_owner: string | null;
  lease_until: number | null;
  cancel_requested: number;
}

export function toJobRecord(row: JobRow): JobRecord {
  return {
    id: row.id,
    kind: row.kind,
    key: row.key,
    payload: JSON.parse(row.payload) as unknown,
    status: row.status,
    attempts: row.attempts,
    error: row.error,
    progressDone: row.progress_done,
    progressTotal: row.progress_total,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    leaseOwner: row.lease_owner,
    leaseUntil: row.lease_until,
    cancelRequested: row.cancel_requested === 1,
  };
}

// Image names: '' stands for "no tag" (named by digest) and for "no index", so the
// primary key stays simple; it is also the listing's order: (repo, tag, digest, index_digest).
export interface ImageRow {
  digest: string;
  disk_size: number | null;
  created_at: number;
  updated_at: number;
}

export interface ImageNameRow {
  repo: string;
  tag: string;
  digest: string;
  index_digest: string;
  platform: string | null;
  created_at: number;
  updated_at: number;
}

export function cursorParams(c: ImageNameCursor | undefined): { repo: string; tag: string; digest: string; indexDigest: string } {
  if (!c) return { repo: '', tag: '', digest: '', indexDigest: '' };
  return { repo: c.repo, tag: c.tag ?? '', digest: c.digest, indexDigest: c.indexDigest ?? '' };
}

/** The sort key as one string: the columns hold no NUL, so NUL-joined strings sort as the tuples do. */
export function imageNameKey(r: ImageNameRow): string {
  return [r.repo, r.tag, r.digest, r.index_digest].join('\u0000');
}

export function uniqueDigests(digests: string[]): string[] {
  return [...new Set(digests)];
}

export function toImageName(n: ImageNameRow): ImageName {
  return {
    repo: n.repo,
    tag: n.tag === '' ? null : n.tag,
    digest: n.digest,
    indexDigest: n.index_digest === '' ? null : n.index_digest,
    platform: n.platform,
    createdAt: n.created_at,
    updatedAt: n.updated_at,
  };
}

export function toImageRecord(row: ImageRow, names: ImageNameRow[]): ImageRecord {
  return {
    digest: row.digest,
    diskSize: row.disk_size,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    names: names.map(toImageName),
  };
}
