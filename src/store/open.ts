// Opens the stores of the configured backend. The server, the CLI, gc and
// fsck get their stores here and never name a backend class.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ApiKeyStore } from './api-key-store.js';
import type { BuildStore } from './build-store.js';
import { DataDir } from './data-dir.js';
import { lockDataDir } from './dir-lock.js';
import { NotADataDirError } from './errors.js';
import type { FileStore } from './file-store.js';
import { FsBlobStore } from './fs/blob-store.js';
import { FsFileStore } from './fs/file-store.js';
import type { S3Config } from './s3/config.js';
import { BuildFiles } from './build-files.js';
import type { GcStore } from './gc-store.js';
import type { ImageStore } from './image-store.js';
import type { JobStore } from './job-store.js';
import { SqliteApiKeyStore } from './sqlite/api-key-store.js';
import { SqliteBuildStore } from './sqlite/build-store.js';
import { openSqlite } from './sqlite/db.js';
import { SqliteGcStore } from './sqlite/gc-store.js';
import { SqliteImageStore } from './sqlite/image-store.js';
import { SqliteJobStore } from './sqlite/job-store.js';
import { SqliteMetadataStore } from './sqlite/metadata-store.js';
import { DigestPins, type PinStore } from './pins.js';
import type { BlobStore, MetadataStore } from './types.js';

export interface StoreConfig {
  /** The data directory (blobs, uploads, disks, builds; the SQLite database). */
  dataDir: string;
  /**
   * `postgres://…`: metadata, builds, API keys and GC state live in PostgreSQL and
   * several processes may share it and the data directory. Unset: SQLite in
   * the data directory, for one process.
   */
  databaseUrl?: string;
  /** Connections of the PostgreSQL pool. */
  poolSize?: number;
  /** fsync blobs before acknowledging them (default true). */
  durable?: boolean;
  /** Keep the bytes in this S3 bucket instead of the data directory (KILN_S3_*; store/s3/config.ts). */
  s3?: S3Config | null;
  /** Where background database errors go (a dropped idle connection). */
  onError?: (err: unknown) => void;
  /** Who holds the data directory while the stores are open, for the lock's error message (`kiln serve`, `kiln gc`). */
  owner: string;
  /**
   * The caller only records small facts (`kiln token`) and may run beside a
   * server, so the data directory's lock is not taken.
   */
  shared?: boolean;
  /** Refuse (NotADataDirError) a directory that is not a Kiln data directory yet, instead of making it one. */
  existing?: boolean;
}

export interface Stores {
  backend: 'sqlite' | 'postgres';
  /** Other processes may use the same database and data directory (PostgreSQL). */
  shared: boolean;
  dirs: DataDir;
  blobs: BlobStore;
  meta: MetadataStore;
  jobs: JobStore;
  images: ImageStore;
  builds: BuildStore;
  /**
   * Who owns a build, answered at once, for the auth policy (whose lookup is
   * synchronous). SQLite answers in-process; on PostgreSQL it answers the
   * owners `loadBuildOwners` brought in (and of builds this process created),
   * null for any other, which the policy refuses.
   */
  ownerOfBuildNow: (buildId: string) => string | null;
  /** Loads owners so `ownerOfBuildNow` answers them (PostgreSQL); SQLite has nothing to load. */
  loadBuildOwners: (buildIds: readonly string[]) => Promise<void>;
  /** Disks, build sources, logs and results: the data directory, or the S3 bucket beside the blobs. */
  files: FileStore;
  buildFiles: BuildFiles;
  apiKeys: ApiKeyStore;
  gc: GcStore;
  /** Pins of in-flight digests, seen by every collector that may run. */
  pins: PinStore;
  /** Closes the database and releases the data directory. */
  close(): Promise<void>;
}

