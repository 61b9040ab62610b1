// Real clients against the real server: skopeo pushes and pulls OCI layouts
// built in the test (umoci, and by hand for a two-platform index), buildah
// pushes and pulls an image built from the BuildKit fixture's busybox layer.
// Digests are compared end to end and pulled content byte for byte.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { buildkitFixtures, startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { RegistryClient } from './helpers/registry.js';
import { isolatedContainersEnv } from './helpers/containers.js';

const run = promisify(execFile);
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
const BUSYBOX = path.join(buildkitFixtures, 'blobs', 'sha256', 'e8d7956ac6786951069dea96651f4c11f0d636038d495c693c50c90cf9bc64f4');
const SMALL_LAYER = path.join(buildkitFixtures, 'blobs', 'sha256', '2a55764fff2e652fe04e94a3c440ffc79bd9d7ceb514c453e23ead71e62d9f2a');

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let server: TestKiln;
let reg: RegistryClient;
let work: string;
/** Environment that keeps every client off the host's configuration, credentials and storage. */
let env: NodeJS.ProcessEnv;
let policy: string;

async function tool(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { env, cwd: opts.cwd ?? work, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`);
  }
}

const skopeo = (...args: string[]) => tool('skopeo', ['--policy', policy, ...args]);
const rawManifest = async (ref: string) => Buffer.from(await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${server.host}/${ref}`), 'utf8');

before(async () => {
  work = await tempDir('kiln-clients-');
  ({ env, policy } = await isolatedContainersEnv(work, { vfsStorage: true }));
  server = await startKiln();
  reg = new RegistryClient(server.url);
});

after(async () => {
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

// ---- OCI layouts ------------------------------------------------------------------

interface Layout {
  dir: string;
}

async function readIndex(layout: string): Promise<{ manifests: { digest: string; mediaType: string; annotations?: Record<string, string> }[] }> {
  return JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
}

async function blobOf(layout: string, digest: string): Promise<Buffer> {
  const [alg, hex] = digest.split(':') as [string, string];
  return readFile(path.join(layout, 'blobs', alg, hex));
}

/** The digest the layout's index.json names for `tag`. */
async function tagDigest(layout: string, tag: string): Promise<string> {
  const entry = (await readIndex(layout)).manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  assert.ok(entry, `tag ${tag} not in ${layout}`);
  return entry.digest;
}

/** Every digest reachable from `root`: the manifest or index, configs, layers, children. */
async function closure(layout: string, root: string): Promise<Set<string>> {
  const seen = new Set<string>();
  const visit = async (digest: string) => {
    if (seen.has(digest)) return;
    seen.add(digest);
    const doc = JSON.parse((await blobOf(layout, digest)).toString()) as { manifests?: { digest: string }[]; config?: { digest: string }; layers?: { digest: string }[] };
    if (doc.manifests) for (const m of doc.manifests) await visit(m.digest);
    if (doc.config) seen.add(doc.config.digest);
    for (const l of doc.layers ?? []) seen.add(l.digest);
  };
  await visit(root);
  return seen;
}

/** Asserts that the pulled layout holds exactly the pushed image's blobs, byte for byte. */
async function assertSameImage(pushed: string, pushedTag: string, pulled: string, pulledTag: string): Promise<void> {
  const root = await tagDigest(pushed, pushedTag);
  assert.equal(await tagDigest(pulled, pulledTag), root, 'the pulled layout names the pushed digest');
  const want = await closure(pushed, root);
  const got = new Set((await readdir(path.join(pulled, 'blobs', 'sha256'))).map((h) => `sha256:${h}`));
  assert.deepEqual([...got].sort(), [...want].sort());
  for (const d of want) {
    const a = await blobOf(pushed, d);
    const b = await blobOf(pulled, d);
    assert.equal(sha256(b), d);
    assert.ok(a.equals(b), `${d} differs`);
  }
}

/** Writes a blob into a layout and returns its descriptor. */
async function putBlob(layout: string, bytes: Buffer, mediaType: string, extra: Record<string, unknown> = {}) {
  const digest = sha256(bytes);
  await writeFile(path.join(layout, 'blobs', 'sha256', digest.slice(7)), bytes);
  return { mediaType, digest, size: bytes.length, ...extra };
}

/** A two-platform OCI index written by hand (linux/amd64 busybox, linux/arm64 a tiny layer). */
async function handMadeMultiArch(dir: string): Promise<Layout> {
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const children = [];
  for (const [arch, file] of [
    ['amd64', BUSYBOX],
    ['arm64', SMALL_LAYER],
  ] as const) {
    const layerBytes = await readFile(file);
    const layer = await putBlob(dir, layerBytes, OCI_LAYER_GZIP);
    const config = await putBlob(
      dir,
      Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: [sha256(gunzipSync(layerBytes))] } })),
      OCI_CONFIG,
    );
    const manifest = await putBlob(dir, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] })), OCI_MANIFEST, {
      platform: { architecture: arch, os: 'linux' },
    });
    children.push(manifest);
  }
  const index = await putBlob(dir, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: children }, null, 2)), OCI_INDEX);
  await writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...index, annotations: { 'org.opencontainers.image.ref.name': 'multi' } }] }),
  );
  return { dir };
}

