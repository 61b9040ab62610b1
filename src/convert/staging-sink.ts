// Writes the rootfs model to a real directory tree for mkfs.ext4 -d.
//
// Synchronous syscalls on purpose: an entry costs a few microseconds on tmpfs,
// while a promise round trip through the libuv pool per call costs more than
// the call itself. The work is done one decompressed chunk at a time, so the
// event loop still gets a turn between chunks.
//
// Paths arrive resolved by RootfsTree (parents are real directories, never
// symlinks); files are opened O_NOFOLLOW|O_EXCL and metadata is set through
// the descriptor, so nothing here can follow a link the image planted.
import fs from 'node:fs';
import path from 'node:path';
import type { Meta, TreeSink } from './rootfs-tree.js';

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
const CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;

export class StagingSink implements TreeSink {
  private readonly prefix: Buffer;
  private readonly rootPath: Buffer;
  private readonly umask: number;
  private readonly uid = process.getuid?.() ?? 0;
  private readonly gid = process.getgid?.() ?? 0;
  private fd: number | null = null;
  private fileMeta: Meta | null = null;
  private fileNeedsChmod = false;

  constructor(root: string) {
    this.rootPath = Buffer.from(path.resolve(root));
    this.prefix = Buffer.concat([this.rootPath, Buffer.from('/')]);
    this.umask = probeUmask(root);
  }

  mkdir(p: string): void {
    fs.mkdirSync(this.abs(p), 0o755);
  }

  remove(p: string, isDir: boolean): void {
    if (isDir) fs.rmSync(this.abs(p), { recursive: true, force: true });
    else fs.unlinkSync(this.abs(p));
  }

  createFile(p: string, meta: Meta): void {
    this.closeFile();
    // Open with the final mode when the umask leaves it intact and no chown
    // (which clears setuid/setgid) follows: saves a chmod per file.
    const chown = this.needsChown(meta);
    this.fileNeedsChmod = chown || (meta.mode & 0o7000) !== 0 || (meta.mode & this.umask) !== 0;
    this.fd = fs.openSync(this.abs(p), CREATE_FLAGS, this.fileNeedsChmod ? 0o600 : meta.mode);
    this.fileMeta = meta;
  }

  writeFile(chunk: Buffer): void {
    if (this.fd === null) throw new Error('no file is open');
    let off = 0;
    while (off < chunk.length) off += fs.writeSync(this.fd, chunk, off, chunk.length - off);
  }

  closeFile(): void {
    const fd = this.fd;
    const meta = this.fileMeta;
    if (fd === null || meta === null) return;
    this.fd = null;
    this.fileMeta = null;
    try {
      if (this.needsChown(meta)) fs.fchownSync(fd, meta.uid, meta.gid);
      if (this.fileNeedsChmod) fs.fchmodSync(fd, meta.mode);
      fs.futimesSync(fd, meta.mtime, meta.mtime);
    } finally {
      fs.closeSync(fd);
    }
  }

  symlink(p: string, target: string, meta: Meta): void {
    const abs = this.abs(p);
    fs.symlinkSync(Buffer.from(target, 'latin1'), abs);
    if (this.needsChown(meta)) fs.lchownSync(abs, meta.uid, meta.gid);
    fs.lutimesSync(abs, meta.mtime, meta.mtime);
  }

  link(existingPath: string, newPath: string): void {
    fs.linkSync(this.abs(existingPath), this.abs(newPath));
  }

  setDirMeta(p: string, meta: Meta): void {
    const abs = this.abs(p);
    if (this.needsChown(meta)) fs.chownSync(abs, meta.uid, meta.gid);
    fs.chmodSync(abs, meta.mode);
    fs.utimesSync(abs, meta.mtime, meta.mtime);
  }

  /** Closes a file left open by a failed layer. */
  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    this.fileMeta = null;
  }

  private needsChown(meta: Meta): boolean {
    return meta.uid !== this.uid || meta.gid !== this.gid;
  }

  private abs(p: string): Buffer {
    return p === '' ? this.rootPath : Buffer.concat([this.prefix, Buffer.from(p, 'latin1')]);
  }
}

/** The process umask, read without changing it (process.umask() with no argument is deprecated). */
function probeUmask(dir: string): number {
  const probe = path.join(dir, `.umask-probe-${process.pid}`);
  fs.closeSync(fs.openSync(probe, CREATE_FLAGS, 0o777));
  try {
    return ~fs.statSync(probe).mode & 0o777;
  } finally {
    fs.unlinkSync(probe);
  }
}