export async function openStores(config: StoreConfig): Promise<Stores> {
  const dirs = new DataDir(config.dataDir);
  if (config.existing && !dirs.isKilnDataDir()) throw new NotADataDirError(dirs.root);
  await mkdir(dirs.root, { recursive: true });
  const postgres = config.databaseUrl !== undefined && config.databaseUrl !== '';
  // One process per SQLite data directory: it alone sees its in-flight requests
  // (src/gc/collector.ts). On PostgreSQL the database coordinates the processes.
  const unlock = config.shared || postgres ? async () => undefined : await lockDataDir(dirs, config.owner);
  const opened: { close(): Promise<void> | void }[] = [];
  const closeAll = async () => {
    for (const o of opened.reverse()) await o.close();
    await unlock();
  };
  try {
    await dirs.ensure();
    // On PostgreSQL every store lives in the database; the SQLite file only marks the data directory there.
    const db = openSqlite(dirs.database, { durable: config.durable });
    opened.push({ close: () => void db.close() });
    // The S3 and PostgreSQL backends are loaded only when configured: their client libraries
    // cost every process (the API and each worker) some 35 MiB of memory otherwise.
    const s3 = config.s3 ? await openS3Stores(config.s3) : null;
    const blobs = s3?.blobs ?? new FsBlobStore(dirs, { durable: config.durable });
    await blobs.init();
    const files: FileStore = s3?.files ?? new FsFileStore(dirs.root, { durable: config.durable });
    await files.init();
    // Running logs on a store without local paths are appended to private copies in the scratch dir.
    const buildFiles = new BuildFiles(files, path.join(dirs.scratchRoot, 'build-logs'));
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      await closeAll();
    };
    if (!postgres) {
      const builds = new SqliteBuildStore(db);
      return {
        backend: 'sqlite',
        shared: false,
        dirs,
        blobs,
        files,
        buildFiles,
        jobs: new SqliteJobStore(db),
        images: new SqliteImageStore(db),
        builds,
        ownerOfBuildNow: builds.ownerOfNow,
        loadBuildOwners: async () => undefined,
        meta: new SqliteMetadataStore(db),
        apiKeys: new SqliteApiKeyStore(db),
        gc: new SqliteGcStore(db),
        pins: new DigestPins(),
        close,
      };
    }
    const { PostgresApiKeyStore, PostgresBuildStore, PostgresGcStore, PostgresImageStore, PostgresJobStore, PostgresMetadataStore, PostgresPins, openPostgres } = await loadPostgres();
    const pool = await openPostgres(config.databaseUrl!, { poolSize: config.poolSize, onError: config.onError });
    opened.push({ close: () => pool.end() });
    const builds = new PostgresBuildStore(pool);
    return {
      backend: 'postgres',
      shared: true,
      dirs,
      blobs,
      files,
      buildFiles,
      jobs: new PostgresJobStore(pool),
      images: new PostgresImageStore(pool),
      builds,
      ownerOfBuildNow: builds.ownerOfNow,
      loadBuildOwners: builds.loadOwners,
      meta: new PostgresMetadataStore(pool),
      apiKeys: new PostgresApiKeyStore(pool),
      gc: new PostgresGcStore(pool),
      pins: new PostgresPins(pool, config.onError),
      close,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** The blob and file stores on one S3 client: same bucket and prefix, keys are the data directory's relative paths. */
async function openS3Stores(config: S3Config): Promise<{ blobs: BlobStore; files: FileStore }> {
  const [{ createS3Client }, { S3BlobStore }, { S3FileStore }] = await Promise.all([
    import('./s3/client.js'),
    import('./s3/s3-blob-store.js'),
    import('./s3/file-store.js'),
  ]);
  const client = createS3Client(config);
  return { blobs: new S3BlobStore(client, config), files: new S3FileStore(client, config) };
}

async function loadPostgres() {
  const [apiKeys, builds, db, gc, images, jobs, meta, pins] = await Promise.all([
    import('./postgres/api-key-store.js'),
    import('./postgres/build-store.js'),
    import('./postgres/db.js'),
    import('./postgres/gc-store.js'),
    import('./postgres/image-store.js'),
    import('./postgres/job-store.js'),
    import('./postgres/metadata-store.js'),
    import('./postgres/pins.js'),
  ]);
  return {
    PostgresApiKeyStore: apiKeys.PostgresApiKeyStore,
    PostgresBuildStore: builds.PostgresBuildStore,
    openPostgres: db.openPostgres,
    PostgresGcStore: gc.PostgresGcStore,
    PostgresImageStore: images.PostgresImageStore,
    PostgresJobStore: jobs.PostgresJobStore,
    PostgresMetadataStore: meta.PostgresMetadataStore,
    PostgresPins: pins.PostgresPins,
  };
}
