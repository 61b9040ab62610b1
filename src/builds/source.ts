// The uploaded build source: a tar or tar.gz extracted safely into a fresh
// directory, and the Dockerfile found in it or written from the request.
//
// Safety rules: entry names are relative and never climb out (`..`, absolute
// paths); nothing is ever written through a symlink (every parent is checked
// to be a real directory, files are created O_EXCL|O_NOFOLLOW); a symlink's
// target is resolved through the links already in the tree, component by
// component, and must stay inside it, both when the link is made and again
// once the whole archive is out (a later entry may turn a directory an earlier
// link walks through into a link); hard links become copies of files already
// extracted; devices and FIFOs are refused; total size and entry count are
// capped while streaming. Ownership is not restored and setuid/setgid bits are dropped.
import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, copyFile, lstat, lutimes, mkdir, open, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tarStream, { type Extract, type Header } from 'tar-stream';
import { invalidInput } from './errors.js';

/** One archive entry: its header and a stream of its content. */
type Source = Extract extends AsyncIterable<infer T> ? T : never;

export interface SourceLimits {
  /** Sum of all file sizes once extracted. */
  maxBytes: number;
  maxEntries: number;
}

export const DEFAULT_SOURCE_LIMITS: SourceLimits = { maxBytes: 512 * 1024 * 1024, maxEntries: 100_000 };

export interface ExtractedSource {
  /** `sha256:<hex>` of the archive exactly as uploaded (compressed or not). */
  sha256: string;
  files: number;
  bytes: number;
}

/**
 * The entry's path relative to the tree, in POSIX form; '' for the root
 * itself; null when it would land outside the tree. Pure.
 */
export function safeEntryPath(name: string): string | null {
  if (name.includes('\0') || name.startsWith('/')) return null;
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return null;
    parts.push(part);
  }
  return parts.join('/');
}

/** Reads the target of the tree-relative path `rel` when it is a symlink; null for anything else (or nothing). */
export type LinkReader = (rel: string) => Promise<string | null>;

/** How many links one resolution may pass through (Linux's own limit). */
const MAX_LINK_HOPS = 40;

/**
 * Where a symlink at `linkPath` (tree-relative) with `target` leads once every
 * link on the way is followed, the way the kernel would walk it from inside
 * the tree: the tree-relative result, or null when the walk leaves the tree
 * at any step, meets an absolute link, or loops.
 */
export async function resolveLinkTarget(linkPath: string, target: string, readLink: LinkReader): Promise<string | null> {
  if (!isRelativeTarget(target)) return null;
  const queue = [...path.posix.dirname(linkPath).split('/'), ...target.split('/')];
  const resolved: string[] = [];
  let hops = 0;
  while (queue.length > 0) {
    const part = queue.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (resolved.length === 0) return null;
      resolved.pop();
      continue;
    }
    resolved.push(part);
    const next = await readLink(resolved.join('/'));
    if (next === null) continue;
    if (++hops > MAX_LINK_HOPS || !isRelativeTarget(next)) return null;
    // A link's target is relative to the directory holding it.
    resolved.pop();
    queue.unshift(...next.split('/'));
  }
  return resolved.join('/');
}

function isRelativeTarget(target: string): boolean {
  return target !== '' && !target.startsWith('/') && !target.includes('\0');
}

/** A LinkReader over a directory on disk. */
export function linkReaderOf(root: string): LinkReader {
  return async (rel) => {
    const abs = path.join(root, rel);
    const info = await lstat(abs).catch(() => null);
    return info?.isSymbolicLink() ? readlink(abs) : null;
  };
}

/** Extracts a tar or tar.gz stream into `destDir` (which must exist and be empty). */
export async function extractSource(input: Readable, destDir: string, limits: SourceLimits = DEFAULT_SOURCE_LIMITS): Promise<ExtractedSource> {
  const hash = createHash('sha256');
  const { gzip, stream } = await sniffGzip(hashing(input, hash));
  const extract = tarStream.extract();
  const feeding = pipeline([stream, ...(gzip ? [createGunzip()] : []), extract]);
  feeding.catch(() => undefined); // awaited below; this only keeps an early failure from being "unhandled"
  const writer = new TreeWriter(destDir, limits);
  try {
    for await (const entry of extract) {
      await writer.write(entry).catch((err: unknown) => {
        throw new WriteFailure(err);
      });
    }
    await feeding;
  } catch (err) {
    stream.destroy();
    extract.destroy();
    // A refused entry or a failing disk is not the archive's fault; anything else came from reading it.
    if (err instanceof WriteFailure) throw err.cause;
    throw invalidInput(`source is not a readable tar or tar.gz archive: ${(err as Error).message}`);
  }
  await writer.finish();
  await writer.checkLinks();
  return { sha256: `sha256:${hash.digest('hex')}`, files: writer.files, bytes: writer.bytes };
}

