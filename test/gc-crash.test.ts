// kill -9 at random points during 20 parallel pushes (a quarter of them
// runnable images that get baked) and garbage collections (grace 0), ten
// times with restarts on the same data dir. After every kill `kiln fsck`
// finds no error; after every restart every acknowledged push pulls back
// intact; at the end every bake is ready, fsck is clean and no upload file is
// left after the grace period and the upload TTL.
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { layerTar, makeImage } from '../src/convert/testing.js';
import type { FsckReport } from '../src/gc/fsck.js';
import { runKilnCli } from './helpers/cli.js';
import { uploadBlob, verifyPulls, type Pushed, type UploadMode } from './helpers/gc.js';
import { spawnKiln, tempDir, type SpawnedKiln } from './helpers/kiln.js';
import { OCI_LAYER_GZIP, OCI_MANIFEST, TEST_CONFIG, blob, descriptor, manifestBlob, randomBlob, type Blob } from './helpers/registry.js';

const ROUNDS = Number(process.env.KILN_CRASH_ROUNDS ?? 10);
const PARALLEL = 20;
const SERVER_ENV = { KILN_GC_GRACE: '0', KILN_GC_INTERVAL: '0', KILN_WORKERS: '2' };

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

interface Acked extends Pushed {
  runnable: boolean;
}

async function fsckErrors(dataDir: string): Promise<FsckReport> {
  const res = await runKilnCli(['fsck', '--data-dir', dataDir, '--json']);
  const report = JSON.parse(res.stdout) as FsckReport;
  assert.equal(res.code, report.ok ? 0 : 1);
  return report;
}

