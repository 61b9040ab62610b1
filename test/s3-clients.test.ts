// Real clients against Kiln on S3 (a real Ceph RGW): skopeo, buildah, podman
// and docker push through Kiln and pull blobs by following Kiln's 307 to a
// presigned RGW URL; HEAD and the digest headers still come from Kiln. With
// KILN_S3_REDIRECT=false the blob bytes (and ranges) stream through Kiln.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { isolatedContainersEnv } from './helpers/containers.js';
import { dockerMissing, startDockerd, type Dockerd } from './helpers/dockerd.js';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { rgwMissing, startRgw, type Rgw } from './helpers/rgw.js';

const run = promisify(execFile);
const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const MiB = 1024 * 1024;

let rgw: Rgw;
let kiln: TestKiln;
let work: string;
let env: NodeJS.ProcessEnv;
let policy: string;
/** The test image: an OCI layout whose one layer (a tar.gz of incompressible data) spans several 5 MiB parts. */
let layout: string;
let image: { manifest: string; config: string; layer: string; layerBytes: Buffer };

async function tool(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { env, cwd: work, timeout: 180_000, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`);
  }
}
const skopeo = (...args: string[]) => tool('skopeo', ['--policy', policy, ...args]);

/** `kiln_http_requests_total` for blob GETs answered with `status`. */
async function blobGets(server: TestKiln, status: number): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const m = new RegExp(`kiln_http_requests_total\\{route="blob_get",method="GET",status="${status}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

async function makeLayout(dir: string): Promise<typeof image> {
  const rootfs = path.join(work, 'rootfs');
  await mkdir(path.join(rootfs, 'data'), { recursive: true });
  await writeFile(path.join(rootfs, 'data', 'random.bin'), randomBytes(11 * MiB));
  await writeFile(path.join(rootfs, 'hello.txt'), 'hello from kiln on s3\n');
  const tarGz = path.join(work, 'layer.tar.gz');
  await tool('sh', ['-c', `tar --numeric-owner --owner=0 --group=0 -C "${rootfs}" -cf - . | gzip -1 > "${tarGz}"`]);
  const layerBytes = await readFile(tarGz);
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = async (bytes: Buffer) => {
    const digest = sha256(bytes);
    await writeFile(path.join(dir, 'blobs', 'sha256', digest.slice(7)), bytes);
    return digest;
  };
  const layer = await put(layerBytes);
  const configBytes = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: [sha256(gunzipSync(layerBytes))] } }),
  );
  const config = await put(configBytes);
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: configBytes.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer, size: layerBytes.length }],
    }),
  );
  const manifest = await put(manifestBytes);
  await writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifest, size: manifestBytes.length, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
    }),
  );
  return { manifest, config, layer, layerBytes };
}

