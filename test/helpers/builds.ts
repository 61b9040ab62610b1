// Driving builds through Kiln's API in tests: archives, submissions, waiting,
// following the log over SSE, pushing the fixture base image, and whether a
// real BuildKit is here to run them.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { locateBuildkit } from '../../src/builds/buildkit/locate.js';
import { isOnPath } from '../../src/builds/process.js';
import type { BuildView } from '../../src/builds/service.js';
import { parseEvent } from '../../src/cli/build-command.js';
import type { TestKiln } from './kiln.js';
import { buildkitFixtures, repoRoot } from './paths.js';

const run = promisify(execFile);

export type Headers = Record<string, string>;

/** A JSON Web Token (header and payload parts), as a leaked build token would appear in a log or a file. */
export const JWT = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\./;

/** Bearer headers of an admin key and of tenants `acme` and `beta` (servers with KILN_AUTH=token). */
export async function testKeys(kiln: TestKiln): Promise<{ admin: Headers; acme: Headers; beta: Headers }> {
  const key = async (request: { tenant?: string; admin?: boolean }) => ({
    authorization: `Bearer ${(await kiln.kiln.auth.tokens.createApiKey({ ...request, ttlSeconds: 3600 })).token}`,
  });
  return { admin: await key({ admin: true }), acme: await key({ tenant: 'acme' }), beta: await key({ tenant: 'beta' }) };
}

/** BuildKit extracted by scripts/install-deps.sh, if it did. */
const localBuildkit = path.join(repoRoot, '.tools', 'buildkit');

/** Settings that point a test server at the BuildKit the tests use. */
export function buildkitEnv(): Record<string, string> {
  return existsSync(path.join(localBuildkit, 'buildkitd')) ? { KILN_BUILDKIT_DIR: localBuildkit } : {};
}

/** Why BuildKit builds cannot run here, or null when they can. */
export async function buildkitSkipReason(): Promise<string | null> {
  if (process.platform !== 'linux') return 'BuildKit builds run on Linux only';
  const dir = buildkitEnv().KILN_BUILDKIT_DIR;
  const located = await locateBuildkit({ dir, usesPool: false });
  if ('problem' in located) return located.problem;
  for (const tool of ['e2fsck', 'debugfs', 'mkfs.ext4', 'iptables']) {
    if (!(await isOnPath(tool, `${process.env.PATH}:/usr/sbin:/sbin`))) return `${tool} is not installed (scripts/install-deps.sh test)`;
  }
  return null;
}

export interface Entry {
  content?: string | Buffer;
  /** A symlink to this target instead of a file. */
  symlink?: string;
  type?: 'directory';
}

/** Entries' mtime, so the same files always make the same archive (a test may hash one it did not send). */
const TAR_MTIME = new Date('2024-01-01T00:00:00Z');

/** A gzipped tar of `files` (path → content, or an entry); the same bytes for the same files. */
export async function tarGz(files: Record<string, string | Buffer | Entry>): Promise<Buffer> {
  const pack = tarStream.pack();
  const mtime = TAR_MTIME;
  for (const [name, value] of Object.entries(files)) {
    const entry: Entry = typeof value === 'string' || Buffer.isBuffer(value) ? { content: value } : value;
    if (entry.symlink !== undefined) pack.entry({ name, type: 'symlink', linkname: entry.symlink, mtime });
    else if (entry.type === 'directory') pack.entry({ name, type: 'directory', mode: 0o755, mtime });
    else pack.entry({ name, mode: 0o644, mtime }, entry.content ?? '');
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return gzipSync(Buffer.concat(chunks));
}

export interface Submit {
  files: Record<string, string | Buffer | Entry>;
  fields?: Record<string, string>;
  headers?: Headers;
}

export async function postBuild(url: string, submit: Submit): Promise<Response> {
  const form = new FormData();
  for (const [name, value] of Object.entries(submit.fields ?? {})) form.set(name, value);
  form.set('source', new Blob([await tarGz(submit.files)]), 'source.tar.gz');
  return fetch(`${url}/api/v1/builds`, { method: 'POST', body: form, headers: submit.headers });
}

export async function submitBuild(url: string, submit: Submit): Promise<{ id: string; status: string; queue_position: number }> {
  const res = await postBuild(url, submit);
  const text = await res.text();
  assert.equal(res.status, 202, text);
  return JSON.parse(text) as { id: string; status: string; queue_position: number };
}

export async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await res.json()) as { error: { code: string; message: string } };
  return { status: res.status, ...body.error };
}

export async function getBuild(url: string, id: string, headers: Headers = {}): Promise<BuildView> {
  const res = await fetch(`${url}/api/v1/builds/${id}`, { headers });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text) as BuildView;
}

