// The PostgreSQL schema, as numbered steps recorded in `kiln_schema`;
// src/store/postgres/db.ts applies the missing ones at start. Never edit a
// step that has shipped: add the next one. Names and tags compare byte-wise
// (COLLATE "C"), as in SQLite, so paging order is the same on both backends.

export interface PostgresMigration {
  version: number;
  name: string;
  sql: string;
}

export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    name: 'registry metadata, api keys, gc state',
    sql: `
CREATE TABLE repos (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL UNIQUE,
  created_at BIGINT NOT NULL
);
CREATE TABLE blobs (
  digest TEXT PRIMARY KEY,
  size BIGINT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE TABLE repo_blobs (
  repo_id BIGINT NOT NULL,
  digest TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (repo_id, digest)
);
CREATE INDEX repo_blobs_digest ON repo_blobs (digest);
CREATE TABLE manifests (
  repo_id BIGINT NOT NULL,
  digest TEXT NOT NULL,
  media_type TEXT NOT NULL,
  size BIGINT NOT NULL,
  artifact_type TEXT,
  config_media_type TEXT,
  subject TEXT,
  annotations TEXT,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (repo_id, digest)
);
CREATE INDEX manifests_subject ON manifests (repo_id, subject) WHERE subject IS NOT NULL;
CREATE INDEX manifests_digest ON manifests (digest);
CREATE TABLE manifest_refs (
  repo_id BIGINT NOT NULL,
  manifest_digest TEXT NOT NULL,
  child_digest TEXT NOT NULL,
  kind TEXT NOT NULL,
  PRIMARY KEY (repo_id, manifest_digest, child_digest, kind)
);
CREATE INDEX manifest_refs_child ON manifest_refs (child_digest);
CREATE TABLE tags (
  repo_id BIGINT NOT NULL,
  name TEXT COLLATE "C" NOT NULL,
  digest TEXT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (repo_id, name)
);
CREATE INDEX tags_digest ON tags (repo_id, digest);
CREATE TABLE uploads (
  id TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX uploads_updated ON uploads (updated_at);
CREATE TABLE tag_pulls (
  repo TEXT NOT NULL,
  tag TEXT NOT NULL,
  pulled_at BIGINT NOT NULL,
  PRIMARY KEY (repo, tag)
);
CREATE TABLE api_keys (
  jti TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('api_key', 'build')),
  subject TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('admin', 'tenant', 'build')),
  tenant TEXT,
  build_id TEXT,
  issued_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE INDEX api_keys_expires_at ON api_keys (expires_at);
-- Digests a request of some process is making visible (src/store/postgres/pins.ts).
CREATE TABLE digest_pins (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  digest TEXT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX digest_pins_digest ON digest_pins (digest);
`,
  },
  {
    version: 2,
    name: 'upload quotas',
    // Sessions from before count as started (they had a file from the start) and belong to no one's quota.
    sql: `
ALTER TABLE uploads ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN started SMALLINT NOT NULL DEFAULT 1;
CREATE INDEX uploads_owner ON uploads (owner);
CREATE INDEX uploads_empty ON uploads (created_at) WHERE started = 0;
`,
  },
  {
    version: 3,
    name: 'job queue',
    sql: `
CREATE TABLE jobs (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind TEXT NOT NULL,
  key TEXT COLLATE "C" NOT NULL UNIQUE,
  payload TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
  attempts INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  progress_done BIGINT NOT NULL DEFAULT 0,
  progress_total BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  started_at BIGINT,
  finished_at BIGINT,
  lease_owner TEXT,
  lease_until BIGINT,
  cancel_requested SMALLINT NOT NULL DEFAULT 0,
  not_before BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_queue ON jobs (kind, status, not_before, id) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (status) WHERE status = 'running';
`,
  },
  {
    version: 4,
    name: 'builds',
    // As in SQLite: the fields queries filter on as columns, the rest as JSON text
    // (text, not jsonb, which refuses a \u0000 that build args or errors may carry).
    sql: `
CREATE TABLE builds (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  tenant TEXT,
  created_at BIGINT NOT NULL,
  finished_at BIGINT,
  files_removed_at BIGINT,
  data TEXT NOT NULL
);
CREATE INDEX builds_status ON builds (status, seq);
CREATE INDEX builds_tenant ON builds (tenant, seq);
CREATE INDEX builds_retention ON builds (finished_at) WHERE files_removed_at IS NULL AND finished_at IS NOT NULL;
`,
  },
  {
    version: 5,
    name: 'image records and names',
    sql: `
CREATE TABLE images (
  digest TEXT PRIMARY KEY,
  disk_size BIGINT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE image_names (
  repo TEXT COLLATE "C" NOT NULL,
  tag TEXT COLLATE "C" NOT NULL,
  digest TEXT COLLATE "C" NOT NULL,
  index_digest TEXT COLLATE "C" NOT NULL DEFAULT '',
  platform TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (repo, tag, digest, index_digest)
);
CREATE INDEX image_names_digest ON image_names (digest);
CREATE INDEX image_names_index ON image_names (index_digest) WHERE index_digest <> '';
`,
  },
  {
    version: 6,
    name: 'build leases',
    // As SQLite step 6: the server holding a build and until when (ms); rows
    // from before have none, and building or pushing count as expired.
    sql: `
ALTER TABLE builds ADD COLUMN runner TEXT;
ALTER TABLE builds ADD COLUMN lease_until BIGINT;
`,
  },
];
