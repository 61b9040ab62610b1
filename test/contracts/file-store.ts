// The FileStore contract (src/store/file-store.ts): one suite for every
// backend (the data directory, S3). Sizes cross S3's 5 MiB part minimum so
// multipart writes are exercised.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { FileTooLargeError, fileKeys, type FileStore } from '../../src/store/file-store.js';

const MiB = 1024 * 1024;
const digest = (c: string) => `sha256:${c.repeat(64)}`;

async function listKeys(store: FileStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const f of store.list(prefix)) keys.push(f.key);
  return keys.sort();
}

function pieces(bytes: Buffer, piece = 256 * 1024): Readable {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += piece) out.push(bytes.subarray(i, i + piece));
  return Readable.from(out);
}

/** `scratch` is a local directory for staged files (a worker's scratch disk). */
export function fileStoreContract(name: string, makeStore: () => Promise<FileStore>, scratch: () => string): void {
  describe(`FileStore contract: ${name}`, () => {
    let store: FileStore;
    const fresh = async () => (store ??= await makeStore());

    it('small files: write, read, overwrite, stat, delete', async () => {
      const s = await fresh();
      const key = fileKeys.imageConfig(digest('a'));
      assert.equal(await s.stat(key), null);
      assert.equal(await s.readBytes(key), null);
      assert.equal(await s.open(key), null);
      const info = await s.writeBytes(key, Buffer.from('{"v":1}'));
      assert.equal(info.key, key);
      assert.equal(info.size, 7);
      assert.equal((await s.readBytes(key))!.toString(), '{"v":1}');
      await s.writeBytes(key, Buffer.from('{"v":22}'));
      assert.equal((await s.readBytes(key))!.toString(), '{"v":22}');
      const st = await s.stat(key);
      assert.equal(st!.size, 8);
      assert.ok(st!.modifiedAt instanceof Date);
      assert.equal(await s.delete(key), true);
      assert.equal(await s.delete(key), false);
      assert.equal(await s.stat(key), null);
    });

    it('a streamed file larger than a part comes back whole and by ranges', async () => {
      const s = await fresh();
      const key = fileKeys.buildSource('b-stream');
      const bytes = randomBytes(11 * MiB + 5);
      const info = await s.write(key, pieces(bytes));
      assert.equal(info.size, bytes.length);
      assert.ok((await buffer((await s.open(key))!)).equals(bytes));
      const range = await s.open(key, { start: 5 * MiB - 3, end: 5 * MiB + 3 });
      assert.ok((await buffer(range!)).equals(bytes.subarray(5 * MiB - 3, 5 * MiB + 4)));
    });

    it('a stream past maxBytes fails with the limit named and stores nothing', async () => {
      const s = await fresh();
      const key = fileKeys.buildSource('b-limit');
      const err = await s.write(key, pieces(randomBytes(6 * MiB)), { maxBytes: 5 * MiB + 1, limitName: 'KILN_TEST_LIMIT' }).catch((e: unknown) => e);
      assert.ok(err instanceof FileTooLargeError, String(err));
      assert.match(err.message, /KILN_TEST_LIMIT/);
      assert.equal(await s.stat(key), null);
    });

    it('a stream that fails midway stores nothing and leaves an older file as it was', async () => {
      const s = await fresh();
      const key = fileKeys.buildLog('b-fail');
      await s.writeBytes(key, Buffer.from('old log\n'));
      let sent = 0;
      const failing = new Readable({
        read() {
          if (sent >= 7 * MiB) return void this.destroy(new Error('worker died'));
          this.push(randomBytes(MiB));
          sent += MiB;
        },
      });
      await assert.rejects(s.write(key, failing), /worker died/);
      assert.equal((await s.readBytes(key))!.toString(), 'old log\n');
      assert.deepEqual(await listKeys(s, fileKeys.buildDir('b-fail')), [key]);
    });

    it('putFile publishes a staged local disk and removes the local copy', async () => {
      const s = await fresh();
      const local = path.join(scratch(), `disk-${randomBytes(4).toString('hex')}.ext4`);
      const bytes = randomBytes(6 * MiB + 1);
      await writeFile(local, bytes);
      const key = fileKeys.imageDisk(digest('c'));
      const info = await s.putFile(key, local);
      assert.equal(info.size, bytes.length);
      assert.ok((await buffer((await s.open(key))!)).equals(bytes));
      await assert.rejects(writeFile(local, '', { flag: 'r+' }), /ENOENT/, 'the staged file is gone');
    });

    it('list and deletePrefix work on one image or build at a time', async () => {
      const s = await fresh();
      const d = digest('d');
      await s.writeBytes(fileKeys.imageConfig(d), Buffer.from('{}'));
      await s.write(fileKeys.imageDisk(d), pieces(randomBytes(1000)));
      await s.writeBytes(fileKeys.imageConfig(digest('e')), Buffer.from('{}'));
      assert.deepEqual(await listKeys(s, fileKeys.imageDir(d)), [fileKeys.imageConfig(d), fileKeys.imageDisk(d)]);
      const all = await listKeys(s, 'images/');
      assert.ok(all.includes(fileKeys.imageConfig(digest('e'))) && all.includes(fileKeys.imageDisk(d)));
      assert.equal(await s.deletePrefix(fileKeys.imageDir(d)), 2);
      assert.deepEqual(await listKeys(s, fileKeys.imageDir(d)), []);
      assert.ok(await s.stat(fileKeys.imageConfig(digest('e'))), 'another image is untouched');
      assert.equal(await s.deletePrefix(fileKeys.imageDir(digest('f'))), 0);
    });

    it('removeUnfinished leaves finished files alone', async () => {
      const s = await fresh();
      const d = digest('9');
      await s.writeBytes(fileKeys.imageConfig(d), Buffer.from('{}'));
      assert.equal(await s.removeUnfinished('images/', new Date(Date.now() + 3_600_000)), 0);
      assert.equal(await s.removeUnfinished(fileKeys.imageDir(digest('8')), new Date(Date.now() + 3_600_000)), 0);
      assert.ok(await s.stat(fileKeys.imageConfig(d)));
    });

    it('keys that could leave the store are refused', async () => {
      const s = await fresh();
      for (const bad of ['../x', '/abs', 'images/../../x', 'images//x', 'images/.hidden', '']) {
        await assert.rejects(s.writeBytes(bad, Buffer.from('x')), /invalid file key/, bad);
        await assert.rejects(s.stat(bad), /invalid file key/, bad);
      }
      assert.throws(() => fileKeys.buildDir('../etc'), /invalid file key/);
    });
  });
}
