// The BlobStore contract (src/store/types.ts): one suite that every backend
// passes (filesystem, S3). Sizes straddle S3's 5 MiB minimum part so that the
// S3 store's parts, staged tails and joins are all exercised; a backend's own
// test file adds what only it does (redirects, several processes).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { parseDigest, type DigestAlgorithm, type ParsedDigest } from '../../src/oci/digest.js';
import { DigestMismatchError, RangeMismatchError, SizeMismatchError, UploadBusyError, UploadNotFoundError } from '../../src/store/errors.js';
import type { BlobStore } from '../../src/store/types.js';

const MiB = 1024 * 1024;
let uploads = 0;

export function digestOf(bytes: Buffer, algorithm: DigestAlgorithm = 'sha256'): ParsedDigest {
  return parseDigest(`${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`);
}

export function newUploadId(): string {
  return `contract-${process.pid}-${++uploads}-${randomBytes(4).toString('hex')}`;
}

/** A body that arrives in pieces of `piece` bytes, like a socket. */
export function bodyOf(bytes: Buffer, piece = 64 * 1024): Readable {
  const pieces: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += piece) pieces.push(bytes.subarray(i, i + piece));
  return Readable.from(pieces);
}

/** Uploads `bytes` cut into chunks of the given sizes (the last one takes the rest) and commits it. */
export async function uploadInChunks(store: BlobStore, bytes: Buffer, chunkSizes: number[], algorithm: DigestAlgorithm = 'sha256'): Promise<ParsedDigest> {
  const id = newUploadId();
  await store.createUpload(id);
  let offset = 0;
  for (const [i, size] of chunkSizes.entries()) {
    const end = i === chunkSizes.length - 1 ? bytes.length : Math.min(bytes.length, offset + size);
    const chunk = bytes.subarray(offset, end);
    assert.equal(await store.appendUpload(id, bodyOf(chunk), { expectedOffset: offset, expectedLength: chunk.length }), end);
    offset = end;
  }
  const digest = digestOf(bytes, algorithm);
  assert.deepEqual(await store.commitUpload(id, digest), { digest: digest.digest, size: bytes.length });
  return digest;
}

async function readAll(store: BlobStore, digest: string): Promise<Buffer> {
  const stream = await store.open(digest);
  assert.ok(stream, `${digest} should be stored`);
  return buffer(stream);
}

async function listed(store: BlobStore): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  for await (const b of store.list()) {
    assert.ok(b.modifiedAt instanceof Date && !Number.isNaN(b.modifiedAt.getTime()), 'list() gives a modification time');
    found.set(b.digest, b.size);
  }
  return found;
}

async function uploadIds(store: BlobStore): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const u of store.listUploads()) ids.add(u.id);
  return ids;
}