class WriteFailure extends Error {
  constructor(override readonly cause: unknown) {
    super('writing a source entry failed', { cause });
  }
}

async function* hashing(input: AsyncIterable<Buffer>, hash: Hash): AsyncGenerator<Buffer> {
  for await (const chunk of input) {
    hash.update(chunk);
    yield chunk;
  }
}

/** Looks at the first two bytes for the gzip magic and hands back a stream that still starts with them. */
async function sniffGzip(chunks: AsyncGenerator<Buffer>): Promise<{ gzip: boolean; stream: Readable }> {
  const head: Buffer[] = [];
  let headLength = 0;
  while (headLength < 2) {
    const next = await chunks.next();
    if (next.done) break;
    head.push(next.value);
    headLength += next.value.length;
  }
  if (headLength === 0) throw invalidInput('source archive is empty');
  const start = Buffer.concat(head);
  async function* replay(): AsyncGenerator<Buffer> {
    yield start;
    yield* chunks;
  }
  return { gzip: start[0] === 0x1f && start[1] === 0x8b, stream: Readable.from(replay()) };
}

class TreeWriter {
  files = 0;
  bytes = 0;
  private entries = 0;
  /** Every symlink made, checked again once the whole tree is out. */
  private readonly links: string[] = [];
  private readonly readLink: LinkReader;
  /** Directory mtimes, applied last because writing children changes them. */
  private readonly dirTimes: Array<{ abs: string; mtime: Date }> = [];

  constructor(
    private readonly root: string,
    private readonly limits: SourceLimits,
  ) {
    this.readLink = linkReaderOf(root);
  }

  async write(entry: Source): Promise<void> {
    const { header } = entry;
    try {
      if (ignoredTypes.has(header.type)) return;
      const rel = safeEntryPath(header.name);
      if (rel === null) throw invalidInput(`source entry "${header.name}" points outside the source tree`);
      if (rel === '') return;
      if (++this.entries > this.limits.maxEntries) {
        throw invalidInput(`source has more than ${this.limits.maxEntries} entries`);
      }
      await this.writeEntry(entry, header, rel);
    } finally {
      entry.resume(); // drain whatever was not read, so the next entry can come
    }
  }

  async finish(): Promise<void> {
    for (const { abs, mtime } of this.dirTimes.reverse()) await utimes(abs, mtime, mtime);
  }

  /** Every link still in the tree must resolve inside it now that nothing changes any more. */
  async checkLinks(): Promise<void> {
    for (const rel of this.links) {
      const target = await this.readLink(rel);
      if (target === null) continue; // replaced by a later entry
      if ((await resolveLinkTarget(rel, target, this.readLink)) === null) {
        throw invalidInput(`source symlink "${rel}" → "${target}" leads outside the source tree through other links in it`);
      }
    }
  }

  private async writeEntry(entry: Source, header: Header, rel: string): Promise<void> {
    const abs = path.join(this.root, rel);
    const mode = (header.mode ?? 0o644) & 0o777;
    const mtime = header.mtime ?? new Date(0);
    switch (header.type) {
      case 'directory':
        await this.makeParents(rel);
        await this.replaceUnlessDirectory(abs);
        await mkdir(abs, { recursive: true });
        await chmod(abs, mode | 0o700);
        this.dirTimes.push({ abs, mtime });
        return;
      case 'file':
      case 'contiguous-file':
        this.count(header.size ?? 0, header.name);
        await this.makeParents(rel);
        await this.replace(abs);
        await writeExclusive(entry, abs, mode);
        await utimes(abs, mtime, mtime);
        return;
      case 'symlink': {
        const target = header.linkname ?? '';
        await this.makeParents(rel);
        await this.replace(abs);
        if ((await resolveLinkTarget(rel, target, this.readLink)) === null) {
          throw invalidInput(`source symlink "${header.name}" → "${target}" points outside the source tree`);
        }
        await symlink(target, abs);
        await lutimes(abs, mtime, mtime);
        this.links.push(rel);
        return;
      }
      case 'link':
        await this.copyHardLink(header, rel, abs, mode, mtime);
        return;
      default:
        throw invalidInput(`source entry "${header.name}" is a ${header.type ?? 'special file'}; only files, directories and symlinks are allowed`);
    }
  }

