// The two I/O paths of the filesystem blob store that reuse or batch buffers:
// serving (copyFileRange) and receiving (UploadWriter). Both are easy to get
// subtly wrong (a buffer reused too early, a write lost in a batch), so every
// test compares bytes and digests end to end.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { openSync, readdirSync } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { createServer, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { copyFileRange } from '../src/store/fs/file-copy.js';
import { UploadWriter } from '../src/store/fs/upload-writer.js';
import { tempDir } from './helpers/kiln.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const openFds = () => readdirSync('/proc/self/fd').length;

let dir: string;
let data: Buffer;
let file: string;

before(async () => {
  dir = await tempDir('kiln-blob-io-');
  // Not a multiple of the 1 MiB chunk, so the last read is a short one.
  data = randomBytes(5 * MiB + 12_345);
  file = path.join(dir, 'blob');
  await writeFile(file, data);
});

after(async () => {
  const { rm } = await import('node:fs/promises');
  await rm(dir, { recursive: true, force: true });
});

async function copyOut(start: number, end: number, dest = new PassThrough()): Promise<Buffer> {
  const received = buffer(dest);
  await copyFileRange(openSync(file, 'r'), start, end, dest);
  return received;
}

describe('copyFileRange', () => {
  it('copies a whole file and byte ranges exactly', async () => {
    assert.ok((await copyOut(0, data.length)).equals(data));
    for (const [start, end] of [
      [0, 1],
      [MiB - 1, MiB + 1],
      [3, 2 * MiB + 7],
      [data.length - 10, data.length],
    ] as const) {
      assert.ok((await copyOut(start, end)).equals(data.subarray(start, end)), `bytes ${start}-${end}`);
    }
  });

  it('many slow HTTP downloads at once each get their own bytes (pooled buffers are reused only once sent)', async () => {
    const server = createServer((req, res) => {
      const [start, end] = (req.url ?? '').slice(1).split('-').map(Number) as [number, number];
      res.writeHead(200, { 'content-length': end - start });
      void copyFileRange(openSync(file, 'r'), start, end, res);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      const download = (start: number, end: number) =>
        new Promise<Buffer>((resolve, reject) => {
          get({ host: '127.0.0.1', port, path: `/${start}-${end}` }, (res) => {
            const chunks: Buffer[] = [];
            // A slow reader keeps writes pending, so pooled buffers stay in flight while other copies run.
            res.on('data', (c: Buffer) => {
              chunks.push(c);
              res.pause();
              setTimeout(() => res.resume(), 1);
            });
            res.on('end', () => resolve(Buffer.concat(chunks)));
            res.on('error', reject);
          }).on('error', reject);
        });
      const ranges = Array.from({ length: 12 }, (_, i) => [i * 1000, data.length - i] as const);
      const got = await Promise.all(ranges.map(([s, e]) => download(s, e)));
      got.forEach((b, i) => assert.equal(sha256(b), sha256(data.subarray(...ranges[i]!)), `download ${i}`));
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });

  it('many copies into other writables at once each get their own bytes', async () => {
    // A PassThrough keeps written chunks queued for its reader: a pooled buffer would be overwritten there.
    const slow = () =>
      new PassThrough({ highWaterMark: 64 * 1024 }).on('data', function (this: PassThrough) {
        this.pause();
        setTimeout(() => this.resume(), 1);
      });
    const copies = await Promise.all(Array.from({ length: 12 }, (_, i) => copyOut(i * 1000, data.length - i, slow())));
    copies.forEach((got, i) => assert.equal(sha256(got), sha256(data.subarray(i * 1000, data.length - i)), `copy ${i}`));
  });

  it('a file shorter than the range destroys the destination and rejects; the descriptor is closed', async () => {
    const before = openFds();
    const dest = new PassThrough();
    dest.resume();
    const closed = once(dest, 'close');
    await assert.rejects(copyFileRange(openSync(file, 'r'), 0, data.length + 100, dest), /ends at byte/);
    await closed;
    assert.ok(dest.destroyed);
    assert.equal(openFds(), before);
  });

  it('stops quietly when the destination closes early (a client that went away); the descriptor is closed', async () => {
    const before = openFds();
    let seen = 0;
    const dest = new Writable({
      write(chunk: Buffer, _enc, done) {
        seen += chunk.length;
        if (seen >= MiB) this.destroy();
        done();
      },
    });
    await copyFileRange(openSync(file, 'r'), 0, data.length, dest);
    assert.ok(seen < data.length);
    assert.equal(openFds(), before);
  });
});

describe('UploadWriter', () => {
  async function write(chunks: Buffer[], options: { position?: number; flushBehind?: boolean; target?: string } = {}) {
    const target = options.target ?? path.join(dir, `upload-${randomBytes(4).toString('hex')}`);
    if (!options.target) await writeFile(target, '');
    const hash = createHash('sha256');
    const out = new UploadWriter({ file: await open(target, 'r+'), position: options.position ?? 0, hash, flushBehind: options.flushBehind ?? true });
    await pipeline(Readable.from(chunks), out);
    await out.fileClosed;
    return { target, written: out.written, digest: hash.digest('hex') };
  }

  it('writes and hashes every byte, from chunks big and small, with and without flushing behind', async () => {
    const chunks: Buffer[] = [];
    for (let at = 0, i = 0; at < data.length; i++) {
      const size = [1, 7, 4096, 65_536, 3 * MiB][i % 5]!;
      chunks.push(data.subarray(at, at + size));
      at += size;
    }
    for (const flushBehind of [true, false]) {
      const r = await write(chunks, { flushBehind });
      assert.equal(r.written, data.length);
      assert.equal(r.digest, sha256(data));
      assert.ok((await readFile(r.target)).equals(data));
    }
  });

  it('appends at its position (a resumed chunked upload)', async () => {
    const target = path.join(dir, 'resumed');
    await writeFile(target, data.subarray(0, 1000));
    const r = await write([data.subarray(1000, 2 * MiB)], { position: 1000, target });
    assert.equal(r.written, 2 * MiB - 1000);
    assert.ok((await readFile(target)).equals(data.subarray(0, 2 * MiB)));
  });

  it('a failed background flush fails the upload: those bytes are not known to be on disk', async () => {
    // /dev/null takes positioned writes but refuses fdatasync (EINVAL), like a disk whose writeback failed.
    const out = new UploadWriter({ file: await open('/dev/null', 'r+'), position: 0, hash: createHash('sha256'), flushBehind: true });
    await assert.rejects(pipeline(Readable.from([data, data]), out), { code: 'EINVAL', syscall: 'fdatasync' });
    await out.fileClosed;
    // Without flushing behind, the same writes succeed: the failure came from the flush.
    const plain = new UploadWriter({ file: await open('/dev/null', 'r+'), position: 0, hash: createHash('sha256'), flushBehind: false });
    await pipeline(Readable.from([data, data]), plain);
    assert.equal(plain.written, 2 * data.length);
  });

  it('a failing body closes the file only after the write in flight returned, and keeps what reached the disk', async () => {
    const before = openFds();
    const target = path.join(dir, 'broken');
    await writeFile(target, '');
    const out = new UploadWriter({ file: await open(target, 'r+'), position: 0, hash: createHash('sha256'), flushBehind: true });
    const body = new Readable({ read() {} });
    body.push(data.subarray(0, 3 * MiB));
    setTimeout(() => body.destroy(new Error('client went away')), 20);
    await assert.rejects(pipeline(body, out), /client went away/);
    await out.fileClosed;
    assert.equal(openFds(), before);
    const onDisk = await readFile(target);
    assert.equal(onDisk.length, out.written);
    assert.ok(onDisk.equals(data.subarray(0, onDisk.length)));
  });
});
