// The corpus side of the benches: reading OCI layouts, a throw-away warm-up
// image, and pushing/pulling with skopeo or with plain HTTP.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { run, type Finished } from './proc.js';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface Layout {
  dir: string;
  manifest: Descriptor;
  manifestBytes: Buffer;
  /** config first, then the layers in order */
  blobs: Descriptor[];
}

export function blobPath(layoutDir: string, digest: string): string {
  const [algorithm, hex] = digest.split(':');
  return path.join(layoutDir, 'blobs', algorithm!, hex!);
}

/** The image manifest tagged `tag` in an OCI layout (the corpus has one per layout, tag `1`). */
export async function readLayout(dir: string, tag = '1'): Promise<Layout> {
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as {
    manifests: (Descriptor & { annotations?: Record<string, string> })[];
  };
  const manifest = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!manifest) throw new Error(`${dir}: no manifest tagged ${tag}`);
  const manifestBytes = await readFile(blobPath(dir, manifest.digest));
  const parsed = JSON.parse(manifestBytes.toString('utf8')) as { config: Descriptor; layers: Descriptor[] };
  return { dir, manifest, manifestBytes, blobs: [parsed.config, ...parsed.layers] };
}

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

async function writeBlob(layoutDir: string, data: Buffer, mediaType: string): Promise<Descriptor> {
  const digest = sha256(data);
  await writeFile(blobPath(layoutDir, digest), data);
  return { mediaType, digest, size: data.length };
}

/**
 * A small image with random content, made fresh for every bench run, so that
 * none of its blobs exists anywhere in the corpus. Pushing it warms a
 * registry's upload and manifest paths (Node's JIT in particular) without
 * putting any measured blob into the registry.
 */
export async function makeWarmupLayout(dir: string): Promise<string> {
  await mkdir(path.join(dir, 'blobs/sha256'), { recursive: true });
  const tree = path.join(dir, 'tree');
  await mkdir(tree);
  await writeFile(path.join(tree, 'random.bin'), randomBytes(1 << 20));
  const layerFile = path.join(dir, 'layer.tar');
  await run('tar', ['-cf', layerFile, '-C', tree, '.']);
  const layerBytes = await readFile(layerFile);
  const layer = await writeBlob(dir, layerBytes, 'application/vnd.oci.image.layer.v1.tar');
  const config = await writeBlob(
    dir,
    Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [layer.digest] } })),
    'application/vnd.oci.image.config.v1+json',
  );
  const manifest = await writeBlob(
    dir,
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [layer] })),
    'application/vnd.oci.image.manifest.v1+json',
  );
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifest, annotations: { 'org.opencontainers.image.ref.name': '1' } }] }),
  );
  return dir;
}

/** `skopeo copy oci:LAYOUT:1 docker://HOST/REPO:1`, as in BASELINES section A. */
export function skopeoPush(layoutDir: string, host: string, repo: string): Promise<Finished> {
  return run('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layoutDir}:1`, `docker://${host}/${repo}:1`]);
}

/** `skopeo copy docker://HOST/REPO:1 oci:DEST:x`; DEST must not exist yet. */
export function skopeoPull(host: string, repo: string, dest: string): Promise<Finished> {
  return run('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${host}/${repo}:1`, `oci:${dest}:x`]);
}

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request; `body` is bytes or a file to stream (blobs are never read whole). */
export function request(method: string, url: string, headers: Record<string, string | number> = {}, body?: Buffer | { file: string }): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (s: string) => (text += s));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.once('error', reject);
    });
    req.once('error', reject);
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else createReadStream(body.file, { highWaterMark: 1 << 20 }).once('error', reject).pipe(req);
  });
}

function expect(res: Response, status: number, what: string): void {
  if (res.status !== status) throw new Error(`${what}: HTTP ${res.status} (expected ${status}): ${res.body.slice(0, 500)}`);
}

/** Upload config and layers of `layout` to `repo` (POST, then one monolithic PUT per blob). */
export async function pushBlobs(host: string, repo: string, layout: Layout): Promise<void> {
  for (const blob of layout.blobs) {
    const started = await request('POST', `http://${host}/v2/${repo}/blobs/uploads/`, { 'Content-Length': 0 });
    expect(started, 202, `start upload of ${blob.digest}`);
    const location = new URL(String(started.headers.location), `http://${host}`);
    location.searchParams.set('digest', blob.digest);
    const file = blobPath(layout.dir, blob.digest);
    const { size } = await stat(file);
    const done = await request('PUT', location.href, { 'Content-Type': 'application/octet-stream', 'Content-Length': size }, { file });
    expect(done, 201, `upload of ${blob.digest}`);
  }
}

/** PUT the manifest by tag; resolves when the response has been received in full. */
export async function putManifest(host: string, repo: string, tag: string, layout: Layout): Promise<void> {
  const res = await request('PUT', `http://${host}/v2/${repo}/manifests/${tag}`, { 'Content-Type': layout.manifest.mediaType }, layout.manifestBytes);
  expect(res, 201, `manifest PUT ${repo}:${tag}`);
}
