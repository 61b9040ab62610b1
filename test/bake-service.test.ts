// Issue 3 through the server: a push bakes runnable images (once per digest),
// caches and artifacts never; the image API, the disk download, on-demand
// bakes with their 422, multi-platform indexes, and a kill -9 mid-bake.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { layerTar, makeImage, sha256, writeOciLayout, type TestImage } from '../src/convert/testing.js';
import { DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST } from '../src/oci/media-types.js';
import { debugfsCat, fsck } from './bake-helpers.js';
import { fixtureImage, RUN_CONFIG } from './bake-fixture.js';
import { fixtureManifests, pushBlob, pushFixture } from './helpers/fixtures.js';
import { spawnKiln, startKiln, tempDir, type TestKiln } from './helpers/kiln.js';

interface ImageView {
  digest: string;
  repo: string;
  tag: string | null;
  status: string;
  error: string | null;
  diskSize: number | null;
  attempts: number;
  platform: string | null;
  runConfig?: Record<string, unknown>;
}

async function getJson<T>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const res = await fetch(url, init);
  return { status: res.status, body: (await res.json()) as T };
}

/** Polls the image API until the bake ends (or the deadline passes). */
async function waitReady(base: string, ref: string, timeoutMs = 60_000): Promise<ImageView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, body } = await getJson<ImageView>(`${base}/api/v1/images/${ref}`);
    if (status === 200 && (body.status === 'ready' || body.status === 'failed')) return body;
    if (Date.now() > deadline) throw new Error(`bake of ${ref} did not finish: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Pushes a test image's blobs and manifest over HTTP; returns the manifest digest. */
async function pushImage(base: string, repo: string, tag: string, image: TestImage, contentType = OCI_MANIFEST): Promise<string> {
  for (const [digest, bytes] of image.blobs) assert.equal((await pushBlob(base, repo, digest, bytes)).status, 201);
  const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: image.manifestBytes, headers: { 'content-type': contentType } });
  assert.equal(res.status, 201, await res.text());
  return res.headers.get('docker-content-digest')!;
}

async function smallImage(marker: string): Promise<TestImage> {
  return makeImage([{ tar: await layerTar([{ name: 'hello.txt', content: `${marker}\n` }]), compression: 'gzip' }], { Cmd: ['/hello'] });
}

describe('bake through the server', () => {
  let k: TestKiln;
  let scratch: string;
  before(async () => {
    k = await startKiln();
    scratch = await tempDir();
  });
  after(async () => {
    await k.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it('bakes an image pushed with skopeo into a clean disk with its run config', async () => {
    const layout = path.join(scratch, 'layout');
    await writeOciLayout(layout, await fixtureImage(['gzip', 'zstd', 'none']), 'v1');
    // Async: the server runs in this process, so a blocking spawn would deadlock it.
    await promisify(execFile)('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${k.host}/acme/app:v1`]);

    const view = await waitReady(k.url, 'acme/app:v1');
    assert.equal(view.status, 'ready', view.error ?? '');
    assert.equal(view.repo, 'acme/app');
    assert.equal(view.tag, 'v1');
    assert.deepEqual(view.runConfig && (view.runConfig as { entrypoint: string[] }).entrypoint, RUN_CONFIG.Entrypoint);
    assert.equal((view.runConfig as { workingDir: string }).workingDir, '/srv');
    assert.equal((view.runConfig as { user: string }).user, '1000:1000');

    // The disk as a host downloads it.
    const res = await fetch(`${k.url}/api/v1/images/${view.digest}/disk`);
    assert.equal(res.status, 200);
    const disk = path.join(scratch, 'disk.ext4');
    await writeFile(disk, Buffer.from(await res.arrayBuffer()));
    assert.equal(Number(res.headers.get('content-length')), view.diskSize);
    const check = fsck(disk);
    assert.ok(check.clean, check.output);
    assert.equal(debugfsCat(disk, '/var/lib/x').toString(), 'second\n');
    assert.equal(debugfsCat(disk, '/etc/skel/new').toString(), 'new skel\n');
  });

  it('bakes once per digest however many tags and repos name it', async () => {
    const image = await smallImage('once');
    const digest = await pushImage(k.url, 'acme/one', 'a', image);
    await pushImage(k.url, 'acme/one', 'b', image);
    await pushImage(k.url, 'acme/other', 'c', image);
    const view = await waitReady(k.url, digest);
    assert.equal(view.status, 'ready');
    assert.equal(view.attempts, 1);
    const bakes = (await k.kiln.jobs.store.list('bake')).filter((j) => j.key === `bake:${digest}`);
    assert.equal(bakes.length, 1);
  });

  it('bakes Docker schema 2 images', async () => {
    const oci = await smallImage('docker');
    const config = oci.configBytes;
    const layer = [...oci.blobs.entries()].find(([d]) => d !== sha256(config))!;
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: DOCKER_MANIFEST,
        config: { mediaType: DOCKER_CONFIG, size: config.length, digest: sha256(config) },
        layers: [{ mediaType: DOCKER_LAYER_GZIP, size: layer[1].length, digest: layer[0] }],
      }),
    );
    const digest = await pushImage(k.url, 'acme/docker', 'v2', { ...oci, manifestBytes: manifest }, DOCKER_MANIFEST);
    const view = await waitReady(k.url, digest);
    assert.equal(view.status, 'ready', view.error ?? '');
  });

  it('never bakes BuildKit caches; bake asks get 422 naming the media type', async () => {
    for (const fixture of await fixtureManifests()) {
      const res = await pushFixture(k.url, fixture);
      assert.equal(res.status, 201, `${fixture.file}: ${await res.text()}`);
    }
    const cacheDigests = (await fixtureManifests()).filter((f) => f.repo.startsWith('cache/')).map((f) => f.digest);
    for (const digest of cacheDigests) assert.equal(await k.kiln.jobs.store.get(`bake:${digest}`), null, `no job for cache ${digest}`);

    const cases: [string, RegExp][] = [
      ['cache/global/node:latest', /not a runnable image: config media type application\/vnd\.buildkit\.cacheconfig\.v0 \(BuildKit cache\)/],
      ['cache/tenant-abc/legacy:latest', /application\/vnd\.buildkit\.cacheconfig\.v0/],
      ['cache/proxy/tenant:latest', /application\/vnd\.buildkit\.cacheconfig\.v0/],
    ];
    for (const [ref, message] of cases) {
      const { status, body } = await getJson<{ error: { message: string } }>(`${k.url}/api/v1/images/bake`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ref }),
      });
      assert.equal(status, 422, ref);
      assert.match(body.error.message, message);
    }
    // Caches stay pullable.
    const pulled = await fetch(`${k.url}/v2/cache/global/node/manifests/latest`, { headers: { accept: OCI_MANIFEST } });
    assert.equal(pulled.status, 200);

    // The built image and the base image are runnable and are baked.
    const built = (await fixtureManifests()).find((f) => f.repo === 'builds/job1')!;
    assert.equal((await waitReady(k.url, built.digest)).status, 'ready');
  });

  it('does not bake a runnable image stored under cache/, and says why', async () => {
    const digest = await pushImage(k.url, 'cache/tenant-x', 'step1', await smallImage('cached step'));
    assert.equal(await k.kiln.jobs.store.get(`bake:${digest}`), null);
    const { status, body } = await getJson<{ error: { message: string } }>(`${k.url}/api/v1/images/bake`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ref: 'cache/tenant-x:step1' }),
    });
    assert.equal(status, 422);
    assert.match(body.error.message, /build cache location/);
  });

  it('refuses to bake artifacts', async () => {
    const cfg = Buffer.from('{}');
    const blob = Buffer.from('signature bytes');
    for (const b of [cfg, blob]) assert.equal((await pushBlob(k.url, 'acme/sig', sha256(b), b)).status, 201);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: 'application/vnd.example.signature',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', size: cfg.length, digest: sha256(cfg) },
        layers: [{ mediaType: 'application/octet-stream', size: blob.length, digest: sha256(blob) }],
      }),
    );
    const put = await fetch(`${k.url}/v2/acme/sig/manifests/sig1`, { method: 'PUT', body: manifest, headers: { 'content-type': OCI_MANIFEST } });
    assert.equal(put.status, 201);
    assert.equal(await k.kiln.jobs.store.get(`bake:${put.headers.get('docker-content-digest')}`), null);
    const { status, body } = await getJson<{ error: { message: string } }>(`${k.url}/api/v1/images/bake`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ref: 'acme/sig:sig1' }),
    });
    assert.equal(status, 422);
    assert.match(body.error.message, /application\/vnd\.oci\.empty\.v1\+json .*application\/vnd\.example\.signature/);
  });

  it('bakes only the configured platform of an index, never attestations', async () => {
    const amd = await smallImage('amd64');
    const arm = await smallImage('arm64');
    const amdDigest = await pushImage(k.url, 'acme/multi', 'amd64-only', amd);
    const armDigest = await pushImage(k.url, 'acme/multi', 'arm64-only', arm);
    const attestation = await smallImage('attestation');
    const attDigest = await pushImage(k.url, 'acme/multi', 'att', attestation);
    const entry = (digest: string, bytes: Buffer, platform: object, annotations?: object) => ({ mediaType: OCI_MANIFEST, digest, size: bytes.length, platform, ...(annotations ? { annotations } : {}) });
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          entry(armDigest, arm.manifestBytes, { os: 'linux', architecture: 'arm64' }),
          entry(amdDigest, amd.manifestBytes, { os: 'linux', architecture: 'amd64' }),
          entry(attDigest, attestation.manifestBytes, { os: 'unknown', architecture: 'unknown' }, { 'vnd.docker.reference.type': 'attestation-manifest' }),
        ],
      }),
    );
    const put = await fetch(`${k.url}/v2/acme/multi/manifests/latest`, { method: 'PUT', body: index, headers: { 'content-type': OCI_INDEX } });
    assert.equal(put.status, 201);
    const view = await waitReady(k.url, 'acme/multi:latest');
    assert.equal(view.digest, amdDigest);
    assert.equal(view.platform, 'linux/amd64');
  });

  it('bakes on demand, retries failures only when asked, deletes disks', async () => {
    const digest = await pushImage(k.url, 'acme/demand', 'v1', await smallImage('demand'));
    await waitReady(k.url, digest);
    const del = await fetch(`${k.url}/api/v1/images/${digest}`, { method: 'DELETE' });
    assert.equal(del.status, 204);
    assert.equal((await fetch(`${k.url}/api/v1/images/${digest}`)).status, 404);
    const bake = await getJson<ImageView>(`${k.url}/api/v1/images/bake`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ref: 'acme/demand:v1' }),
    });
    assert.equal(bake.status, 202);
    assert.equal((await waitReady(k.url, digest)).status, 'ready');
    const list = await getJson<{ images: ImageView[] }>(`${k.url}/api/v1/images`);
    assert.ok(list.body.images.some((i) => i.digest === digest && i.status === 'ready'));
  });

  it('records a corrupt layer as a failed bake with the reason', async () => {
    const image = await smallImage('corrupt');
    const digest = await pushImage(k.url, 'acme/corrupt', 'v1', image);
    await waitReady(k.url, digest);
    // Corrupt the stored layer behind the registry's back, then bake again.
    const layerDigest = image.manifest.layers[0]!.digest;
    const file = k.kiln.dirs.blobPath(layerDigest);
    const original = await readFile(file);
    await writeFile(file, Buffer.concat([original.subarray(0, original.length - 4), Buffer.from('oops')]));
    assert.equal((await fetch(`${k.url}/api/v1/images/${digest}`, { method: 'DELETE' })).status, 204);
    await fetch(`${k.url}/api/v1/images/bake`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ref: 'acme/corrupt:v1' }) });
    const view = await waitReady(k.url, digest);
    assert.equal(view.status, 'failed');
    assert.match(view.error ?? '', new RegExp(layerDigest.slice(7, 19)));
    await writeFile(file, original);
  });
});

