// Content-addressed blob storage in an S3 bucket, shared by every replica.
//
// Uploads: a session is a multipart upload behind uploads/<id>/data plus a
// small state object (uploads/<id>/state) that holds everything a replica
// needs to continue it: the parts so far, the staged tail and the saved
// SHA-256/SHA-512 states. Each chunk (PATCH) streams through part-sized
// buffers into UploadPart; what is left at its end becomes a part if it
// reaches S3's 5 MiB minimum, else a staged tail object that the next chunk
// reads back into its first part (or that becomes the last part at commit).
// Bytes between requests are always in the bucket, never in a process.
//
// Concurrency: before a request changes a session from seq N it writes
// uploads/<id>/claim-(N+1) with If-None-Match: * (honoured by S3 and RGW).
// Exactly one request wins it; a second PATCH, or a PUT racing a PATCH, on
// any replica gets UploadBusyError before it writes a byte, so two writers
// never use the same part numbers. A claim of a request that failed is
// removed once its part uploads have settled; one whose state write failed
// (the outcome is unknown) is kept, and the session reads as busy until it
// expires.
//
// Commit: the digest comes from the saved hash state (never from re-reading
// the bytes); only then is the multipart upload completed, at its session
// key, and server-side copied to blobs/<alg>/<..>/<hex>. A copy rather than
// completing at the blob key: the digest, and so the key, is unknown while
// parts are uploaded; CompleteMultipartUpload ignores If-None-Match and would
// overwrite; and a copy lands whole or not at all. On RGW a copy within the
// bucket shares the data instead of copying it (512 MiB in ~90 ms measured,
// where UploadPartCopy moves the bytes); S3 copies server-side. A session
// whose upload fails, or that is cancelled, is aborted and its objects
// deleted: nothing becomes visible under blobs/.
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createHash } from 'node:crypto';
import os from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestError, type DigestAlgorithm, type ParsedDigest } from '../../oci/digest.js';
import { DigestMismatchError, RangeMismatchError, SizeMismatchError, StorageUnavailableError, UploadBusyError, UploadNotFoundError } from '../errors.js';
import type { AppendOptions, BlobInfo, BlobSource, BlobStore, ByteRange, StoredBlob, StoredUpload } from '../types.js';
import { isConditionFailed, isNoSuchUpload, isNotFound } from './client.js';
import { MIN_PART_BYTES, type S3Config } from './config.js';
import { S3Keys } from './keys.js';
import { PartBuffers } from './part-buffers.js';
import { PartSink } from './part-sink.js';
import { RESUMABLE_ALGORITHMS, ResumableDigests } from './resumable-digest.js';
import { nextPartNumber, parseUploadState, serializeUploadState, type UploadState } from './upload-state.js';

/** The largest object one CopyObject may copy; bigger blobs are copied in parts. */
const MAX_COPY_BYTES = 5 * 1024 ** 3;
const COPY_PART_BYTES = 1024 ** 3;
/** Parts of one chunk being stored while the next fills. */
const PARTS_IN_FLIGHT = 2;
/** DeleteObjects takes at most this many keys. */
const DELETE_BATCH = 1000;

export type S3StoreSettings = Pick<S3Config, 'bucket' | 'prefix' | 'redirect' | 'redirectTtlSeconds' | 'partBytes' | 'uploadMemoryBytes'>;

export interface S3BlobStoreOptions {
  /** Digest algorithms hashed while uploads stream (default sha256 and sha512, so either can complete an upload). */
  digests?: readonly DigestAlgorithm[];
}

export class S3BlobStore implements BlobStore {
  readonly keys: S3Keys;
  private readonly bucket: string;
  private readonly buffers: PartBuffers;
  private readonly digests: readonly DigestAlgorithm[];

  constructor(
    private readonly client: S3Client,
    private readonly settings: S3StoreSettings,
    options: S3BlobStoreOptions = {},
  ) {
    this.bucket = settings.bucket;
    this.keys = new S3Keys(settings.prefix);
    this.buffers = new PartBuffers(settings.partBytes, Math.floor(settings.uploadMemoryBytes / settings.partBytes));
    this.digests = options.digests ?? RESUMABLE_ALGORITHMS;
  }

