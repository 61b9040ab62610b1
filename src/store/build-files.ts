// A build's files in the FileStore (DESIGN "Data directory": builds/<id>/
// source.tar.gz, build.log, result.json), on whichever backend holds the
// other bytes: the data directory, or the S3 bucket so that any server can
// run or show a build submitted through another.
//
// - The source is published whole (`putFile`) once it was received and
//   checked in the server's scratch space: nothing shows under builds/<id>/
//   before it is complete.
// - A running build's log is appended to a local file. On a store with local
//   paths (the data directory) that file is the stored log itself; on one
//   without (S3) it is a private copy under `localLogRoot`, seeded from the
//   stored log when it is opened and published whole by `publishLog`.
// - result.json is written and read whole.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileKeys, type FileStore } from './file-store.js';

/** A build that has files, and when the newest of them was written. */
export interface BuildFilesEntry {
  id: string;
  modifiedAt: Date;
}

export type LogDownload = { redirect: string } | { body: Readable };

export class BuildFiles {
  constructor(
    private readonly files: FileStore,
    /** Private local space for running logs on a store without local paths, in the scratch dir (wiped at start only when the data directory is not shared; a log copy is dropped when its build ends). */
    private readonly localLogRoot: string,
  ) {}

  /** The running log is the stored log itself (a store with local paths): nothing needs publishing. */
  get logsInPlace(): boolean {
    return this.files.localPath !== undefined;
  }

  /** The builds that have files, with the newest modifiedAt of each. */
  async ids(): Promise<BuildFilesEntry[]> {
    const newest = new Map<string, Date>();
    for await (const file of this.files.list('builds/')) {
      const id = file.key.slice('builds/'.length).split('/')[0];
      if (!id) continue;
      const seen = newest.get(id);
      if (seen === undefined || file.modifiedAt > seen) newest.set(id, file.modifiedAt);
    }
    return [...newest].map(([id, modifiedAt]) => ({ id, modifiedAt }));
  }

  // ---- source -----------------------------------------------------------------

  /** Publishes the received and checked source (a local gzip file, which goes). */
  async publishSource(id: string, localFile: string): Promise<void> {
    await this.files.putFile(fileKeys.buildSource(id), localFile);
  }

  /**
   * A local file of the build's source for the runner: the stored file itself
   * when the store has local paths, else a copy made in `workDir`. Null when
   * the source is gone.
   */
  async localSource(id: string, workDir: string): Promise<string | null> {
    const key = fileKeys.buildSource(id);
    if (this.files.localPath !== undefined) return (await this.files.stat(key)) === null ? null : this.files.localPath(key);
    const body = await this.files.open(key);
    if (body === null) return null;
    const target = path.join(workDir, 'source.tar.gz');
    await pipeline(body, createWriteStream(target, { flags: 'wx', mode: 0o600 }));
    return target;
  }

  // ---- log --------------------------------------------------------------------

  /**
   * The local file the build's log is appended to, its directory made. On a
   * store without local paths the file is (re)made from the stored log, so
   * the lines other servers wrote come first.
   */
  async openLocalLog(id: string): Promise<string> {
    const key = fileKeys.buildLog(id);
    if (this.files.localPath !== undefined) {
      const file = this.files.localPath(key);
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      return file;
    }
    const file = this.localLogFile(id);
    await mkdir(this.localLogRoot, { recursive: true, mode: 0o700 });
    const stored = (await this.files.open(key)) ?? Readable.from([]);
    await pipeline(stored, createWriteStream(file, { mode: 0o600 }));
    return file;
  }

  /** Publishes the local log whole (a store without local paths; nothing to do otherwise). */
  async publishLog(id: string): Promise<void> {
    if (this.files.localPath !== undefined) return;
    await this.files.write(fileKeys.buildLog(id), createReadStream(this.localLogFile(id)));
  }

  /** Drops the local copy of a log once it was published for the last time (a store without local paths). */
  async dropLocalLog(id: string): Promise<void> {
    if (this.files.localPath !== undefined) return;
    await rm(this.localLogFile(id), { force: true });
  }

  /** The stored log from byte `start` on, at most `maxBytes` of it; empty when there is nothing past `start`, null when there is no log. */
  async readLog(id: string, start: number, maxBytes: number): Promise<Buffer | null> {
    const key = fileKeys.buildLog(id);
    const info = await this.files.stat(key);
    if (info === null) return null;
    if (info.size <= start) return Buffer.alloc(0);
    const body = await this.files.open(key, { start, end: Math.min(info.size, start + maxBytes) - 1 });
    if (body === null) return null;
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** The stored log whole, as a stream; null when there is none. */
  openLog(id: string): Promise<Readable | null> {
    return this.files.open(fileKeys.buildLog(id));
  }

  /** How a client downloads the stored log: a redirect when the store offers one, else the bytes. Null when there is none. */
  async logDownload(id: string): Promise<LogDownload | null> {
    const key = fileKeys.buildLog(id);
    if ((await this.files.stat(key)) === null) return null;
    const redirect = await this.files.redirectUrl(key, { filename: `${id}.log` });
    if (redirect !== null) return { redirect };
    const body = await this.files.open(key);
    return body === null ? null : { body };
  }

  // ---- result and removal -------------------------------------------------------

  /** The build's final record, written when it ends. */
  async writeResult(id: string, data: Uint8Array): Promise<void> {
    await this.files.writeBytes(fileKeys.buildResult(id), data);
  }

  readResult(id: string): Promise<Buffer | null> {
    return this.files.readBytes(fileKeys.buildResult(id));
  }

  /** Removes the build's files; resolves with the bytes they took. */
  async remove(id: string): Promise<number> {
    const prefix = fileKeys.buildDir(id);
    let bytes = 0;
    for await (const file of this.files.list(prefix)) bytes += file.size;
    await this.files.deletePrefix(prefix);
    await this.dropLocalLog(id);
    return bytes;
  }

  private localLogFile(id: string): string {
    fileKeys.buildDir(id); // checks the id
    return path.join(this.localLogRoot, `${id}.log`);
  }
}
