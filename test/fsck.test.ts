// `kiln fsck` and `kiln gc` from the command line: a corrupted blob is found,
// quarantined and then reads as missing (404, never a corrupt byte) until it
// is pushed again; baked disks are checked; both tools refuse to work under
// a running server, and `kiln gc --url` asks the server instead.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { openOffline } from '../src/gc/offline.js';
import type { GcReport } from '../src/gc/collector.js';
import { runKilnCli } from './helpers/cli.js';
import { startKiln, tempDir } from './helpers/kiln.js';
import { RegistryClient, expectError, randomBlob } from './helpers/registry.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('kiln fsck', () => {
  it('quarantines a corrupt blob, which then reads as missing until it is pushed again', async () => {
    const dataDir = await tempDir('kiln-fsck-');
    dirs.push(dataDir);
    let server = await startKiln({ dataDir });
    let c = new RegistryClient(server.url);
    const layer = randomBlob(40_000);
    const img = await c.pushImage('fsck/app', 'v1', { layers: [layer] });
    await c.pushImage('fsck/other', 'v1');
    await server.close();

    const clean = await runKilnCli(['fsck', '--data-dir', dataDir]);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /clean/);

    // Flip one byte in the middle of the layer (same size: only hashing finds it).
    const file = path.join(dataDir, 'blobs', 'sha256', layer.digest.slice(7, 9), layer.digest.slice(7));
    const handle = await open(file, 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 20_000);
    await handle.write(Buffer.from([byte[0]! ^ 0xff]), 0, 1, 20_000);
    await handle.close();

    const found = await runKilnCli(['fsck', '--data-dir', dataDir]);
    assert.equal(found.code, 1, found.stdout);
    assert.match(found.stdout, new RegExp(`ERROR corrupt-blob ${layer.digest}`));
    assert.ok(!existsSync(file), 'the corrupt file left blobs/');
    const quarantined = await readdir(path.join(dataDir, 'quarantine', 'sha256'));
    assert.equal(quarantined.length, 1);
    assert.ok(quarantined[0]!.startsWith(layer.digest.slice(7)));

    // Still a problem (the manifest misses its layer), reported, not fixed silently.
    const again = await runKilnCli(['fsck', '--data-dir', dataDir, '--json']);
    assert.equal(again.code, 1);
    const report = JSON.parse(again.stdout) as { problems: { kind: string; subject: string }[] };
    assert.ok(report.problems.some((p) => p.kind === 'missing-reference' && p.subject === `fsck/app@${img.manifest.digest}`));

    // The registry answers 404 BLOB_UNKNOWN: never a corrupt byte.
    server = await startKiln({ dataDir });
    c = new RegistryClient(server.url);
    await expectError(await c.fetch(`/v2/fsck/app/blobs/${layer.digest}`), { status: 404, code: 'BLOB_UNKNOWN' });
    assert.equal((await c.fetch(`/v2/fsck/app/blobs/${layer.digest}`, { method: 'HEAD' })).status, 404);
    const mount = await c.fetch(`/v2/fsck/third/blobs/uploads/?mount=${layer.digest}&from=fsck/app`, { method: 'POST' });
    assert.equal(mount.status, 202, 'a missing blob cannot be mounted');
    // Pushing it again repairs it.
    await c.mustPushBlob('fsck/app', layer);
    const { res, bytes } = await c.getBlob('fsck/app', layer.digest);
    assert.equal(res.status, 200);
    assert.ok(bytes.equals(layer.bytes));
    assert.ok((await c.getManifest('fsck/app', 'v1')).bytes.equals(img.manifest.bytes));
    await server.close();

    const repaired = await runKilnCli(['fsck', '--data-dir', dataDir]);
    assert.equal(repaired.code, 0, repaired.stdout);
  });

  it('checks baked disks against config.json and the manifest', async () => {
    const dataDir = await tempDir('kiln-fsck-disk-');
    dirs.push(dataDir);
    const server = await startKiln({ dataDir });
    const c = new RegistryClient(server.url);
    const img = await c.pushImage('disk/app', 'v1');
    await server.close();

    const offline = await openOffline(dataDir, 'test');
    const { images, jobs } = offline.stores;
    const digest = img.manifest.digest;
    await images.upsert({ digest, repo: 'disk/app', tag: 'v1', indexDigest: null, platform: null });
    const job = await jobs.enqueue('bake', `bake:${digest}`, { digest, repo: 'disk/app' });
    await jobs.claim('bake', 'test-worker', 60_000);
    assert.ok(await jobs.finish(job.id, 'test-worker', 'done'));
    const dir = offline.stores.dirs.imageDir(digest);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'rootfs.ext4'), randomBytes(4096));
    const doc = { schemaVersion: 1, configDigest: img.config.digest, layers: img.layers.map((l) => l.digest), disk: { file: 'rootfs.ext4', format: 'ext4', sizeBytes: 4096 } };
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(doc));
    await images.setDiskSize(digest, 4096);
    await offline.close();

    const ok = await runKilnCli(['fsck', '--data-dir', dataDir]);
    assert.equal(ok.code, 0, ok.stdout);
    assert.match(ok.stdout, /1 disks/);

    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...doc, layers: ['sha256:' + '0'.repeat(64)] }));
    const bad = await runKilnCli(['fsck', '--data-dir', dataDir]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /ERROR bad-disk .*other layers than the manifest/);

    await writeFile(path.join(dir, 'config.json'), JSON.stringify(doc));
    await writeFile(path.join(dir, 'rootfs.ext4'), randomBytes(100));
    const truncated = await runKilnCli(['fsck', '--data-dir', dataDir]);
    assert.equal(truncated.code, 1);
    assert.match(truncated.stdout, /ERROR bad-disk .*the disk is 100 bytes but config.json says 4096/);

    await rm(dir, { recursive: true });
    const missing = await runKilnCli(['fsck', '--data-dir', dataDir]);
    assert.equal(missing.code, 1);
    assert.match(missing.stdout, /ERROR missing-disk/);
  });
});

