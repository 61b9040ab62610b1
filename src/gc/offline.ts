// Opens a data directory for the offline tools (`kiln gc --data-dir`,
// `kiln fsck`): takes the pid lock so no server runs meanwhile, opens the
// database and the stores the tools need.
import { mkdir } from 'node:fs/promises';
import { DataDir } from '../store/data-dir.js';
import { lockDataDir } from '../store/dir-lock.js';
import { openBlobStore } from '../store/open-blob-store.js';
import { loadS3Config } from '../store/s3/config.js';
import type { BlobStore } from '../store/types.js';
import { DigestPins } from '../store/pins.js';
import { openSqlite, type SqliteDatabase } from '../store/sqlite-db.js';
import { SqliteGcStore } from '../store/sqlite-gc-store.js';
import { SqliteImageStore } from '../store/sqlite-image-store.js';
import { SqliteJobStore } from '../store/sqlite-job-store.js';
import { SqliteMetadataStore } from '../store/sqlite-metadata-store.js';
import { GarbageCollector } from './collector.js';
import type { GcConfig } from './config.js';

export interface OfflineDataDir {
  dirs: DataDir;
  db: SqliteDatabase;
  store: SqliteGcStore;
  blobs: BlobStore;
  collector(config: GcConfig): GarbageCollector;
  close(): Promise<void>;
}

export async function openOffline(root: string, owner: string, env: NodeJS.ProcessEnv = process.env): Promise<OfflineDataDir> {
  const dirs = new DataDir(root);
  await mkdir(dirs.root, { recursive: true });
  const unlock = await lockDataDir(dirs, owner);
  let db: SqliteDatabase | null = null;
  try {
    await dirs.ensure();
    db = openSqlite(dirs.database);
    // Constructing the stores creates their tables in a fresh directory.
    new SqliteMetadataStore(db);
    new SqliteJobStore(db);
    new SqliteImageStore(db);
    const store = new SqliteGcStore(db);
    const blobs = await openBlobStore({ dirs, s3: loadS3Config(env) });
    const opened = db;
    return {
      dirs,
      db: opened,
      store,
      blobs,
      collector: (config) => new GarbageCollector({ dirs, store, blobs, pins: new DigestPins(), config, online: false }),
      async close() {
        opened.close();
        await unlock();
      },
    };
  } catch (err) {
    db?.close();
    await unlock();
    throw err;
  }
}
