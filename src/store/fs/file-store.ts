// The FileStore contract (store/file-store.ts) in the data directory: a key
// is a path below the root. Writes go to a hidden temporary file beside the
// target (`.<name>.tmp-<uuid>`), are fsynced and renamed into place, so a
// crash leaves the old file or the new one; stray temporary files are never
// listed.
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, copyFile, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { checkFileKey, limitBytes, type FileInfo, type FileStore, type FileWriteOptions } from '../file-store.js';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../data-dir.js';
import type { ByteRange } from '../types.js';

/** The temporary file of a write in progress (see publish). */
const TEMP_FILE = /^\..+\.tmp-[0-9a-f-]+$/;

export class FsFileStore implements FileStore {
  readonly root: string;

  constructor(
    root: string,
    private readonly options: { durable?: boolean } = {},
  ) {
    this.root = path.resolve(root);
  }

  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }

  /** Where `key` lives on disk (the filesystem store's readers may open it directly). */
  pathOf(key: string): string {
    return path.join(this.root, ...checkFileKey(key).split('/'));
  }

  localPath(key: string): string {
    return this.pathOf(key);
  }

  async stat(key: string): Promise<FileInfo | null> {
    const s = await stat(this.pathOf(key)).catch(notFoundAsNull);
    return s?.isFile() ? { key, size: s.size, modifiedAt: s.mtime } : null;
  }

  async open(key: string, range?: ByteRange): Promise<Readable | null> {
    const handle = await open(this.pathOf(key), 'r').catch(notFoundAsNull);
    if (!handle) return null;
    return handle.createReadStream({ start: range?.start, end: range?.end, highWaterMark: 1024 * 1024 });
  }

  async readBytes(key: string): Promise<Buffer | null> {
    return readFile(this.pathOf(key)).catch(notFoundAsNull);
  }

  async writeBytes(key: string, data: Uint8Array): Promise<FileInfo> {
    return this.publish(key, async (temp) => {
      const handle = await open(temp, 'wx', PRIVATE_FILE_MODE);
      try {
        await handle.writeFile(data);
        if (this.durable) await handle.sync();
      } finally {
        await handle.close();
      }
    });
  }

  async write(key: string, body: Readable, options: FileWriteOptions = {}): Promise<FileInfo> {
    return this.publish(key, async (temp) => {
      const out = createWriteStream(temp, { flags: 'wx', mode: PRIVATE_FILE_MODE });
      await pipeline(body, limitBytes(options), out);
      if (this.durable) await fsync(temp);
    });
  }

  async putFile(key: string, localFile: string): Promise<FileInfo> {
    // Scratch space on the same filesystem (a worker's tmp/ in the data
    // directory): one rename straight into place, which is atomic itself and
    // leaves no temporary file behind if the process dies around it.
    const target = this.pathOf(key);
    await mkdir(path.dirname(target), { recursive: true, mode: PRIVATE_DIR_MODE });
    await chmod(localFile, PRIVATE_FILE_MODE);
    if (this.durable) await fsync(localFile);
    try {
      await rename(localFile, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      // Scratch space on another filesystem: copy beside the target, rename, then drop the local file.
      const info = await this.publish(key, async (temp) => {
        await copyFile(localFile, temp);
        if (this.durable) await fsync(temp);
      });
      await unlink(localFile);
      return info;
    }
    if (this.durable) await fsync(path.dirname(target));
    const s = await stat(target);
    return { key, size: s.size, modifiedAt: s.mtime };
  }

  async delete(key: string): Promise<boolean> {
    return unlink(this.pathOf(key)).then(
      () => true,
      (err) => notFoundAsNull(err) ?? false,
    );
  }

  async deletePrefix(prefix: string): Promise<number> {
    const dir = path.join(this.root, ...checkFileKey(prefix, true).slice(0, -1).split('/'));
    let count = 0;
    for await (const _ of this.walk(dir, prefix)) count++;
    await rm(dir, { recursive: true, force: true });
    return count;
  }

  async *list(prefix: string): AsyncIterable<FileInfo> {
    const dir = prefix === '' ? this.root : path.join(this.root, ...checkFileKey(prefix, true).slice(0, -1).split('/'));
    yield* this.walk(dir, prefix);
  }

  async removeUnfinished(prefix: string, before: Date): Promise<number> {
    const dir = path.join(this.root, ...checkFileKey(prefix, true).slice(0, -1).split('/'));
    let count = 0;
    const sweep = async (at: string): Promise<void> => {
      for (const entry of (await readdir(at, { withFileTypes: true }).catch(notFoundAsNull)) ?? []) {
        const full = path.join(at, entry.name);
        if (entry.isDirectory() && !entry.name.startsWith('.')) await sweep(full);
        else if (entry.isFile() && TEMP_FILE.test(entry.name)) {
          const s = await stat(full).catch(notFoundAsNull);
          if (s && s.mtimeMs < before.getTime() && (await this.delete_(full))) count++;
        }
      }
    };
    await sweep(dir);
    return count;
  }

  /** The filesystem store serves its files itself. */
  async redirectUrl(_key?: string): Promise<string | null> {
    return null;
  }

  private async delete_(file: string): Promise<boolean> {
    return unlink(file).then(
      () => true,
      (err) => notFoundAsNull(err) ?? false,
    );
  }

  private get durable(): boolean {
    return this.options.durable ?? true;
  }

  private async *walk(dir: string, keyPrefix: string): AsyncIterable<FileInfo> {
    const entries = await readdir(dir, { withFileTypes: true }).catch(notFoundAsNull);
    for (const entry of entries ?? []) {
      if (entry.name.startsWith('.')) continue; // temporary files of writes in progress
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        yield* this.walk(full, `${keyPrefix}${entry.name}/`);
      } else if (entry.isFile()) {
        const s = await stat(full).catch(notFoundAsNull);
        if (s) yield { key: `${keyPrefix}${entry.name}`, size: s.size, modifiedAt: s.mtime };
      }
    }
  }

  /** Writes through `fill` into a temporary sibling of the target, then renames it into place. */
  private async publish(key: string, fill: (temp: string) => Promise<void>): Promise<FileInfo> {
    const target = this.pathOf(key);
    const dir = path.dirname(target);
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    const temp = path.join(dir, `.${path.basename(target)}.tmp-${randomUUID()}`);
    try {
      await fill(temp);
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    if (this.durable) await fsync(dir);
    const s = await stat(target);
    return { key, size: s.size, modifiedAt: s.mtime };
  }
}

async function fsync(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function notFoundAsNull(err: unknown): null {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
  throw err;
}
