// Opens the stores for the command-line tools (`kiln gc --data-dir`,
// `kiln fsck`). On SQLite the data directory's lock is taken so no server
// works on it meanwhile; on PostgreSQL servers may run, and the collector
// coordinates with them through the database like any other replica.
import { openStores, type Stores } from '../store/open.js';
import { loadS3Config } from '../store/s3/config.js';
import { GarbageCollector } from './collector.js';
import type { GcConfig } from './config.js';

export interface OfflineDataDir {
  stores: Stores;
  collector(config: GcConfig): GarbageCollector;
  close(): Promise<void>;
}

export async function openOffline(root: string, owner: string, databaseUrl?: string, env: NodeJS.ProcessEnv = process.env): Promise<OfflineDataDir> {
  const stores = await openStores({ dataDir: root, databaseUrl, owner, s3: loadS3Config(env) });
  return {
    stores,
    collector: (config) => new GarbageCollector({ dirs: stores.dirs, store: stores.gc, blobs: stores.blobs, files: stores.files, pins: stores.pins, config, online: stores.shared }),
    close: () => stores.close(),
  };
}
