// Picks the blob store the configuration asks for: S3 when KILN_S3_BUCKET is
// set, else the filesystem store in the data directory.
import type { DataDir } from './data-dir.js';
import { FsBlobStore } from './fs-blob-store.js';
import { createS3Client } from './s3/client.js';
import type { S3Config } from './s3/config.js';
import { S3BlobStore } from './s3/s3-blob-store.js';
import type { BlobStore } from './types.js';

export interface BlobStoreChoice {
  dirs: DataDir;
  s3: S3Config | null;
  /** fsync filesystem blobs before acknowledging them. */
  durable?: boolean;
}

/** The configured store, initialised (an unusable bucket fails here, at start, with a message naming the settings). */
export async function openBlobStore(choice: BlobStoreChoice): Promise<BlobStore> {
  const store = choice.s3 ? new S3BlobStore(createS3Client(choice.s3), choice.s3) : new FsBlobStore(choice.dirs, { durable: choice.durable ?? true });
  await store.init();
  return store;
}