describe('kiln gc from the command line', () => {
  it('refuses to work under a running server, collects through it with --url, and offline once it stops', async () => {
    const dataDir = await tempDir('kiln-gc-cli-');
    dirs.push(dataDir);
    const server = await startKiln({ dataDir, env: { KILN_GC_INTERVAL: '0' } });
    const c = new RegistryClient(server.url);
    await c.pushImage('cli/app', 'v1');
    const gone = await c.pushImage('cli/app', 'v2');
    await c.fetch('/v2/cli/app/manifests/v2', { method: 'DELETE' });

    for (const args of [['gc', '--data-dir', dataDir], ['fsck', '--data-dir', dataDir]]) {
      const refused = await runKilnCli(args);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /in use by kiln serve \(pid \d+\)/);
    }
    assert.match((await runKilnCli(['gc', '--data-dir', dataDir])).stderr, /kiln gc --url/);

    // Through the server: it keeps everything younger than its grace period (1 h).
    const viaServer = await runKilnCli(['gc', '--url', server.url, '--dry-run', '--json']);
    assert.equal(viaServer.code, 0, viaServer.stderr);
    const dry = JSON.parse(viaServer.stdout) as GcReport;
    assert.equal(dry.dryRun, true);
    assert.equal(dry.graceSeconds, 3600);
    assert.equal(dry.deleted.manifests, 0);
    await server.close();

    const dryOffline = await runKilnCli(['gc', '--data-dir', dataDir, '--dry-run', '--grace', '0']);
    assert.equal(dryOffline.code, 0, dryOffline.stderr);
    assert.match(dryOffline.stdout, new RegExp(`would delete manifest cli/app@${gone.manifest.digest}`));
    assert.match(dryOffline.stdout, /dry run: would delete 0 expired cache tags, 1 manifests/);
    const real = await runKilnCli(['gc', '--data-dir', dataDir], { KILN_GC_GRACE: '0s' });
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, /deleted 0 expired cache tags, 1 manifests, 2 repo links, 3 blobs/);
    const blobFile = (d: string) => path.join(dataDir, 'blobs', 'sha256', d.slice(7, 9), d.slice(7));
    assert.ok(!existsSync(blobFile(gone.manifest.digest)));
    assert.ok(existsSync(blobFile(gone.layers[0]!.digest)) === false);
    assert.equal((await runKilnCli(['fsck', '--data-dir', dataDir])).code, 0);
    assert.ok(!existsSync(path.join(dataDir, 'kiln.lock')), 'the lock is released');
  });
});
