// The SQLite schema, as numbered steps. A database records the last step it
// has in `PRAGMA user_version`; src/store/sqlite/db.ts applies the missing
// ones at open. Never edit a step that has shipped: add the next one.
//
// Step 1 is the schema of the releases before versioning (user_version 0,
// commit f171b3f). It only creates what is missing, so such a database takes
// it without change and then carries on with step 2.

export interface SqliteMigration {
  version: number;
  name: string;
  sql: string;
}

export const SQLITE_MIGRATIONS: readonly SqliteMigration[] = [
  {
    version: 1,
    name: 'baseline',
    sql: `
CREATE TABLE IF NOT EXISTS repos (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
  digest TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS repo_blobs (
  repo_id INTEGER NOT NULL,
  digest TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS repo_blobs_digest ON repo_blobs(digest);
CREATE TABLE IF NOT EXISTS manifests (
  repo_id INTEGER NOT NULL,
  digest TEXT NOT NULL,
  media_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  artifact_type TEXT,
  config_media_type TEXT,
  subject TEXT,
  annotations TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;
CREATE INDEX IF NOT EXISTS manifests_digest ON manifests(digest);
CREATE TABLE IF NOT EXISTS manifest_refs (
  repo_id INTEGER NOT NULL,
  manifest_digest TEXT NOT NULL,
  child_digest TEXT NOT NULL,
  kind TEXT NOT NULL,
  PRIMARY KEY (repo_id, manifest_digest, child_digest, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_refs_child ON manifest_refs(child_digest);
CREATE TABLE IF NOT EXISTS tags (
  repo_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  digest TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (repo_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_digest ON tags(repo_id, digest);
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  key TEXT NOT NULL UNIQUE,
  payload TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  progress_done INTEGER NOT NULL DEFAULT 0,
  progress_total INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(kind, status, id);
CREATE TABLE IF NOT EXISTS images (
  digest TEXT PRIMARY KEY,
  index_digest TEXT,
  platform TEXT,
  disk_size INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS images_index ON images(index_digest) WHERE index_digest IS NOT NULL;
CREATE TABLE IF NOT EXISTS image_names (
  digest TEXT NOT NULL,
  repo TEXT NOT NULL,
  tag TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (digest, repo, tag)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS builds (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  tenant TEXT,
  created_at INTEGER NOT NULL,
  data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS builds_status ON builds(status, seq);
CREATE TABLE IF NOT EXISTS tag_pulls (
  repo TEXT NOT NULL,
  tag TEXT NOT NULL,
  pulled_at INTEGER NOT NULL,
  PRIMARY KEY (repo, tag)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys(
  jti TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('api_key', 'build')),
  subject TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('admin', 'tenant', 'build')),
  tenant TEXT,
  build_id TEXT,
  issued_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_expires_at ON api_keys(expires_at);
`,
  },
  {
    version: 2,
    name: 'upload quotas',
    // Sessions from before count as started (they had a file from the start) and belong to no one's quota.
    sql: `
ALTER TABLE uploads ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN started INTEGER NOT NULL DEFAULT 1;
CREATE INDEX uploads_owner ON uploads(owner);
CREATE INDEX uploads_updated ON uploads(updated_at);
CREATE INDEX uploads_empty ON uploads(created_at) WHERE started = 0;
`,
  },
  {
    version: 3,
    name: 'builds paged by owner, retention of build files',
    sql: `
ALTER TABLE builds ADD COLUMN finished_at INTEGER;
ALTER TABLE builds ADD COLUMN files_removed_at INTEGER;
UPDATE builds SET finished_at = json_extract(data, '$.finishedAt') WHERE json_extract(data, '$.finishedAt') IS NOT NULL;
CREATE INDEX builds_tenant ON builds(tenant, seq);
CREATE INDEX builds_retention ON builds(finished_at) WHERE files_removed_at IS NULL AND finished_at IS NOT NULL;
`,
  },
  {
    version: 4,
    name: 'job leases',
    sql: `
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN not_before INTEGER NOT NULL DEFAULT 0;
-- Jobs left running by a server of an earlier release had no lease: the next worker takes them up.
UPDATE jobs SET lease_until = 0 WHERE status = 'running';
`,
  },
  {
    version: 5,
    name: 'image names per repo with their own index and platform',
    // What a tenant sees of an image comes from its own name: the index and
    // platform move from the image (shared per digest, first push wins) to
    // each name, copied from the image for the names from before. '' stands
    // for "no index" as it does for "no tag", so both can be in the primary
    // key, which is also the listing's order. A digest name beside a tag
    // name of the same image in the same repo listed the image twice: it goes.
    sql: `
CREATE TABLE image_names_v4 (
  repo TEXT NOT NULL,
  tag TEXT NOT NULL,
  digest TEXT NOT NULL,
  index_digest TEXT NOT NULL DEFAULT '',
  platform TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (repo, tag, digest, index_digest)
) WITHOUT ROWID;
INSERT INTO image_names_v4 (repo, tag, digest, index_digest, platform, created_at, updated_at)
  SELECT n.repo, n.tag, n.digest, COALESCE(i.index_digest, ''), i.platform, n.updated_at, n.updated_at
  FROM image_names n LEFT JOIN images i ON i.digest = n.digest
  WHERE n.tag <> '' OR NOT EXISTS (SELECT 1 FROM image_names t WHERE t.repo = n.repo AND t.digest = n.digest AND t.tag <> '');
DROP TABLE image_names;
ALTER TABLE image_names_v4 RENAME TO image_names;
CREATE INDEX image_names_digest ON image_names(digest);
CREATE INDEX image_names_index ON image_names(index_digest) WHERE index_digest <> '';
`,
  },
  {
    version: 6,
    name: 'build leases',
    // The server running a build (or holding a queued build's secrets) and
    // until when its hold lasts without a renewal (src/builds/service.ts).
    // Rows from before have no runner: building or pushing, they count as
    // expired, and the next server to look fails them as interrupted.
    sql: `
ALTER TABLE builds ADD COLUMN runner TEXT;
ALTER TABLE builds ADD COLUMN lease_until INTEGER;
`,
  },
];