  /** A hard link becomes a copy of the regular file it names, which must already be extracted. */
  private async copyHardLink(header: Header, rel: string, abs: string, mode: number, mtime: Date): Promise<void> {
    const targetRel = safeEntryPath(header.linkname ?? '');
    if (targetRel === null || targetRel === '') {
      throw invalidInput(`source hard link "${header.name}" → "${header.linkname}" points outside the source tree`);
    }
    await this.makeParents(targetRel);
    const targetAbs = path.join(this.root, targetRel);
    const target = await lstat(targetAbs).catch(() => null);
    if (target === null || !target.isFile()) {
      throw invalidInput(`source hard link "${header.name}" → "${header.linkname}" does not name a file earlier in the archive`);
    }
    this.count(target.size, header.name);
    await this.makeParents(rel);
    await this.replace(abs);
    await copyFile(targetAbs, abs, constants.COPYFILE_EXCL);
    await chmod(abs, mode);
    await utimes(abs, mtime, mtime);
  }

  private count(size: number, name: string): void {
    this.files += 1;
    this.bytes += size;
    if (this.bytes > this.limits.maxBytes) {
      throw invalidInput(`source is larger than ${this.limits.maxBytes} bytes once extracted (at "${name}")`);
    }
  }

  /** Creates missing parents and refuses any parent that is not a real directory (a symlink above all). */
  private async makeParents(rel: string): Promise<void> {
    const parts = rel.split('/').slice(0, -1);
    let current = this.root;
    for (const part of parts) {
      current = path.join(current, part);
      const info = await lstat(current).catch(() => null);
      if (info === null) await mkdir(current, { mode: 0o755 });
      else if (!info.isDirectory()) {
        throw invalidInput(`source entry "${rel}" lies under "${path.relative(this.root, current)}", which is not a directory`);
      }
    }
  }

  /** Removes whatever is at `abs` so the new entry replaces it, as tar does. */
  private async replace(abs: string): Promise<void> {
    await rm(abs, { recursive: true, force: true });
  }

  private async replaceUnlessDirectory(abs: string): Promise<void> {
    const info = await lstat(abs).catch(() => null);
    if (info !== null && !info.isDirectory()) await rm(abs, { force: true });
  }
}

// Metadata entries tar-stream may pass through; they carry no tree content.
const ignoredTypes = new Set<string | null>(['pax-header', 'pax-global-header', 'gnu-long-path', 'gnu-long-link-path']);

async function writeExclusive(entry: Source, abs: string, mode: number): Promise<void> {
  const handle = await open(abs, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  await pipeline(entry, handle.createWriteStream());
  await chmod(abs, mode); // open() applied the umask
}

export interface DockerfileChoice {
  contextDir: string;
  /** Where a Dockerfile given as text is written: outside the context, so it does not change the COPY inputs. */
  workDir: string;
  /** The request's `dockerfile` field, if any. */
  dockerfileText?: string | null;
}

const MAX_DOCKERFILE_BYTES = 1024 * 1024;
const DOCKERFILE_NAMES = ['Dockerfile', 'Containerfile'];

/** The absolute path of the Dockerfile to build: the given text, else the source's own. */
export async function resolveDockerfile(choice: DockerfileChoice): Promise<string> {
  const text = choice.dockerfileText ?? '';
  if (text.trim() !== '') {
    if (Buffer.byteLength(text) > MAX_DOCKERFILE_BYTES) throw invalidInput(`dockerfile is larger than ${MAX_DOCKERFILE_BYTES} bytes`);
    const dir = path.join(choice.workDir, 'dockerfile');
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, 'Dockerfile');
    await writeFile(file, text);
    return file;
  }
  for (const name of DOCKERFILE_NAMES) {
    const file = path.join(choice.contextDir, name);
    const info = await lstat(file).catch(() => null);
    if (info === null) continue;
    // A symlink could make the builder read a file of the host as the Dockerfile.
    if (!info.isFile()) throw invalidInput(`the source's ${name} must be a regular file, not a symlink or directory`);
    return file;
  }
  throw invalidInput('the source has no Dockerfile at its top level and no dockerfile text was sent; add one of them');
}
