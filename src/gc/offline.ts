// Opens a data directory for the offline tools (`kiln gc --data-dir`,
// `kiln fsck`): the stores of the configured backend, with the data
// directory's lock taken so no server works on it meanwhile.
import { DigestPins } from '../store/pins.js';
import { openStores, type Stores } from '../store/open.js';
import { GarbageCollector } from './collector.js';
import type { GcConfig } from './config.js';

export interface OfflineDataDir {
  stores: Stores;
  collector(config: GcConfig): GarbageCollector;
  close(): Promise<void>;
}

export async function openOffline(root: string, owner: string): Promise<OfflineDataDir> {
  const stores = await openStores({ dataDir: root, owner });
  return {
    stores,
    collector: (config) => new GarbageCollector({ dirs: stores.dirs, store: stores.gc, blobs: stores.blobs, pins: new DigestPins(), config, online: false }),
    close: () => stores.close(),
  };
}
