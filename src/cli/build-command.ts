// `kiln build DIR`: tars the build context, posts it to /api/v1/builds, follows
// the build (its log with --follow, its status otherwise) and ends with the
// image ref and the disk's status; exits non-zero when the build does not end ready.
import { createReadStream, createWriteStream, openAsBlob } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Command } from 'commander';
import tarStream, { type Header, type Pack } from 'tar-stream';
import type { BuildView } from '../builds/service.js';
import { clientFromEnv, KilnApiError, type ApiClient } from './api-client.js';
import { formatBytes } from '../util/format-bytes.js';

const POLL_MS = 500;
const ENDED = new Set(['ready', 'failed', 'cancelled']);

interface BuildOptions {
  file?: string;
  globalCacheKey?: string;
  admin?: boolean;
  buildArg: string[];
  secret: string[];
  platform?: string;
  timeout?: string;
  follow?: boolean;
  url?: string;
}

export function registerBuildCommand(program: Command): void {
  program
    .command('build <dir>')
    .description('build DIR on the server (its Dockerfile, or -f) and wait for the image and its disk')
    .option('-f, --file <dockerfile>', 'Dockerfile to build (default: the Dockerfile at the top of DIR)')
    .option('--global-cache-key <key>', 'read (admin builds: fill) the global build cache under this key, e.g. node20')
    .option('--admin', 'admin build: exports its cache to the global cache (admin API keys only)')
    .option('--build-arg <name=value>', 'build argument (repeatable)', (value: string, all: string[]) => [...all, value], [] as string[])
    .option('--secret <id=…,src=FILE|env=VAR>', 'build secret for RUN --mount=type=secret,id=… (repeatable); never stored', (value: string, all: string[]) => [...all, value], [] as string[])
    .option('--platform <os/arch>', 'target platform, e.g. linux/amd64')
    .option('--timeout <seconds>', 'fail the build when building and pushing take longer')
    .option('--follow', 'stream the build log while it runs')
    .option('--url <url>', 'Kiln base URL (env KILN_URL, default http://127.0.0.1:5000)')
    .action(async (dir: string, opts: BuildOptions) => {
      const final = await runBuild(clientFromEnv(opts.url), dir, opts);
      const disk = final.image.disk;
      if (final.status !== 'ready') {
        throw new Error(`build ${final.id} ${final.status}${final.error ? `: ${final.error}` : ''}`);
      }
      const size = disk.size_bytes === null ? '' : ` (${formatBytes(disk.size_bytes)})`;
      process.stdout.write(`${final.image.ref}\ndisk ${disk.status}${size}: /api/v1/images/${final.image.digest}/disk\n`);
    });
}

