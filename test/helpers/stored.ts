// What a test server keeps, looked at from outside Kiln: the files of its
// data directory on the filesystem store, the objects of its bucket (through
// the test's own S3 client) when the tests run with KILN_TEST_STORE=s3. The
// HTTP suite asks these questions the same way on either store.
import { DeleteObjectCommand, GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { readdir, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { S3Keys } from '../../src/store/s3/keys.js';
import { testBucket } from './kiln.js';
import { corruptBlobs } from './registry.js';

export interface Stored {
  /** Ids of the upload sessions that have anything in the store (files, objects, multipart uploads). */
  uploadIds(): Promise<string[]>;
  /** Leaves upload bytes without a session, as a crash would (on the filesystem dated two days back; S3 cannot backdate an object). */
  plantOrphanUpload(id: string): Promise<void>;
  /** Removes a blob's bytes behind Kiln's back (its rows stay). */
  removeBlobBytes(digest: string): Promise<void>;
  /** The stored copies of a blob: file or object names ending in its hex. */
  copiesOf(digest: string): Promise<string[]>;
  /** Every stored blob whose bytes do not hash to its name (or that is misplaced). */
  corruptBlobs(): Promise<string[]>;
}

/** The store of a test server (anything with the data directory it was started on). */
export async function storedOf(server: { dataDir: string }): Promise<Stored> {
  const s3 = await testBucket(server.dataDir);
  if (!s3) return fsStored(server.dataDir);
  clients.set(s3.rgw, clients.get(s3.rgw) ?? s3.rgw.client());
  return s3Stored(clients.get(s3.rgw)!, s3.bucket);
}
const clients = new WeakMap<object, S3Client>();

function fsStored(dataDir: string): Stored {
  const blobFile = (digest: string) => {
    const [alg, hex] = digest.split(':') as [string, string];
    return path.join(dataDir, 'blobs', alg, hex.slice(0, 2), hex);
  };
  return {
    uploadIds: () => readdir(path.join(dataDir, 'uploads')),
    async plantOrphanUpload(id) {
      const orphan = path.join(dataDir, 'uploads', id);
      await writeFile(orphan, 'partial');
      const old = new Date(Date.now() - 2 * 24 * 3600 * 1000);
      await utimes(orphan, old, old);
    },
    removeBlobBytes: (digest) => rm(blobFile(digest)),
    async copiesOf(digest) {
      const file = blobFile(digest);
      return (await readdir(path.dirname(file))).filter((f) => f === path.basename(file));
    },
    corruptBlobs: () => corruptBlobs(dataDir),
  };
}

// The helpers start Kiln without KILN_S3_PREFIX: keys are the bucket's own.
const keys = new S3Keys('');

function s3Stored(client: S3Client, bucket: string): Stored {
  async function* objects(prefix: string): AsyncIterable<string> {
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) if (o.Key) yield o.Key;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }
  return {
    async uploadIds() {
      const ids = new Set<string>();
      for await (const key of objects(keys.uploads)) ids.add(key.slice(keys.uploads.length).split('/')[0]!);
      const multipart = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: keys.uploads }));
      for (const u of multipart.Uploads ?? []) ids.add(u.Key!.slice(keys.uploads.length).split('/')[0]!);
      return [...ids].sort();
    },
    async plantOrphanUpload(id) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: keys.uploadData(id), Body: 'partial', ContentLength: 7 }));
    },
    async removeBlobBytes(digest) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: keys.blob(digest) }));
    },
    async copiesOf(digest) {
      const key = keys.blob(digest);
      const found: string[] = [];
      for await (const k of objects(key)) if (k === key) found.push(path.basename(k));
      return found;
    },
    async corruptBlobs() {
      const bad: string[] = [];
      for await (const key of objects(keys.blobs)) {
        const digest = keys.digestOf(key);
        if (!digest) {
          bad.push(`${key} (not a blob key)`);
          continue;
        }
        const [alg, hex] = digest.split(':') as [string, string];
        const body = (await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body as Readable;
        const h = createHash(alg);
        for await (const chunk of body) h.update(chunk as Buffer);
        if (h.digest('hex') !== hex) bad.push(key);
      }
      return bad;
    },
  };
}
