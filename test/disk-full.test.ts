// Disk full: the data dir on an 8 MiB tmpfs. Uploads that do not fit fail
// with 507 and a message saying what to do, nothing stored is corrupted, the
// server keeps serving, and once space returns pushes work again.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fsck } from '../src/gc/fsck.js';
import { openOffline } from '../src/gc/offline.js';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { RegistryClient, corruptBlobs, randomBlob, type Blob } from './helpers/registry.js';

let mountPoint: string;
let mounted = false;
let skip: string | false = false;

before(async () => {
  mountPoint = await tempDir('kiln-diskfull-');
  const res = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint], { encoding: 'utf8' });
  if (res.status === 0) mounted = true;
  else skip = `cannot mount a tmpfs (needs root): ${res.stderr || res.error?.message}`;
});
after(async () => {
  if (mounted) spawnSync('umount', ['-l', mountPoint]);
  await rm(mountPoint, { recursive: true, force: true });
});

describe('disk full', () => {
  it('fails uploads with 507 and a clear message, corrupts nothing, and recovers when space returns', async (t) => {
    if (skip) return t.skip(skip);
    const dataDir = path.join(mountPoint, 'data');
    const filler = path.join(mountPoint, 'filler');
    await mkdir(dataDir);
    let server: TestKiln | null = await startKiln({ dataDir, env: { KILN_GC_INTERVAL: '0' } });
    try {
      const c = new RegistryClient(server.url);
      const first = await c.pushImage('full/app', 'before');
      // Leave about 2 MiB free.
      const free = () => {
        const out = spawnSync('df', ['-B1', '--output=avail', mountPoint], { encoding: 'utf8' }).stdout.trim().split('\n').pop()!;
        return Number(out);
      };
      await writeFile(filler, randomBytes(Math.max(0, free() - 2 * 1024 * 1024)));

      const acked: Blob[] = [];
      let refused: { status: number; text: string } | null = null;
      for (let i = 0; i < 40 && !refused; i++) {
        const b = randomBlob(300 * 1024);
        // Alternate monolithic and chunked uploads.
        const res = i % 2 === 0 ? await c.pushBlobMonolithic('full/app', b) : await c.pushBlobChunked('full/app', b);
        const text = await res.text();
        if (res.status === 201) acked.push(b);
        else refused = { status: res.status, text };
      }
      assert.ok(refused, 'the disk never filled up');
      assert.equal(refused.status, 507, refused.text);
      const body = JSON.parse(refused.text) as { errors: { message: string }[] };
      assert.match(body.errors[0]!.message, /out of storage space; free space or raise the quota, then retry/);

      // Still serving, everything acknowledged intact, nothing half-written visible.
      assert.equal((await c.fetch('/v2/')).status, 200);
      for (const b of acked) assert.ok((await c.getBlob('full/app', b.digest)).bytes.equals(b.bytes));
      assert.ok((await c.getManifest('full/app', 'before')).bytes.equals(first.manifest.bytes));
      assert.deepEqual(await corruptBlobs(dataDir), []);
      // A manifest while full: stored (it is small) or refused with 507, never a 500.
      const m = await c.putManifest('full/app', 'while-full', first.manifest.bytes, 'application/vnd.oci.image.manifest.v1+json');
      assert.ok(m.status === 201 || m.status === 507, `${m.status} ${await m.text()}`);

      // Completely full (the database cannot grow either): every write is a 507, never a 500.
      await writeFile(path.join(mountPoint, 'filler2'), randomBytes(Math.max(0, free()))).catch(() => undefined);
      for (const res of [
        await c.fetch('/v2/full/app/blobs/uploads/', { method: 'POST' }),
        await c.pushBlobMonolithic('full/other', randomBlob(10)),
        await c.putManifest('full/app', 'full', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] })), 'application/vnd.oci.image.index.v1+json'),
      ]) {
        assert.equal(res.status, 507, await res.text());
      }
      assert.equal((await c.fetch('/v2/full/app/tags/list')).status, 200);

      // Space returns: pushes work again.
      await rm(filler);
      await rm(path.join(mountPoint, 'filler2'));
      const after = await c.pushImage('full/app', 'after', { layers: [randomBlob(1024 * 1024)] });
      assert.ok((await c.getManifest('full/app', 'after')).bytes.equals(after.manifest.bytes));
      for (const b of acked) assert.ok((await c.getBlob('full/app', b.digest)).bytes.equals(b.bytes));
      await server.close();
      server = null;

      const offline = await openOffline(dataDir, 'test fsck');
      try {
        const report = await fsck({ dirs: offline.stores.dirs, store: offline.stores.gc });
        assert.deepEqual(report.problems.filter((p) => p.severity === 'error'), []);
      } finally {
        await offline.close();
      }
    } finally {
      await server?.close();
    }
  });
});