export function blobStoreContract(name: string, makeStore: () => Promise<BlobStore>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let store: BlobStore;
    const fresh = async () => (store ??= await makeStore());

    it('putBytes verifies, stores once, and every read path returns the bytes', async () => {
      const s = await fresh();
      const bytes = randomBytes(10_000);
      const d = digestOf(bytes);
      await assert.rejects(s.putBytes(bytes, digestOf(Buffer.from('other'))), DigestMismatchError);
      assert.equal(await s.stat(d.digest), null);
      assert.deepEqual(await s.putBytes(bytes, d), { digest: d.digest, size: bytes.length });
      assert.deepEqual(await s.putBytes(bytes, d), { digest: d.digest, size: bytes.length }, 'a second put of the same bytes is fine');
      assert.deepEqual(await s.stat(d.digest), { digest: d.digest, size: bytes.length });
      assert.ok((await s.readBytes(d.digest))!.equals(bytes));
      assert.ok((await readAll(s, d.digest)).equals(bytes));
      assert.ok((await buffer((await s.open(d.digest, { start: 100, end: 199 }))!)).equals(bytes.subarray(100, 200)));
      for (const [start, end] of [[0, bytes.length - 1], [5, 5], [9_000, bytes.length - 1]] as const) {
        const source = await s.openSource(d.digest, { start, end });
        const dest = new PassThrough();
        const got = buffer(dest);
        await source!.copyTo(dest);
        assert.ok((await got).equals(bytes.subarray(start, end + 1)), `openSource ${start}-${end}`);
      }
      assert.equal((await listed(s)).get(d.digest), bytes.length);
    });

    it('a missing blob is null everywhere and delete says whether it was there', async () => {
      const s = await fresh();
      const missing = digestOf(randomBytes(16)).digest;
      assert.equal(await s.stat(missing), null);
      assert.equal(await s.open(missing), null);
      assert.equal(await s.openSource(missing, { start: 0, end: 0 }), null);
      assert.equal(await s.readBytes(missing), null);
      assert.equal(await s.delete(missing), false);
      const bytes = randomBytes(100);
      const d = digestOf(bytes);
      await s.putBytes(bytes, d);
      assert.equal(await s.delete(d.digest), true);
      assert.equal(await s.stat(d.digest), null);
      assert.equal((await listed(s)).has(d.digest), false);
    });

    for (const [label, size, chunks] of [
      ['one chunk of a few bytes', 10, [10]],
      ['an empty blob', 0, [0]],
      ['one chunk larger than two parts', 12 * MiB + 3, [12 * MiB + 3]],
      ['small chunks that add up past the 5 MiB minimum part', 6 * MiB + 11, [MiB, 1, 2 * MiB, 3, 2 * MiB, 7]],
      ['a staged tail joined by a large chunk', 13 * MiB, [3 * MiB, 10 * MiB]],
      ['chunks of exactly the minimum part', 10 * MiB + 1, [5 * MiB, 5 * MiB, 1]],
      ['one-byte chunks then a large one', 6 * MiB + 2, [1, 1, 6 * MiB]],
    ] as const) {
      it(`upload: ${label}`, async () => {
        const s = await fresh();
        const bytes = randomBytes(size);
        const d = await uploadInChunks(s, bytes, [...chunks]);
        assert.deepEqual(await s.stat(d.digest), { digest: d.digest, size });
        if (size > 0) assert.ok((await readAll(s, d.digest)).equals(bytes));
        if (size > MiB) {
          const start = size - MiB - 17;
          const part = await s.open(d.digest, { start, end: size - 1 });
          assert.ok((await buffer(part!)).equals(bytes.subarray(start)), 'a range across part boundaries');
        }
      });
    }

    it('sizes and ids: a fresh session is empty, a committed one is gone', async () => {
      const s = await fresh();
      const id = newUploadId();
      assert.equal(await s.uploadSize(id), null);
      await s.createUpload(id);
      assert.equal(await s.uploadSize(id), 0);
      assert.ok((await uploadIds(s)).has(id));
      const bytes = randomBytes(1000);
      await s.appendUpload(id, bodyOf(bytes));
      assert.equal(await s.uploadSize(id), 1000);
      await s.commitUpload(id, digestOf(bytes));
      assert.equal(await s.uploadSize(id), null);
      await assert.rejects(s.appendUpload(id, bodyOf(bytes)), UploadNotFoundError);
      await s.abortUpload(id); // whatever is left of it: nothing, and that is fine
      assert.equal((await uploadIds(s)).has(id), false);
    });

    it('sha512: a chunked upload completes by a sha512 digest', async () => {
      const s = await fresh();
      const bytes = randomBytes(6 * MiB + 5);
      const d = await uploadInChunks(s, bytes, [2 * MiB, 4 * MiB, 5], 'sha512');
      assert.ok((await readAll(s, d.digest)).equals(bytes));
    });

    it('a chunk that does not start where the upload ends is refused and changes nothing', async () => {
      const s = await fresh();
      const id = newUploadId();
      await s.createUpload(id);
      const bytes = randomBytes(3000);
      await s.appendUpload(id, bodyOf(bytes.subarray(0, 1000)), { expectedOffset: 0 });
      for (const offset of [0, 500, 2000]) {
        const err = await s.appendUpload(id, bodyOf(bytes.subarray(1000)), { expectedOffset: offset }).catch((e: unknown) => e);
        assert.ok(err instanceof RangeMismatchError);
        assert.equal(err.currentSize, 1000);
      }
      assert.equal(await s.uploadSize(id), 1000);
      await s.appendUpload(id, bodyOf(bytes.subarray(1000)), { expectedOffset: 1000 });
      await s.commitUpload(id, digestOf(bytes));
      assert.ok((await readAll(s, digestOf(bytes).digest)).equals(bytes));
    });

    it('a chunk shorter than its declared length, or one that fails midway, leaves a session the client can resume', async () => {
      const s = await fresh();
      const id = newUploadId();
      await s.createUpload(id);
      const bytes = randomBytes(7 * MiB);
      await s.appendUpload(id, bodyOf(bytes.subarray(0, 2 * MiB)));
      await assert.rejects(s.appendUpload(id, bodyOf(bytes.subarray(2 * MiB, 3 * MiB)), { expectedLength: 2 * MiB }), SizeMismatchError);
      // A store may keep what arrived or drop the chunk; either way the size it reports is where the client goes on.
      const afterShort = (await s.uploadSize(id))!;
      assert.ok(afterShort === 2 * MiB || afterShort === 3 * MiB, `size after a short chunk: ${afterShort}`);
      let sent = false;
      const failing = new Readable({
        read() {
          if (sent) return void this.destroy(new Error('client went away'));
          sent = true;
          this.push(bytes.subarray(afterShort, afterShort + 4 * MiB));
        },
      });
      await assert.rejects(s.appendUpload(id, failing, { expectedOffset: afterShort }), /client went away/);
      const resumeAt = (await s.uploadSize(id))!;
      assert.ok(resumeAt >= afterShort && resumeAt <= afterShort + 4 * MiB, `resume offset ${resumeAt}`);
      await s.appendUpload(id, bodyOf(bytes.subarray(resumeAt)), { expectedOffset: resumeAt });
      await s.commitUpload(id, digestOf(bytes));
      assert.ok((await readAll(s, digestOf(bytes).digest)).equals(bytes));
    });

    it('a wrong digest at commit makes nothing visible; abort removes the session', async () => {
      const s = await fresh();
      const id = newUploadId();
      await s.createUpload(id);
      const bytes = randomBytes(6 * MiB);
      await s.appendUpload(id, bodyOf(bytes));
      const claimed = digestOf(randomBytes(8));
      await assert.rejects(s.commitUpload(id, claimed), DigestMismatchError);
      await assert.rejects(s.commitUpload(id, digestOf(randomBytes(8), 'sha512')), DigestMismatchError);
      assert.equal(await s.stat(claimed.digest), null);
      assert.equal(await s.stat(digestOf(bytes).digest), null);
      await s.abortUpload(id);
      assert.equal(await s.uploadSize(id), null);
      assert.equal((await uploadIds(s)).has(id), false);
      assert.equal(await s.stat(digestOf(bytes).digest), null);
    });

    it('a cancelled upload leaves nothing', async () => {
      const s = await fresh();
      const id = newUploadId();
      await s.createUpload(id);
      const bytes = randomBytes(9 * MiB);
      await s.appendUpload(id, bodyOf(bytes.subarray(0, 8 * MiB)));
      await s.appendUpload(id, bodyOf(bytes.subarray(8 * MiB)));
      await s.abortUpload(id);
      assert.equal(await s.uploadSize(id), null);
      assert.equal((await uploadIds(s)).has(id), false);
      await assert.rejects(s.commitUpload(id, digestOf(bytes)), UploadNotFoundError);
      assert.equal(await s.stat(digestOf(bytes).digest), null);
    });

    it('committing bytes that are stored already keeps the one blob', async () => {
      const s = await fresh();
      const bytes = randomBytes(6 * MiB + 1);
      const first = await uploadInChunks(s, bytes, [6 * MiB + 1]);
      const second = await uploadInChunks(s, bytes, [MiB, 5 * MiB + 1]);
      assert.equal(first.digest, second.digest);
      assert.ok((await readAll(s, first.digest)).equals(bytes));
    });

    it('a second chunk while one is being received is refused, and the first is not disturbed', async () => {
      const s = await fresh();
      const id = newUploadId();
      await s.createUpload(id);
      const bytes = randomBytes(6 * MiB);
      const slow = new PassThrough();
      const first = s.appendUpload(id, slow, { expectedOffset: 0 });
      slow.write(bytes.subarray(0, MiB));
      // Wait until the first chunk has got hold of the session (its first bytes are being read).
      await waitFor(async () => slow.readableLength === 0);
      const second = await s.appendUpload(id, bodyOf(randomBytes(100)), { expectedOffset: 0 }).catch((e: unknown) => e);
      assert.ok(second instanceof UploadBusyError || second instanceof RangeMismatchError, `second chunk: ${String(second)}`);
      const commitDuring = await s.commitUpload(id, digestOf(bytes)).catch((e: unknown) => e);
      assert.ok(commitDuring instanceof UploadBusyError || commitDuring instanceof DigestMismatchError, `commit during a chunk: ${String(commitDuring)}`);
      slow.end(bytes.subarray(MiB));
      assert.equal(await first, bytes.length);
      await s.commitUpload(id, digestOf(bytes));
      assert.ok((await readAll(s, digestOf(bytes).digest)).equals(bytes));
    });

    it('quarantine moves a blob where nothing serves it', async () => {
      const s = await fresh();
      const bytes = randomBytes(500);
      const d = digestOf(bytes);
      await s.putBytes(bytes, d);
      const where = await s.quarantine(d.digest);
      assert.ok(where.length > 0);
      assert.equal(await s.stat(d.digest), null);
      assert.equal(await s.open(d.digest), null);
    });
  });
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
