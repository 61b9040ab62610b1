// Opens the stores of the configured backend. The server, the CLI, gc and
// fsck get their stores here and never name a backend class.
import { mkdir } from 'node:fs/promises';
import type { ApiKeyStore } from './api-key-store.js';
import type { BuildStore } from './build-store.js';
import { DataDir } from './data-dir.js';
import { lockDataDir } from './dir-lock.js';
import { FsBlobStore } from './fs/blob-store.js';
import { BuildFiles } from './fs/build-files.js';
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
import type { BlobStore, MetadataStore } from './types.js';

export interface StoreConfig {
  /** The data directory (blobs, uploads, disks, builds; the SQLite database). */
  dataDir: string;
  /** fsync blobs before acknowledging them (default true). */
  durable?: boolean;
  /** Who holds the data directory while the stores are open, for the lock's error message (`kiln serve`, `kiln gc`). */
  owner: string;
  /**
   * The caller only records small facts (`kiln token`) and may run beside a
   * server, so the data directory's lock is not taken.
   */
  shared?: boolean;
}

export interface Stores {
  backend: 'sqlite';
  dirs: DataDir;
  blobs: BlobStore;
  meta: MetadataStore;
  jobs: JobStore;
  images: ImageStore;
  builds: BuildStore;
  buildFiles: BuildFiles;
  apiKeys: ApiKeyStore;
  gc: GcStore;
  /** Closes the database and releases the data directory. */
  close(): Promise<void>;
}

export async function openStores(config: StoreConfig): Promise<Stores> {
  const dirs = new DataDir(config.dataDir);
  await mkdir(dirs.root, { recursive: true });
  // One process per SQLite data directory: it alone sees its in-flight requests (src/gc/collector.ts).
  const unlock = config.shared ? async () => undefined : await lockDataDir(dirs, config.owner);
  try {
    await dirs.ensure();
    const db = openSqlite(dirs.database);
    const blobs = new FsBlobStore(dirs, { durable: config.durable });
    try {
      await blobs.init();
    } catch (err) {
      db.close();
      throw err;
    }
    let closed = false;
    return {
      backend: 'sqlite',
      dirs,
      blobs,
      meta: new SqliteMetadataStore(db),
      jobs: new SqliteJobStore(db),
      images: new SqliteImageStore(db),
      builds: new SqliteBuildStore(db),
      buildFiles: new BuildFiles(dirs),
      apiKeys: new SqliteApiKeyStore(db),
      gc: new SqliteGcStore(db),
      async close() {
        if (closed) return;
        closed = true;
        db.close();
        await unlock();
      },
    };
  } catch (err) {
    await unlock();
    throw err;
  }
}