describe('skopeo', () => {
  let umociLayout: string;
  let rootfs: string;
  before(async () => {
    rootfs = path.join(work, 'rootfs');
    await mkdir(rootfs);
    await tool('tar', ['-xzf', BUSYBOX, '-C', rootfs]);
    umociLayout = path.join(work, 'umoci');
    await tool('umoci', ['init', '--layout', umociLayout]);
    await tool('umoci', ['new', '--image', `${umociLayout}:v1`]);
    await tool('umoci', ['insert', '--image', `${umociLayout}:v1`, rootfs, '/']);
    await tool('umoci', ['config', '--image', `${umociLayout}:v1`, '--config.cmd', '/bin/sh', '--config.env', 'KILN=1']);
  });

  it('copy push of a umoci layout: the registry serves the layout\'s manifest bytes (digest end to end)', async () => {
    const want = await tagDigest(umociLayout, 'v1');
    await skopeo('copy', '--dest-tls-verify=false', `oci:${umociLayout}:v1`, `docker://${server.host}/clients/umoci:v1`);
    const raw = await rawManifest('clients/umoci:v1');
    assert.equal(sha256(raw), want);
    assert.ok(raw.equals(await blobOf(umociLayout, want)));
    // umoci writes no top-level mediaType: Kiln keeps the type skopeo pushed it with.
    const { res } = await reg.getManifest('clients/umoci', 'v1');
    assert.equal(res.headers.get('content-type'), OCI_MANIFEST);
    assert.equal(res.headers.get('docker-content-digest'), want);
    const listed = JSON.parse(await skopeo('list-tags', '--tls-verify=false', `docker://${server.host}/clients/umoci`)) as { Tags: string[] };
    assert.deepEqual(listed.Tags, ['v1']);
  });

  it('copy pull back to a layout is byte-identical to the pushed one', async () => {
    const pulled = path.join(work, 'umoci-pulled');
    await skopeo('copy', '--src-tls-verify=false', '--preserve-digests', `docker://${server.host}/clients/umoci:v1`, `oci:${pulled}:v1`);
    await assertSameImage(umociLayout, 'v1', pulled, 'v1');
  });

  it('copy between two repos of the same registry (blobs mounted or re-sent) keeps the digest', async () => {
    const want = await tagDigest(umociLayout, 'v1');
    await skopeo('copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${server.host}/clients/umoci:v1`, `docker://${server.host}/clients/umoci-copy:v1`);
    const raw = await rawManifest('clients/umoci-copy:v1');
    assert.equal(sha256(raw), want);
  });

  it('copy --all of a two-platform index: index and children byte-identical, pulled layout identical', async () => {
    const { dir } = await handMadeMultiArch(path.join(work, 'multi'));
    const indexDigest = await tagDigest(dir, 'multi');
    await skopeo('copy', '--all', '--preserve-digests', '--dest-tls-verify=false', `oci:${dir}:multi`, `docker://${server.host}/clients/multi:v1`);
    const raw = await rawManifest('clients/multi:v1');
    assert.equal(sha256(raw), indexDigest);
    assert.ok(raw.equals(await blobOf(dir, indexDigest)));
    const { res } = await reg.getManifest('clients/multi', 'v1');
    assert.equal(res.headers.get('content-type'), OCI_INDEX);
    const index = JSON.parse(raw.toString()) as { manifests: { digest: string; platform: { architecture: string } }[] };
    for (const child of index.manifests) {
      const childRaw = await rawManifest(`clients/multi@${child.digest}`);
      assert.equal(sha256(childRaw), child.digest);
    }

    const pulled = path.join(work, 'multi-pulled');
    await skopeo('copy', '--all', '--preserve-digests', '--src-tls-verify=false', `docker://${server.host}/clients/multi:v1`, `oci:${pulled}:multi`);
    await assertSameImage(dir, 'multi', pulled, 'multi');

    // A single-platform pull resolves the index to the arm64 child.
    const arm = path.join(work, 'multi-arm64');
    await skopeo('--override-arch', 'arm64', '--override-os', 'linux', 'copy', '--src-tls-verify=false', `docker://${server.host}/clients/multi:v1`, `oci:${arm}:arm`);
    const armChild = index.manifests.find((m) => m.platform.architecture === 'arm64')!;
    assert.equal(await tagDigest(arm, 'arm'), armChild.digest);
  });

  it('copy --format v2s2 pushes Docker schema 2 that reads back unchanged', async () => {
    await skopeo('copy', '--format', 'v2s2', '--dest-tls-verify=false', `oci:${umociLayout}:v1`, `docker://${server.host}/clients/docker:v1`);
    const raw = await rawManifest('clients/docker:v1');
    const doc = JSON.parse(raw.toString()) as { mediaType: string; config: { digest: string } };
    assert.equal(doc.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    const { res, bytes } = await reg.getManifest('clients/docker', 'v1');
    assert.equal(res.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(res.headers.get('docker-content-digest'), sha256(raw));
    assert.ok(bytes.equals(raw));
    const out = path.join(work, 'docker-dir');
    await skopeo('copy', '--src-tls-verify=false', `docker://${server.host}/clients/docker:v1`, `dir:${out}`);
    assert.ok((await readFile(path.join(out, 'manifest.json'))).equals(raw));
    const config = await readFile(path.join(out, doc.config.digest.slice(7)));
    assert.equal(sha256(config), doc.config.digest);
  });
});

describe('curl', () => {
  it('a 2 MiB blob with POST + PUT (curl sends Expect: 100-continue), read back', async () => {
    const data = Buffer.alloc(2 * 1024 * 1024, 7);
    const file = path.join(work, 'curl-blob');
    await writeFile(file, data);
    const digest = sha256(data);
    const headers = await tool('curl', ['-sS', '-D', '-', '-o', '/dev/null', '-X', 'POST', `${server.url}/v2/clients/curl/blobs/uploads/`]);
    const location = /^location: (\S+)/im.exec(headers)![1]!;
    const put = new URL(location, server.url);
    put.searchParams.set('digest', digest);
    const out = await tool('curl', ['-sS', '-D', '-', '-o', '/dev/null', '-X', 'PUT', '-H', 'Content-Type: application/octet-stream', '--data-binary', `@${file}`, put.toString()]);
    assert.match(out, /^HTTP\/1\.1 100 Continue/m, 'curl asked for 100-continue');
    assert.match(out, /^HTTP\/1\.1 201/m);
    assert.match(out, new RegExp(`^docker-content-digest: ${digest}`, 'im'));
    const back = path.join(work, 'curl-back');
    await tool('curl', ['-sS', '-f', '-o', back, `${server.url}/v2/clients/curl/blobs/${digest}`]);
    assert.ok((await readFile(back)).equals(data));
  });
});

describe('buildah', () => {
  const storage = (name: string) => ['--root', path.join(work, name, 'root'), '--runroot', path.join(work, name, 'runroot'), '--storage-driver', 'vfs'];
  const buildah = (store: string, ...args: string[]) => tool('buildah', [...storage(store), ...args]);

  it('push of an image built from scratch, then pull into a fresh store: same digest, same files', async () => {
    const rootfs = path.join(work, 'buildah-rootfs');
    await mkdir(rootfs, { recursive: true });
    await tool('tar', ['-xzf', BUSYBOX, '-C', rootfs]);
    await writeFile(path.join(rootfs, 'kiln-test.txt'), 'pushed by buildah\n');

    const ctr = (await buildah('a', 'from', '--signature-policy', policy, 'scratch')).trim();
    await buildah('a', 'copy', ctr, rootfs, '/');
    await buildah('a', 'config', '--cmd', '/bin/sh', '--env', 'KILN=1', ctr);
    await buildah('a', 'commit', '--signature-policy', policy, ctr, 'localhost/kiln-test:v1');
    const digestFile = path.join(work, 'buildah-digest');
    await buildah('a', 'push', '--signature-policy', policy, '--tls-verify=false', '--digestfile', digestFile, 'localhost/kiln-test:v1', `docker://${server.host}/clients/buildah:v1`);
    const pushed = (await readFile(digestFile, 'utf8')).trim();
    assert.match(pushed, /^sha256:[0-9a-f]{64}$/);
    const raw = await rawManifest('clients/buildah:v1');
    assert.equal(sha256(raw), pushed);
    const head = await reg.fetch('/v2/clients/buildah/manifests/v1', { method: 'HEAD' });
    assert.equal(head.headers.get('docker-content-digest'), pushed);

    // Pull into an empty store so every byte comes from Kiln.
    const ref = `${server.host}/clients/buildah:v1`;
    await buildah('b', 'pull', '--signature-policy', policy, '--tls-verify=false', `docker://${ref}`);
    const digests = (await buildah('b', 'images', '--digests', '--format', '{{.Digest}}')).trim().split('\n');
    assert.deepEqual(digests, [pushed]);
    const configDigest = (JSON.parse(raw.toString()) as { config: { digest: string } }).config.digest;
    const pulledId = (await buildah('b', 'inspect', '--type', 'image', '--format', '{{.FromImageID}}', ref)).trim();
    assert.equal(`sha256:${pulledId}`, configDigest);

    const pulledCtr = (await buildah('b', 'from', '--pull-never', '--signature-policy', policy, ref)).trim();
    const mountpoint = (await buildah('b', 'mount', pulledCtr)).trim();
    try {
      await tool('diff', ['-r', '--no-dereference', rootfs, mountpoint]);
    } finally {
      await buildah('b', 'umount', pulledCtr);
      await buildah('b', 'rm', pulledCtr);
    }
  });
});