export const ended = (b: BuildView) => ['ready', 'failed', 'cancelled'].includes(b.status);

export async function waitForBuild(url: string, id: string, until: (b: BuildView) => boolean, headers: Headers = {}, timeoutMs = 180_000): Promise<BuildView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const build = await getBuild(url, id, headers);
    if (until(build)) return build;
    if (Date.now() > deadline) assert.fail(`build ${id} is ${build.status} (${build.error}) after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function logOf(url: string, id: string, headers: Headers = {}): Promise<string> {
  const res = await fetch(`${url}/api/v1/builds/${id}/logs`, { headers });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return text;
}

export interface FollowedLog {
  lines: string[];
  ids: number[];
  /** Comment lines (`: …`) in the order they came. */
  comments: string[];
  end: BuildView | null;
}

/** Follows the log over SSE until the `end` event or the stream closes. */
export async function followLog(
  url: string,
  id: string,
  options: { headers?: Headers; onLine?: (line: string) => void; onComment?: (comment: string) => void } = {},
): Promise<FollowedLog> {
  const res = await fetch(`${url}/api/v1/builds/${id}/logs?follow=true`, { headers: options.headers });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const out: FollowedLog = { lines: [], ids: [], comments: [], end: null };
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body!) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    let split: number;
    while ((split = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, split);
      buffer = buffer.slice(split + 2);
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          out.comments.push(line);
          options.onComment?.(line);
        }
      }
      const event = parseEvent(block);
      if (event.type === 'end') {
        out.end = JSON.parse(event.data) as BuildView;
      } else if (event.hasData) {
        out.lines.push(event.data);
        const idLine = /^id: (\d+)$/m.exec(block);
        if (idLine) out.ids.push(Number(idLine[1]));
        options.onLine?.(event.data);
      }
    }
  }
  return out;
}

/** Pushes the fixture busybox base image (one layer) as `repo:tag`; returns its digest. */
export async function pushBaseImage(url: string, repo: string, tag: string, headers: Headers = {}): Promise<string> {
  const manifest = await readFile(path.join(buildkitFixtures, 'base-image.manifest.json'));
  const parsed = JSON.parse(manifest.toString()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  for (const digest of [parsed.config.digest, ...parsed.layers.map((l) => l.digest)]) {
    const body = await readFile(path.join(buildkitFixtures, 'blobs', 'sha256', digest.slice('sha256:'.length)));
    const res = await fetch(`${url}/v2/${repo}/blobs/uploads/?digest=${digest}`, { method: 'POST', body, headers: { ...headers, 'content-type': 'application/octet-stream' } });
    assert.equal(res.status, 201, `blob to ${repo}: ${await res.text()}`);
  }
  const put = await fetch(`${url}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    body: manifest,
    headers: { ...headers, 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(put.status, 201, await put.text());
  return put.headers.get('docker-content-digest')!;
}

export async function tagsOf(url: string, repo: string, headers: Headers = {}): Promise<string[]> {
  const res = await fetch(`${url}/v2/${repo}/tags/list`, { headers });
  const text = await res.text();
  if (res.status === 404) return [];
  assert.equal(res.status, 200, text);
  return [...((JSON.parse(text) as { tags: string[] | null }).tags ?? [])].sort();
}

/** The digest `repo:tag` points at, or null. */
export async function manifestDigest(url: string, repo: string, tag: string, headers: Headers = {}): Promise<string | null> {
  const res = await fetch(`${url}/v2/${repo}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { ...headers, accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' },
  });
  return res.status === 200 ? res.headers.get('docker-content-digest') : null;
}

/** Downloads the image's disk and checks it with e2fsck; returns the file. */
export async function verifiedDisk(url: string, digest: string, file: string, headers: Headers = {}): Promise<string> {
  const disk = await fetch(`${url}/api/v1/images/${digest}/disk`, { headers });
  assert.equal(disk.status, 200);
  await writeFile(file, Buffer.from(await disk.arrayBuffer()));
  await run('e2fsck', ['-fn', file]);
  return file;
}

/** A file's content inside an ext4 image (debugfs). */
export async function diskFile(disk: string, file: string): Promise<string> {
  return (await run('debugfs', ['-R', `cat ${file}`, disk])).stdout;
}

/** Mount points under `dir` (nothing a build leaves may stay mounted). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point): point is string => point !== undefined && (point === dir || point.startsWith(`${dir}/`)));
}

/** The Kiln iptables rules in INPUT (each running build has one). */
export async function kilnFirewallRules(): Promise<string[]> {
  const { stdout } = await run('iptables', ['-w', '10', '-S', 'INPUT']);
  return stdout.split('\n').filter((l) => l.includes('kiln-build'));
}
