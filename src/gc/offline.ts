// Opens a data directory for the offline tools (`kiln gc --data-dir`,
// `kiln fsck`): the stores of the configured backend, with the data
// directory's lock taken so no server works on it meanwhile.
import { DigestPins } from '../store/pins.js';
import { openStores, type Stores } from '../store/open.js';
import { loadS3Config } from '../store/s3/config.js';
import { GarbageCollector } from './collector.js';
import type { GcConfig } from './config.js';

export interface OfflineDataDir {
  stores: Stores;
  collector(config: GcConfig): GarbageCollector;
  close(): Promise<void>;
}

export async function openOffline(root: string, owner: string, env: NodeJS.ProcessEnv = process.env): Promise<OfflineDataDir> {
  const stores = await openStores({ dataDir: root, owner, s3: loadS3Config(env) });
  return {
    stores,
    collector: (config) => new GarbageCollector({ dirs: stores.dirs, store: stores.gc, blobs: stores.blobs, pins: new DigestPins(), config, online: false }),
    close: () => stores.close(),
  };
}