  async init(): Promise<void> {
    try {
      await this.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      const raw = err instanceof StorageUnavailableError ? err.cause : err;
      const status = (raw as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      const why = status === 404 ? 'it does not exist: create it first' : status === 403 ? 'access denied: check the AWS credentials' : (raw as Error).message;
      throw new Error(`S3 bucket ${this.bucket} is not usable (${why}); see KILN_S3_BUCKET, KILN_S3_ENDPOINT, KILN_S3_REGION`, { cause: err });
    }
  }

  // ---- blobs -----------------------------------------------------------------

  async stat(digest: string): Promise<BlobInfo | null> {
    const size = await this.objectSize(this.keys.blob(digest));
    return size === null ? null : { digest, size };
  }

  async open(digest: string, range?: ByteRange): Promise<Readable | null> {
    const got = await this.get(this.keys.blob(digest), range);
    return got?.body ?? null;
  }

  async openSource(digest: string, range: ByteRange): Promise<BlobSource | null> {
    const got = await this.get(this.keys.blob(digest), range);
    if (!got) return null;
    const length = range.end - range.start + 1;
    if (got.length !== length) {
      got.body.destroy();
      throw new Error(`object for ${digest} answered ${got.length} bytes for a range of ${length}`);
    }
    return { copyTo: (dest) => copyInto(got.body, dest) };
  }

  async redirectUrl(digest: string): Promise<string | null> {
    if (!this.settings.redirect) return null;
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.keys.blob(digest) }), {
      expiresIn: this.settings.redirectTtlSeconds,
    });
  }

  async readBytes(digest: string): Promise<Buffer | null> {
    const got = await this.get(this.keys.blob(digest));
    if (!got) return null;
    const chunks: Buffer[] = [];
    for await (const chunk of got.body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async putBytes(data: Uint8Array, expected: ParsedDigest): Promise<BlobInfo> {
    const actual = createHash(expected.algorithm).update(data).digest('hex');
    if (actual !== expected.hex) throw new DigestMismatchError(expected.digest, `${expected.algorithm}:${actual}`);
    try {
      // Content-addressed: an existing object is these very bytes, so a lost condition is success.
      await this.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.keys.blob(expected.digest), Body: data, ContentLength: data.length, IfNoneMatch: '*' }),
      );
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
    }
    return { digest: expected.digest, size: data.length };
  }

  async delete(digest: string): Promise<boolean> {
    const key = this.keys.blob(digest);
    if ((await this.objectSize(key)) === null) return false;
    await this.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    return true;
  }

  async *list(): AsyncIterable<StoredBlob> {
    for await (const object of this.listObjects(this.keys.blobs)) {
      const digest = this.keys.digestOf(object.key);
      if (digest) yield { digest, size: object.size, modifiedAt: object.modifiedAt };
    }
  }

  async *strays(): AsyncIterable<string> {
    for await (const object of this.listObjects(this.keys.blobs)) if (!this.keys.digestOf(object.key)) yield `s3://${this.bucket}/${object.key}`;
  }

  async quarantine(digest: string): Promise<string> {
    const target = this.keys.quarantine(digest, Date.now());
    await this.send(new CopyObjectCommand({ Bucket: this.bucket, Key: target, CopySource: this.copySource(this.keys.blob(digest)) }));
    await this.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keys.blob(digest) }));
    return `s3://${this.bucket}/${target}`;
  }

  // ---- uploads ---------------------------------------------------------------

  async createUpload(id: string): Promise<void> {
    const state: UploadState = { v: 1, seq: 0, size: 0, multipart: null, tail: null, digests: (await ResumableDigests.start(this.digests)).save() };
    try {
      await this.putText(this.keys.uploadState(id), serializeUploadState(state), true);
    } catch (err) {
      if (isConditionFailed(err)) throw new Error(`upload ${id} already exists`);
      throw err;
    }
  }

  async uploadSize(id: string): Promise<number | null> {
    return (await this.readState(id))?.size ?? null;
  }

  async appendUpload(id: string, body: Readable, options: AppendOptions = {}): Promise<number> {
    const state = await this.requireState(id);
    if (options.expectedOffset !== undefined && options.expectedOffset !== state.size) {
      throw new RangeMismatchError(state.size, options.expectedOffset);
    }
    const seq = state.seq + 1;
    await this.claim(id, seq);
    const digests = await ResumableDigests.resume(state.digests);
    let creating: Promise<string> | null = null;
    let createdUploadId: string | null = null;
    let stagedTail: string | null = null;
    let stateWritten = false;
    const sink = new PartSink({
      buffers: this.buffers,
      maxInFlight: PARTS_IN_FLIGHT,
      firstPartNumber: nextPartNumber(state),
      loadPrefix: state.tail ? (into) => this.readInto(state.tail!.key, state.tail!.size, into) : null,
      hash: (chunk) => digests.update(chunk),
      uploadPart: async (n, bytes) => {
        // One multipart upload per session, even when the first parts are sent at once.
        const uploadId = state.multipart?.uploadId ?? (await (creating ??= this.createMultipart(id).then((made) => (createdUploadId = made))));
        return this.uploadPart(id, uploadId, n, bytes);
      },
    });
    try {
      await pipeline(body, sink);
      if (options.expectedLength !== undefined && sink.received !== options.expectedLength) {
        throw new SizeMismatchError(`received ${sink.received} bytes but Content-Length said ${options.expectedLength}`);
      }
      if (sink.received === 0) {
        await this.releaseClaim(id, seq);
        return state.size;
      }
      const { parts, rest } = await sink.finish();
      let tail: UploadState['tail'] = null;
      if (rest.length >= MIN_PART_BYTES) {
        parts.push(await sink.storeRestAsPart(rest));
      } else if (rest.length > 0) {
        stagedTail = this.keys.uploadTail(id, seq);
        await this.send(new PutObjectCommand({ Bucket: this.bucket, Key: stagedTail, Body: rest, ContentLength: rest.length }));
        tail = { key: stagedTail, size: rest.length };
      }
      await sink.dispose();
      const uploadId = state.multipart?.uploadId ?? createdUploadId;
      const allParts = [...(state.multipart?.parts ?? []), ...parts];
      const next: UploadState = {
        v: 1,
        seq,
        size: state.size + sink.received,
        multipart: uploadId ? { uploadId, parts: allParts } : null,
        tail,
        digests: digests.save(),
      };
      stateWritten = true;
      await this.putText(this.keys.uploadState(id), serializeUploadState(next), false);
      // The old tail is inside the new parts or the new tail now.
      if (state.tail) await this.deleteQuietly([state.tail.key]);
      return next.size;
    } catch (err) {
      await sink.dispose();
      if (!stateWritten) {
        if (createdUploadId) await this.abortMultipart(id, createdUploadId);
        if (stagedTail) await this.deleteQuietly([stagedTail]);
        await this.releaseClaim(id, seq);
      }
      throw err;
    }
  }

  async commitUpload(id: string, expected: ParsedDigest): Promise<BlobInfo> {
    const state = await this.requireState(id);
    const seq = state.seq + 1;
    await this.claim(id, seq);
    const digests = await ResumableDigests.resume(state.digests);
    if (!digests.has(expected.algorithm)) {
      await this.releaseClaim(id, seq);
      throw new DigestError(`this registry verifies uploads by ${this.digests.join(' or ')}, not ${expected.algorithm}`, true);
    }
    const actual = digests.hex(expected.algorithm);
    if (actual !== expected.hex) {
      await this.releaseClaim(id, seq);
      throw new DigestMismatchError(expected.digest, `${expected.algorithm}:${actual}`);
    }
    const blobKey = this.keys.blob(expected.digest);
    if ((await this.objectSize(blobKey)) === state.size) {
      // Stored already (same digest, same bytes): this session's parts are not needed.
      if (state.multipart) await this.abortMultipart(id, state.multipart.uploadId);
    } else {
      await this.assemble(id, state, blobKey);
    }
    const stored = await this.objectSize(blobKey);
    if (stored !== state.size) throw new Error(`the object store holds ${stored ?? 'no'} bytes for ${expected.digest} after the upload of ${state.size}`);
    await this.removeSession(id, state, seq);
    return { digest: expected.digest, size: state.size };
  }

  async abortUpload(id: string): Promise<void> {
    const state = await this.readState(id).catch(() => null);
    if (state?.multipart) await this.abortMultipart(id, state.multipart.uploadId);
    // Multipart uploads a crashed request created but never recorded.
    const listed = await this.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.keys.upload(id) }));
    for (const upload of listed.Uploads ?? []) if (upload.UploadId) await this.abortMultipart(id, upload.UploadId);
    const keys: string[] = [];
    for await (const object of this.listObjects(this.keys.upload(id))) keys.push(object.key);
    await this.deleteKeys(keys);
  }

  async *listUploads(): AsyncIterable<StoredUpload> {
    const found = new Map<string, StoredUpload>();
    const note = (id: string | null, at: Date | undefined, size: number) => {
      if (!id || !at) return;
      const seen = found.get(id) ?? { id, modifiedAt: at, size: 0 };
      if (seen.modifiedAt < at) seen.modifiedAt = at;
      seen.size += size;
      found.set(id, seen);
    };
    for await (const object of this.listObjects(this.keys.uploads)) note(this.keys.uploadIdOf(object.key), object.modifiedAt, object.size);
    // Multipart uploads too: one a crashed request started may have no object beside it.
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.keys.uploads, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
      );
      for (const upload of page.Uploads ?? []) note(upload.Key ? this.keys.uploadIdOf(upload.Key) : null, upload.Initiated, 0);
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    yield* found.values();
  }

  // ---- upload internals --------------------------------------------------------

  /** Makes the verified session the object at `blobKey`. */
  private async assemble(id: string, state: UploadState, blobKey: string): Promise<void> {
    if (!state.multipart) {
      if (state.tail) await this.copy(state.tail.key, blobKey, state.size);
      else await this.send(new PutObjectCommand({ Bucket: this.bucket, Key: blobKey, Body: Buffer.alloc(0), ContentLength: 0 }));
      return;
    }
    const { uploadId } = state.multipart;
    const parts = [...state.multipart.parts];
    if (state.tail) {
      // The last part may be smaller than 5 MiB: the staged tail goes in as it is, copied server-side.
      const n = nextPartNumber(state);
      const copied = await this.send(
        new UploadPartCopyCommand({ Bucket: this.bucket, Key: this.keys.uploadData(id), UploadId: uploadId, PartNumber: n, CopySource: this.copySource(state.tail.key) }),
      );
      parts.push({ n, etag: requireEtag(copied.CopyPartResult?.ETag, 'UploadPartCopy'), size: state.tail.size });
    }
    await this.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: this.keys.uploadData(id),
        UploadId: uploadId,
        MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.n, ETag: p.etag })) },
      }),
    );
    await this.copy(this.keys.uploadData(id), blobKey, state.size);
  }

  /** Server-side copy; objects above CopyObject's 5 GiB limit go part by part. */
  private async copy(from: string, to: string, size: number): Promise<void> {
    if (size <= MAX_COPY_BYTES) {
      await this.send(new CopyObjectCommand({ Bucket: this.bucket, Key: to, CopySource: this.copySource(from) }));
      return;
    }
    const { UploadId } = await this.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: to }));
    try {
      const parts: { PartNumber: number; ETag: string }[] = [];
      for (let start = 0, n = 1; start < size; start += COPY_PART_BYTES, n++) {
        const end = Math.min(size, start + COPY_PART_BYTES) - 1;
        const r = await this.send(
          new UploadPartCopyCommand({ Bucket: this.bucket, Key: to, UploadId, PartNumber: n, CopySource: this.copySource(from), CopySourceRange: `bytes=${start}-${end}` }),
        );
        parts.push({ PartNumber: n, ETag: requireEtag(r.CopyPartResult?.ETag, 'UploadPartCopy') });
      }
      await this.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: to, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (err) {
      await this.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: to, UploadId })).catch(() => undefined);
      throw err;
    }
  }

  private async createMultipart(id: string): Promise<string> {
    const r = await this.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.keys.uploadData(id) }));
    if (!r.UploadId) throw new Error('CreateMultipartUpload returned no UploadId');
    return r.UploadId;
  }

  private async uploadPart(id: string, uploadId: string, n: number, bytes: Buffer): Promise<string> {
    const r = await this.send(
      new UploadPartCommand({ Bucket: this.bucket, Key: this.keys.uploadData(id), UploadId: uploadId, PartNumber: n, Body: bytes, ContentLength: bytes.length }),
    );
    return requireEtag(r.ETag, 'UploadPart');
  }

  private async abortMultipart(id: string, uploadId: string): Promise<void> {
    try {
      await this.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.keys.uploadData(id), UploadId: uploadId }));
    } catch (err) {
      if (!isNoSuchUpload(err) && !isNotFound(err)) throw err;
    }
  }

  /** Wins the right to move the session to `seq`, or throws UploadBusyError. */
  private async claim(id: string, seq: number): Promise<void> {
    try {
      await this.putText(this.keys.uploadClaim(id, seq), `${os.hostname()} pid ${process.pid} at ${new Date().toISOString()}\n`, true);
    } catch (err) {
      if (isConditionFailed(err)) throw new UploadBusyError(id);
      throw err;
    }
  }

  private async releaseClaim(id: string, seq: number): Promise<void> {
    await this.deleteQuietly([this.keys.uploadClaim(id, seq)]);
  }

  /** Deletes everything a committed session left: its state, claims, tail and completed data. */
  private async removeSession(id: string, state: UploadState, lastSeq: number): Promise<void> {
    const keys = [this.keys.uploadData(id), this.keys.uploadState(id)];
    if (state.tail) keys.push(state.tail.key);
    for (let seq = 1; seq <= lastSeq; seq++) keys.push(this.keys.uploadClaim(id, seq));
    await this.deleteKeys(keys);
  }

  private async readState(id: string): Promise<UploadState | null> {
    const got = await this.get(this.keys.uploadState(id));
    if (!got) return null;
    const chunks: Buffer[] = [];
    for await (const chunk of got.body) chunks.push(chunk as Buffer);
    return parseUploadState(Buffer.concat(chunks).toString('utf8'));
  }

  private async requireState(id: string): Promise<UploadState> {
    const state = await this.readState(id);
    if (!state) throw new UploadNotFoundError(id);
    return state;
  }

  /** Reads a staged tail into the start of `into`; its length must be `size`. */
  private async readInto(key: string, size: number, into: Buffer): Promise<number> {
    const got = await this.get(key);
    if (!got) throw new Error(`the staged bytes of an upload (${key}) are missing`);
    let filled = 0;
    for await (const chunk of got.body as AsyncIterable<Buffer>) {
      if (filled + chunk.length > size) throw new Error(`the staged bytes of an upload (${key}) are longer than its state says (${size})`);
      chunk.copy(into, filled);
      filled += chunk.length;
    }
    if (filled !== size) throw new Error(`the staged bytes of an upload (${key}) are ${filled} bytes, its state says ${size}`);
    return filled;
  }

  // ---- S3 plumbing ---------------------------------------------------------------

  private async get(key: string, range?: ByteRange): Promise<{ body: Readable; length: number } | null> {
    try {
      const r = await this.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      );
      return { body: r.Body as Readable, length: r.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  private async objectSize(key: string): Promise<number | null> {
    try {
      const r = await this.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return r.ContentLength ?? 0;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  private async putText(key: string, text: string, onlyIfAbsent: boolean): Promise<void> {
    const body = Buffer.from(text);
    await this.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length, IfNoneMatch: onlyIfAbsent ? '*' : undefined }),
    );
  }

  private async *listObjects(prefix: string): AsyncIterable<{ key: string; size: number; modifiedAt: Date }> {
    let token: string | undefined;
    do {
      const page = await this.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        if (o.Key) yield { key: o.Key, size: o.Size ?? 0, modifiedAt: o.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  private async deleteKeys(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const r = await this.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }));
      const failed = (r.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0) throw new Error(`S3 could not delete ${failed.length} object(s), e.g. ${failed[0]!.Key}: ${failed[0]!.Code} ${failed[0]!.Message ?? ''}`);
    }
  }

  /** Best effort, for cleanup on a path that is already failing: the upload janitor removes what is left. */
  private async deleteQuietly(keys: string[]): Promise<void> {
    await this.deleteKeys(keys).catch(() => undefined);
  }

  /**
   * Every S3 call: the answers the store expects (absent keys, lost
   * conditions, finished multipart uploads) come back as the SDK's errors;
   * anything else means the object store is failing, and says so.
   */
  private readonly send = ((command: { constructor: { name: string } }) =>
    (this.client.send as (c: unknown) => Promise<unknown>).call(this.client, command).catch((err: unknown) => {
      if (isNotFound(err) || isConditionFailed(err) || isNoSuchUpload(err)) throw err;
      throw new StorageUnavailableError(`${command.constructor.name.replace(/Command$/, '')}: ${(err as Error).name || 'error'}`, err);
    })) as unknown as S3Client['send'];

  private copySource(key: string): string {
    return `${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }
}

/** The part's ETag, quoted as CompleteMultipartUpload wants it (RGW answers UploadPartCopy with a bare one). */
function requireEtag(etag: string | undefined, operation: string): string {
  if (!etag) throw new Error(`${operation} returned no ETag`);
  return etag.startsWith('"') ? etag : `"${etag}"`;
}

/**
 * Pipes an object body into `dest`. A body that fails or ends short destroys
 * `dest` (the client sees a truncated answer, never wrong bytes) and
 * rejects; `dest` closing first (the client went away) ends the copy quietly.
 */
async function copyInto(body: Readable, dest: Writable): Promise<void> {
  try {
    await pipeline(body, dest);
  } catch (err) {
    if (body.errored || !dest.destroyed) {
      dest.destroy();
      throw err;
    }
    body.destroy();
  }
}

