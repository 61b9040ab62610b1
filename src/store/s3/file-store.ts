// The FileStore contract (store/file-store.ts) in an S3 bucket, below the
// configured prefix with the data directory's layout (images/<hex>/…,
// builds/<id>/…). Streams and local files go up with lib-storage's Upload:
// one PutObject when small, else a multipart upload that becomes visible
// whole at CompleteMultipartUpload and is aborted on any failure, so a
// reader never sees part of a file. Downloads may be redirected to a
// presigned GET.
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { checkFileKey, limitBytes, type FileInfo, type FileStore, type FileWriteOptions } from '../file-store.js';
import type { ByteRange } from '../types.js';
import { isNoSuchUpload, isNotFound } from './client.js';
import { S3Keys } from './keys.js';
import type { S3StoreSettings } from './s3-blob-store.js';

/** Parts of one file being uploaded at once (each buffered in memory by lib-storage). */
const QUEUE_SIZE = 2;

export class S3FileStore implements FileStore {
  private readonly keys: S3Keys;
  private readonly bucket: string;

  constructor(
    private readonly client: S3Client,
    private readonly settings: S3StoreSettings,
  ) {
    this.keys = new S3Keys(settings.prefix);
    this.bucket = settings.bucket;
  }

  async init(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
  }

  async stat(key: string): Promise<FileInfo | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return { key, size: r.ContentLength ?? 0, modifiedAt: r.LastModified ?? new Date(0) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async open(key: string, range?: ByteRange): Promise<Readable | null> {
    try {
      const r = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      );
      return r.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async readBytes(key: string): Promise<Buffer | null> {
    const body = await this.open(key);
    if (!body) return null;
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async writeBytes(key: string, data: Uint8Array): Promise<FileInfo> {
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Body: data, ContentLength: data.length }));
    return this.statOrFail(key);
  }

  async write(key: string, body: Readable, options: FileWriteOptions = {}): Promise<FileInfo> {
    const counted = new PassThrough();
    // The limit fails the pipeline, which fails the Upload's body, which aborts the multipart upload.
    const feeding = pipeline(body, limitBytes(options), counted);
    const uploading = this.upload(key, counted);
    uploading.catch((err: Error) => counted.destroy(err)); // a failed upload stops reading the body
    await Promise.all([feeding, uploading]);
    return this.statOrFail(key);
  }

  async putFile(key: string, localFile: string): Promise<FileInfo> {
    await this.upload(key, createReadStream(localFile, { highWaterMark: 1024 * 1024 }));
    await unlink(localFile);
    return this.statOrFail(key);
  }

  async delete(key: string): Promise<boolean> {
    if (!(await this.stat(key))) return false;
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    return true;
  }

  async deletePrefix(prefix: string): Promise<number> {
    const keys: string[] = [];
    for await (const file of this.list(prefix)) keys.push(this.objectKey(file.key));
    for (let i = 0; i < keys.length; i += 1000) {
      const r = await this.client.send(
        new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }),
      );
      const failed = (r.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0) throw new Error(`S3 could not delete ${failed.length} file(s), e.g. ${failed[0]!.Key}: ${failed[0]!.Code}`);
    }
    return keys.length;
  }

  async *list(prefix: string): AsyncIterable<FileInfo> {
    if (prefix !== '') checkFileKey(prefix, true);
    const full = this.keys.file(prefix);
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: full, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        if (o.Key) yield { key: o.Key.slice(this.settings.prefix.length), size: o.Size ?? 0, modifiedAt: o.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async removeUnfinished(prefix: string, before: Date): Promise<number> {
    const full = this.keys.file(checkFileKey(prefix, true));
    let count = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: full, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
      );
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || !u.Initiated || u.Initiated.getTime() >= before.getTime()) continue;
        try {
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }));
          count++;
        } catch (err) {
          if (!isNoSuchUpload(err) && !isNotFound(err)) throw err; // finished or aborted meanwhile
        }
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return count;
  }

  async redirectUrl(key: string, options: { filename?: string } = {}): Promise<string | null> {
    if (!this.settings.redirect) return null;
    const disposition = options.filename ? `attachment; filename="${options.filename.replace(/["\\\r\n]/g, '_')}"` : undefined;
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), ResponseContentDisposition: disposition }), {
      expiresIn: this.settings.redirectTtlSeconds,
    });
  }

  private objectKey(key: string): string {
    return this.keys.file(checkFileKey(key));
  }

  private async upload(key: string, body: Readable): Promise<void> {
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.objectKey(key), Body: body },
      partSize: this.settings.partBytes,
      queueSize: QUEUE_SIZE,
      leavePartsOnError: false,
    });
    await upload.done();
  }

  private async statOrFail(key: string): Promise<FileInfo> {
    const info = await this.stat(key);
    if (!info) throw new Error(`${key} is missing right after it was stored`);
    return info;
  }
}