async function runBuild(client: ApiClient, dir: string, opts: BuildOptions): Promise<BuildView> {
  const info = await lstat(dir).catch(() => null);
  if (info === null || !info.isDirectory()) throw new Error(`${dir} is not a directory`);
  const form = new FormData();
  if (opts.file !== undefined) form.set('dockerfile', await readFile(opts.file, 'utf8'));
  const args = parseBuildArgs(opts.buildArg);
  if (Object.keys(args).length > 0) form.set('build_args', JSON.stringify(args));
  const secrets = await readSecrets(opts.secret, process.env);
  if (Object.keys(secrets).length > 0) form.set('secrets', JSON.stringify(secrets));
  if (opts.globalCacheKey) form.set('global_cache_key', opts.globalCacheKey);
  if (opts.admin) form.set('admin', 'true');
  if (opts.platform) form.set('platform', opts.platform);
  if (opts.timeout) form.set('timeout_seconds', opts.timeout);

  const scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-build-'));
  let accepted: { id: string; queue_position: number };
  try {
    const archive = path.join(scratch, 'source.tar.gz');
    await packDirectory(dir, archive);
    // The source goes last, so the server has read every field once it has the archive.
    form.set('source', await openAsBlob(archive), 'source.tar.gz');
    accepted = await client.json<{ id: string; queue_position: number }>('/api/v1/builds', { method: 'POST', body: form });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  process.stderr.write(`build ${accepted.id} queued (position ${accepted.queue_position})\n`);
  if (opts.follow) {
    const ended = await followLog(client, accepted.id).catch((err: unknown) => {
      process.stderr.write(`log stream broke (${(err as Error).message}); waiting for the build instead\n`);
      return null;
    });
    if (ended !== null && ENDED.has(ended.status)) return ended;
  }
  return waitForEnd(client, accepted.id);
}

export function parseBuildArgs(pairs: readonly string[]): Record<string, string> {
  const args: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`--build-arg "${pair}" must be NAME=value`);
    args[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return args;
}

/** `--secret id=npmrc,src=./npmrc` or `id=token,env=NPM_TOKEN`, as docker build spells them. */
export async function readSecrets(specs: readonly string[], env: NodeJS.ProcessEnv): Promise<Record<string, string>> {
  const secrets: Record<string, string> = {};
  for (const spec of specs) {
    const fields = Object.fromEntries(spec.split(',').map((part) => {
      const eq = part.indexOf('=');
      return eq === -1 ? [part, ''] : [part.slice(0, eq), part.slice(eq + 1)];
    }));
    const id = fields.id;
    if (!id) throw new Error(`--secret "${spec}" needs id=…`);
    if (fields.src !== undefined) secrets[id] = await readFile(fields.src, 'utf8');
    else if (fields.env !== undefined) {
      const value = env[fields.env];
      if (value === undefined) throw new Error(`--secret ${id}: the environment variable ${fields.env} is not set`);
      secrets[id] = value;
    } else throw new Error(`--secret "${spec}" needs src=FILE or env=VAR`);
  }
  return secrets;
}

/** Polls the build, telling each status change on stderr, until it ends. */
async function waitForEnd(client: ApiClient, id: string): Promise<BuildView> {
  let last = '';
  for (;;) {
    const view = await client.json<BuildView>(`/api/v1/builds/${id}`);
    const text = view.status === 'queued' ? `queued (position ${view.queue_position})` : view.status;
    if (text !== last) {
      process.stderr.write(`build ${id}: ${text}\n`);
      last = text;
    }
    if (ENDED.has(view.status)) return view;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Prints the log as the server streams it (SSE) and returns the build from the closing `end` event. */
async function followLog(client: ApiClient, id: string): Promise<BuildView | null> {
  const res = await client.request(`/api/v1/builds/${id}/logs?follow=true`, { headers: { accept: 'text/event-stream' } });
  if (!res.ok || res.body === null) throw new KilnApiError(res.status, `following the log answered HTTP ${res.status}`);
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    let split: number;
    while ((split = buffer.indexOf('\n\n')) !== -1) {
      const event = parseEvent(buffer.slice(0, split));
      buffer = buffer.slice(split + 2);
      if (event.type === 'end') return JSON.parse(event.data) as BuildView;
      if (event.type === 'message' && event.hasData) process.stdout.write(`${event.data}\n`);
    }
  }
  return null;
}

/** One Server-Sent Event block: its type (default `message`) and data lines. Pure. */
export function parseEvent(block: string): { type: string; data: string; hasData: boolean } {
  let type = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  return { type, data: data.join('\n'), hasData: data.length > 0 };
}

/** Writes DIR as a tar.gz: files, directories and symlinks, with relative names. */
export async function packDirectory(dir: string, archive: string): Promise<void> {
  const pack = tarStream.pack();
  const writing = pipeline(pack, createGzip(), createWriteStream(archive));
  try {
    await addTree(pack, path.resolve(dir), '');
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    await writing.catch(() => undefined);
    throw err;
  }
  await writing;
}

async function addTree(pack: Pack, root: string, rel: string): Promise<void> {
  const entries = (await readdir(path.join(root, rel))).sort();
  for (const name of entries) {
    const relPath = rel === '' ? name : `${rel}/${name}`;
    const abs = path.join(root, relPath);
    const info = await lstat(abs);
    const header = { name: relPath, mode: info.mode & 0o7777, mtime: info.mtime };
    if (info.isDirectory()) {
      await addEntry(pack, { ...header, type: 'directory' });
      await addTree(pack, root, relPath);
    } else if (info.isSymbolicLink()) {
      await addEntry(pack, { ...header, type: 'symlink', linkname: await readlink(abs) });
    } else if (info.isFile()) {
      await new Promise<void>((resolve, reject) => {
        const entry = pack.entry({ ...header, type: 'file', size: info.size }, (err) => (err ? reject(err) : resolve()));
        pipeline(createReadStream(abs), entry).catch(reject);
      });
    } else {
      process.stderr.write(`skipping ${relPath}: not a file, directory or symlink\n`);
    }
  }
}

function addEntry(pack: Pack, header: Partial<Header> & { name: string }): Promise<void> {
  return new Promise((resolve, reject) => pack.entry(header, (err) => (err ? reject(err) : resolve())));
}
