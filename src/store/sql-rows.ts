// Row shapes and their conversions, shared by the SQL backends (SQLite and
// PostgreSQL use the same column names).
import type { IssuedKey, IssuedKeyKind } from './api-key-store.js';
import type { ManifestRecord, Referrer, UploadSession } from './types.js';

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
  created_at: number;
  updated_at: number;
}

export function toUploadSession(row: UploadRow): UploadSession {
  return { id: row.id, repo: row.repo, createdAt: row.created_at, updatedAt: row.updated_at };
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
