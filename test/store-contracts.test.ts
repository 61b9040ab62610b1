// The metadata, API-key and GC store contracts on every backend: SQLite in a
// temp data directory, and PostgreSQL (a throwaway cluster, a fresh database
// per harness).
import { rm } from 'node:fs/promises';
import { after } from 'node:test';
import { openStores, type Stores } from '../src/store/open.js';
import { apiKeyStoreContract } from '../src/store/testing/api-key-store-contract.js';
import { gcStoreContract } from '../src/store/testing/gc-store-contract.js';
import { imageStoreContract } from '../src/store/testing/image-store-contract.js';
import { jobStoreContract } from '../src/store/testing/job-store-contract.js';
import { metadataStoreContract } from '../src/store/testing/metadata-store-contract.js';
import { tempDir } from './helpers/kiln.js';
import { startPostgres, type TestPostgres } from './helpers/postgres.js';

let cluster: Promise<TestPostgres> | null = null;
after(async () => (await cluster)?.stop());

type Open = () => Promise<{ stores: Stores; reopen(): Promise<Stores>; close(): Promise<void> }>;

function backend(databaseUrl: () => Promise<string | undefined>): Open {
  return async () => {
    const dataDir = await tempDir('kiln-contract-');
    const url = await databaseUrl();
    const opened: Stores[] = [];
    const open = async () => {
      const s = await openStores({ dataDir, databaseUrl: url, durable: false, owner: 'contract test', shared: opened.length > 0 });
      opened.push(s);
      return s;
    };
    const stores = await open();
    return {
      stores,
      reopen: open,
      async close() {
        for (const s of opened) await s.close();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  };
}

const backends: [string, Open][] = [
  ['sqlite', backend(async () => undefined)],
  ['postgres', backend(async () => (await (cluster ??= startPostgres())).database())],
];

for (const [name, open] of backends) {
  metadataStoreContract(name, async () => {
    const h = await open();
    return { store: h.stores.meta, close: h.close };
  });
  apiKeyStoreContract(name, async () => {
    const h = await open();
    return { store: h.stores.apiKeys, reopen: async () => (await h.reopen()).apiKeys, close: h.close };
  });
  imageStoreContract(name, async () => {
    const h = await open();
    return { store: h.stores.images, close: h.close };
  });
  jobStoreContract(name, async () => {
    const h = await open();
    return { store: h.stores.jobs, close: h.close };
  });
  gcStoreContract(name, async () => {
    const h = await open();
    return { gc: h.stores.gc, meta: h.stores.meta, pins: h.stores.pins, close: h.close };
  });
}