describe('kill -9 during parallel pushes, bakes and garbage collection', () => {
  it(`loses nothing acknowledged over ${ROUNDS} crashes`, async () => {
    const dataDir = await tempDir('kiln-gc-crash-');
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const baseTar = await layerTar([
      { name: 'etc', type: 'directory' },
      { name: 'etc/os-release', content: 'ID=kiln-test\n' },
    ]);
    const sharedLayers = [randomBlob(64 * 1024), randomBlob(8 * 1024), randomBlob(128 * 1024)];
    const acked = new Map<string, Acked>();
    let pushes = 0;
    let refusedByGc = 0;
    let gcRuns = 0;
    let killedDuringGc = 0;
    let server: SpawnedKiln | null = null;
    cleanups.push(async () => server?.kill9());

    const makePush = async (round: number, w: number, i: number): Promise<Acked> => {
      const repo = `crash/r${w % 5}`;
      const tag = `k${round}-w${w}-i${i}`;
      if (w % 4 === 0) {
        const image = makeImage(
          [
            { tar: baseTar, compression: 'gzip' },
            { tar: await layerTar([{ name: `app/${tag}.txt`, content: `${tag} ${randomBytes(8).toString('hex')}\n` }]), compression: 'gzip' },
          ],
          { Cmd: ['/app/run'] },
        );
        const blobs = [...image.blobs.values()].map((b) => blob(b));
        return { repo, tag, manifest: blob(image.manifestBytes), blobs, runnable: true };
      }
      const layers = [sharedLayers[randomInt(sharedLayers.length)]!, randomBlob(randomInt(1000, 200_000))];
      const config = blob(JSON.stringify({ tag, r: randomBytes(4).toString('hex') }));
      const manifest = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(config, TEST_CONFIG), layers: layers.map((l) => descriptor(l, OCI_LAYER_GZIP)) });
      return { repo, tag, manifest, blobs: [config, ...layers], runnable: false };
    };

    /** One push; true when the manifest PUT was acknowledged. */
    const pushOnce = async (base: string, p: Acked, mode: UploadMode): Promise<boolean> => {
      for (const b of p.blobs) {
        const res = await uploadBlob(base, p.repo, b as Blob, mode, `crash/r${randomInt(5)}`);
        await res.arrayBuffer().catch(() => undefined);
        if (res.status !== 201) return false;
      }
      const put = await fetch(`${base}/v2/${p.repo}/manifests/${p.tag}`, { method: 'PUT', body: p.manifest.bytes, headers: { 'content-type': OCI_MANIFEST } });
      const text = await put.text();
      if (put.status === 201) return true;
      assert.equal(put.status, 400, `${p.repo}:${p.tag}: ${put.status} ${text}`);
      assert.match(text, /MANIFEST_BLOB_UNKNOWN/);
      refusedByGc++;
      return false;
    };

    const modes: UploadMode[] = ['monolithic', 'post-put', 'chunked', 'mount'];
    for (let round = 0; round < ROUNDS; round++) {
      server = await spawnKiln(dataDir, SERVER_ENV);
      const base = server.url;
      // What the last round acknowledged (the pushes right before the kill) and a sample of
      // older ones; everything is checked again after the last crash.
      const older = [...acked.values()].filter((p) => !p.tag.startsWith(`k${round - 1}-`));
      const sample = older.sort(() => Math.random() - 0.5).slice(0, 50);
      await verifyPulls(base, [...acked.values()].filter((p) => p.tag.startsWith(`k${round - 1}-`)).concat(sample));

      let alive = true;
      let gcInFlight = 0;
      const workers = Array.from({ length: PARALLEL }, async (_, w) => {
        for (let i = 0; alive; i++) {
          const p = await makePush(round, w, i);
          try {
            pushes++;
            if (!(await pushOnce(base, p, modes[(w + i) % modes.length]!))) continue;
            acked.set(`${p.repo}:${p.tag}`, p);
            // Some pushes are untagged right away: garbage for the collector.
            // Forgotten before the DELETE is sent: a kill may cut the answer off after the
            // deletion committed, and then the tag is legitimately gone.
            if (randomInt(5) === 0) {
              acked.delete(`${p.repo}:${p.tag}`);
              const del = await fetch(`${base}/v2/${p.repo}/manifests/${p.tag}`, { method: 'DELETE' });
              assert.equal(del.status, 202);
            }
          } catch (err) {
            if (alive) throw err;
            return; // the server is gone; this push was never acknowledged
          }
        }
      });
      // Two collections at random moments of the round (grace 0: pushes caught between their blobs
      // and their manifest are refused and not acknowledged); the kill may land in one.
      const collector = Promise.all(
        [randomInt(100, 1200), randomInt(800, 2500)].map(async (delay) => {
          await new Promise((r) => setTimeout(r, delay));
          if (!alive) return;
          gcInFlight++;
          try {
            const res = await fetch(`${base}/api/v1/gc`, { method: 'POST' });
            if (res.status === 200) gcRuns++;
            await res.arrayBuffer();
          } catch {
            // killed mid-collection
          } finally {
            gcInFlight--;
          }
        }),
      );

      await new Promise((r) => setTimeout(r, randomInt(500, 2500)));
      if (gcInFlight > 0) killedDuringGc++;
      // Workers stop starting new pushes; the ones in flight (about 20) meet the kill.
      alive = false;
      await server.kill9();
      await Promise.all([...workers, collector]);
      server = null;

      // After the crash, before anything repairs it: no corrupt blob, no dangling reference.
      const report = await fsckErrors(dataDir);
      assert.deepEqual(
        report.problems.filter((p) => p.severity === 'error'),
        [],
        `round ${round}: fsck after kill -9`,
      );
    }

    // Last start: everything is there, bakes finish, a collection keeps it all.
    server = await spawnKiln(dataDir, SERVER_ENV);
    const base = server.url;
    await verifyPulls(base, acked.values());
    const runnable = [...acked.values()].filter((p) => p.runnable);
    const deadline = Date.now() + 120_000;
    for (const p of runnable) {
      for (;;) {
        const res = await fetch(`${base}/api/v1/images/${p.repo}:${p.tag}`);
        const view = (await res.json()) as { status?: string; error?: string };
        if (view.status === 'ready') break;
        assert.notEqual(view.status, 'failed', `bake of ${p.repo}:${p.tag} failed: ${view.error}`);
        assert.ok(Date.now() < deadline, `bake of ${p.repo}:${p.tag} did not finish: ${JSON.stringify(view)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const gc = (await (await fetch(`${base}/api/v1/gc`, { method: 'POST' })).json()) as { deleted: Record<string, number> };
    await verifyPulls(base, acked.values());
    assert.equal(await server.stop(), 0);
    server = null;

    // Crash leftovers (abandoned sessions, half-written files) are only warnings; GC with grace 0 reclaims them.
    const swept = await runKilnCli(['gc', '--data-dir', dataDir, '--grace', '0'], { KILN_UPLOAD_TTL_SECONDS: '1' });
    assert.equal(swept.code, 0, swept.stderr);
    const final = await fsckErrors(dataDir);
    assert.deepEqual(final.problems, []);
    assert.deepEqual(await readdir(path.join(dataDir, 'uploads')), []);
    assert.ok(final.checked.disks >= runnable.length, `${final.checked.disks} disks checked, ${runnable.length} runnable images`);

    process.stdout.write(
      `# ${ROUNDS} kills: ${pushes} pushes started, ${acked.size} acknowledged and live, ${refusedByGc} refused by a concurrent GC, ` +
        `${gcRuns} collections (${killedDuringGc} kills landed during one), ${runnable.length} images baked; final GC deleted ${JSON.stringify(gc.deleted)}\n` +
        `# offline gc: ${swept.stdout.trim().split('\n').slice(-2).join(' / ')}\n`,
    );
  });
});