describe('clients on S3-backed Kiln', { skip: rgwMissing() ?? false }, () => {
  before(async () => {
    work = await tempDir('kiln-s3-clients-');
    ({ env, policy } = await isolatedContainersEnv(work, { vfsStorage: true }));
    await writeFile(path.join(work, 'containers.conf'), '[engine]\nevents_logger = "none"\ncgroup_manager = "cgroupfs"\n');
    env.CONTAINERS_CONF = path.join(work, 'containers.conf');
    rgw = await startRgw();
    kiln = await startKiln({ env: rgw.kilnEnv(await rgw.createBucket()) });
    layout = path.join(work, 'layout');
    image = await makeLayout(layout);
    await skopeo('copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${kiln.host}/s3/app:v1`);
  });
  after(async () => {
    await kiln?.close();
    await rgw?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('a blob GET is a 307 to a presigned RGW URL; HEAD and the digest headers come from Kiln', async () => {
    const url = `${kiln.url}/v2/s3/app/blobs/${image.layer}`;
    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('docker-content-digest'), image.layer);
    assert.equal(head.headers.get('content-length'), String(image.layerBytes.length));
    const get = await fetch(url, { redirect: 'manual' });
    assert.equal(get.status, 307);
    assert.equal(get.headers.get('docker-content-digest'), image.layer);
    const location = get.headers.get('location')!;
    assert.ok(location.startsWith(`${rgw.endpoint}/`) && location.includes('X-Amz-Signature='), location);
    const followed = await fetch(url);
    assert.equal(sha256(Buffer.from(await followed.arrayBuffer())), image.layer);
    const ranged = await fetch(url, { headers: { range: `bytes=${6 * MiB}-${6 * MiB + 9}` } });
    assert.equal(ranged.status, 206);
    assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(image.layerBytes.subarray(6 * MiB, 6 * MiB + 10)));
    // Manifests are small and always served by Kiln.
    const manifest = await fetch(`${kiln.url}/v2/s3/app/manifests/v1`, { redirect: 'manual', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(manifest.status, 200);
    assert.equal(manifest.headers.get('docker-content-digest'), image.manifest);
  });

  it('skopeo pulls by following the redirect: the layout comes back byte for byte', async () => {
    const before307 = await blobGets(kiln, 307);
    const pulled = path.join(work, 'skopeo-pulled');
    await skopeo('copy', '--src-tls-verify=false', '--preserve-digests', `docker://${kiln.host}/s3/app:v1`, `oci:${pulled}:v1`);
    for (const d of [image.manifest, image.config, image.layer]) {
      assert.ok((await readFile(path.join(pulled, 'blobs', 'sha256', d.slice(7)))).equals(await readFile(path.join(layout, 'blobs', 'sha256', d.slice(7)))), d);
    }
    assert.ok((await blobGets(kiln, 307)) >= before307 + 2, 'config and layer came by redirect');
    assert.equal(await blobGets(kiln, 200), 0, 'Kiln served no blob body itself');
  });

  it('buildah pulls by redirect and pushes through Kiln to S3', async () => {
    const before307 = await blobGets(kiln, 307);
    await tool('buildah', ['pull', '--tls-verify=false', '--signature-policy', policy, `${kiln.host}/s3/app:v1`]);
    assert.ok((await blobGets(kiln, 307)) >= before307 + 2);
    await tool('buildah', ['push', '--tls-verify=false', '--signature-policy', policy, '--format', 'oci', `${kiln.host}/s3/app:v1`, `docker://${kiln.host}/s3/buildah:v1`]);
    const raw = JSON.parse(await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${kiln.host}/s3/buildah:v1`)) as { layers: { digest: string }[] };
    const layer = await fetch(`${kiln.url}/v2/s3/buildah/blobs/${raw.layers[0]!.digest}`);
    assert.equal(sha256(Buffer.from(await layer.arrayBuffer())), raw.layers[0]!.digest);
    await tool('buildah', ['rmi', '--all']);
  });

  it('podman pulls by redirect and pushes through Kiln to S3', async () => {
    const before307 = await blobGets(kiln, 307);
    await tool('podman', ['pull', '--tls-verify=false', `${kiln.host}/s3/app:v1`]);
    assert.ok((await blobGets(kiln, 307)) >= before307 + 2);
    const id = (await tool('podman', ['images', '--format', '{{.ID}}', `${kiln.host}/s3/app:v1`])).trim();
    assert.ok(image.config.slice(7).startsWith(id), `podman image ${id} is the pushed config ${image.config}`);
    await tool('podman', ['push', '--tls-verify=false', `${kiln.host}/s3/app:v1`, `docker://${kiln.host}/s3/podman:v1`]);
    const inspected = JSON.parse(await skopeo('inspect', '--tls-verify=false', `docker://${kiln.host}/s3/podman:v1`)) as { Layers: string[] };
    assert.equal(inspected.Layers.length, 1);
    await tool('podman', ['rmi', '--all', '--force']);
  });

  describe('docker (its own dockerd)', { skip: dockerMissing() ?? false }, () => {
    let dockerd: Dockerd;
    before(async () => {
      dockerd = await startDockerd();
    });
    after(async () => {
      await dockerd?.stop();
    });

    it('docker pull follows the redirect; docker push uploads a new layer through Kiln', async () => {
      const before307 = await blobGets(kiln, 307);
      await dockerd.docker(['pull', `${kiln.host}/s3/app:v1`]);
      assert.ok((await blobGets(kiln, 307)) >= before307 + 2);
      const digests = await dockerd.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', `${kiln.host}/s3/app:v1`]);
      assert.ok(digests.includes(image.manifest), digests);
      // A layer Kiln has never seen: docker must upload it (PATCH and PUT through Kiln into S3).
      const tar = path.join(work, 'import.tar');
      await tool('sh', ['-c', `head -c ${7 * MiB} /dev/urandom > "${work}/fresh.bin" && tar -C "${work}" -cf "${tar}" fresh.bin`]);
      await dockerd.docker(['import', tar, `${kiln.host}/s3/docker:v1`]);
      await dockerd.docker(['push', `${kiln.host}/s3/docker:v1`]);
      const pulled = path.join(work, 'docker-pushed');
      await skopeo('copy', '--src-tls-verify=false', `docker://${kiln.host}/s3/docker:v1`, `oci:${pulled}:v1`);
      const index = JSON.parse(await readFile(path.join(pulled, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
      const manifest = JSON.parse(await readFile(path.join(pulled, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: { digest: string; size: number }[] };
      assert.equal(manifest.layers.length, 1);
      assert.ok(manifest.layers[0]!.size > 7 * MiB * 0.99);
    });
  });

  it('with KILN_S3_REDIRECT=false the bytes and ranges stream through Kiln', async () => {
    const streaming = await startKiln({ env: rgw.kilnEnv(await rgw.createBucket(), { KILN_S3_REDIRECT: 'false' }) });
    try {
      await skopeo('copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${streaming.host}/s3/app:v1`);
      const url = `${streaming.url}/v2/s3/app/blobs/${image.layer}`;
      const whole = await fetch(url, { redirect: 'manual' });
      assert.equal(whole.status, 200);
      assert.equal(sha256(Buffer.from(await whole.arrayBuffer())), image.layer);
      const ranged = await fetch(url, { redirect: 'manual', headers: { range: 'bytes=-1000' } });
      assert.equal(ranged.status, 206);
      assert.equal(ranged.headers.get('content-range'), `bytes ${image.layerBytes.length - 1000}-${image.layerBytes.length - 1}/${image.layerBytes.length}`);
      assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(image.layerBytes.subarray(-1000)));
      const pulled = path.join(work, 'streamed-pulled');
      await skopeo('copy', '--src-tls-verify=false', `docker://${streaming.host}/s3/app:v1`, `oci:${pulled}:v1`);
      assert.ok((await readFile(path.join(pulled, 'blobs', 'sha256', image.layer.slice(7)))).equals(image.layerBytes));
      assert.equal(await blobGets(streaming, 307), 0);
    } finally {
      await streaming.close();
    }
  });
});
