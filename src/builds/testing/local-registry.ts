// Test support: a throwaway Debian `docker-registry` (CNCF distribution 2.8)
// on a free loopback port, for the backend-level buildah test (the service
// tests, test/builds-service.test.ts, run against Kiln's own server); plus the
// few registry calls the tests need.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { buildkitFixturesDir } from './fixtures.js';

export interface LocalRegistry {
  /** `127.0.0.1:<port>` */
  host: string;
  stop(): Promise<void>;
}

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts docker-registry with filesystem storage under `dir`; retries if the chosen port was taken meanwhile. */
export async function startLocalRegistry(dir: string, command = 'docker-registry'): Promise<LocalRegistry> {
  await mkdir(path.join(dir, 'data'), { recursive: true });
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const host = `127.0.0.1:${await freePort()}`;
    const config = path.join(dir, 'config.yml');
    await writeFile(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: warn',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${path.join(dir, 'data')}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: ${host}`,
        '',
      ].join('\n'),
    );
    const child = spawn(command, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      await waitUntilServing(host, child);
      return { host, stop: () => stopProcess(child) };
    } catch (err) {
      lastError = new Error(`${command} did not start on ${host}: ${(err as Error).message}\n${stderr}`);
      await stopProcess(child);
    }
  }
  throw lastError;
}

async function waitUntilServing(host: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('the registry exited');
    const status = await fetch(`http://${host}/v2/`).then((r) => r.status, () => 0);
    if (status === 200) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no answer on /v2/ within 10 s');
}

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** Monolithic blob upload (POST, then one PUT with the digest). */
async function pushBlob(host: string, repo: string, digest: string, body: Buffer): Promise<void> {
  const start = await fetch(`http://${host}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`blob upload to ${repo} answered ${start.status}`);
  const location = new URL(start.headers.get('location')!, `http://${host}`);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', body, headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`blob PUT ${digest} to ${repo} answered ${put.status}`);
}

/**
 * Pushes the fixture busybox base image (one layer, umoci-made) as `repo:tag`
 * and returns its manifest digest.
 */
export async function pushFixtureBaseImage(host: string, repo = 'library/base', tag = 'latest'): Promise<string> {
  const fixtures = buildkitFixturesDir();
  const manifest = await readFile(path.join(fixtures, 'base-image.manifest.json'));
  const parsed = JSON.parse(manifest.toString()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  for (const digest of [parsed.config.digest, ...parsed.layers.map((l) => l.digest)]) {
    await pushBlob(host, repo, digest, await readFile(path.join(fixtures, 'blobs', 'sha256', digest.slice('sha256:'.length))));
  }
  const put = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    body: manifest,
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  if (put.status !== 201) throw new Error(`manifest PUT answered ${put.status}: ${await put.text()}`);
  return put.headers.get('docker-content-digest')!;
}

/** The manifest `repo:reference` as the registry serves it, or null when it has none. */
export async function fetchManifest(host: string, repo: string, reference: string): Promise<{ digest: string; body: Buffer } | null> {
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${reference}`, { headers: { accept: MANIFEST_ACCEPT } });
  if (res.status === 404) return null;
  if (res.status !== 200) throw new Error(`GET manifest ${repo}:${reference} answered ${res.status}`);
  return { digest: res.headers.get('docker-content-digest')!, body: Buffer.from(await res.arrayBuffer()) };
}

export async function fetchBlob(host: string, repo: string, digest: string): Promise<Buffer> {
  const res = await fetch(`http://${host}/v2/${repo}/blobs/${digest}`);
  if (res.status !== 200) throw new Error(`GET blob ${repo}@${digest} answered ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

/** Tags of `repo`, sorted; [] when the repo does not exist. */
export async function listTags(host: string, repo: string): Promise<string[]> {
  const res = await fetch(`http://${host}/v2/${repo}/tags/list`);
  if (res.status === 404) return [];
  const body = (await res.json()) as { tags: string[] | null };
  return [...(body.tags ?? [])].sort();
}

/** Contents of `file` (no leading slash) in the image `repo:reference`, from the topmost layer that has it. */
export async function readFileFromImage(host: string, repo: string, reference: string, file: string): Promise<string | null> {
  const manifest = await fetchManifest(host, repo, reference);
  if (manifest === null) return null;
  const layers = (JSON.parse(manifest.body.toString()) as { layers: Array<{ digest: string }> }).layers;
  for (const layer of [...layers].reverse()) {
    const extract = tarStream.extract();
    Readable.from([gunzipSync(await fetchBlob(host, repo, layer.digest))]).pipe(extract);
    let found: string | null = null;
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      if (entry.header.name.replace(/^\.?\//, '') === file) found = Buffer.concat(chunks).toString();
    }
    if (found !== null) return found;
  }
  return null;
}