describe('bake jobs survive kill -9', () => {
  it('re-runs a bake interrupted by a crash to completion', async () => {
    const dataDir = await tempDir();
    const scratch = await tempDir();
    try {
      // Big incompressible layers so the bake is still running when the process dies.
      const big = makeImage(
        await Promise.all(
          [0, 1, 2].map(async (i) => ({ tar: await layerTar([{ name: `data/blob${i}.bin`, content: randomBytes(48 << 20) }]), compression: 'gzip' as const })),
        ),
      );
      let server = await spawnKiln(dataDir, { KILN_WORKERS: '1' });
      const digest = await pushImage(server.url, 'acme/crash', 'v1', big);
      for (;;) {
        const { body } = await getJson<ImageView>(`${server.url}/api/v1/images/${digest}`);
        if (body.status === 'baking') break;
        assert.notEqual(body.status, 'ready', 'bake finished before the crash; make the image bigger');
        await new Promise((r) => setTimeout(r, 10));
      }
      await server.kill9();
      server = await spawnKiln(dataDir, { KILN_WORKERS: '1' });
      try {
        const view = await waitReady(server.url, digest, 120_000);
        assert.equal(view.status, 'ready', view.error ?? '');
        // The orphaned worker hands its job back when its server dies, so the rerun is a first attempt again.
        assert.ok(view.attempts >= 1);
        const res = await fetch(`${server.url}/api/v1/images/${digest}/disk`);
        const disk = path.join(scratch, 'crash.ext4');
        await writeFile(disk, Buffer.from(await res.arrayBuffer()));
        const check = fsck(disk);
        assert.ok(check.clean, check.output);
        assert.equal(debugfsCat(disk, '/data/blob2.bin').length, 48 << 20);
      } finally {
        assert.equal(await server.stop(), 0);
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
      await rm(scratch, { recursive: true, force: true });
    }
  });
});
