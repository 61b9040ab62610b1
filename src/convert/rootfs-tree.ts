// The rootfs as layers build it up: an in-memory model of every path, and the
// OCI layer rules (whiteouts, opaque directories, replacement, containment)
// applied to it. Each change to the model is mirrored by one call on a
// TreeSink, which does the real I/O; the model never touches a disk, so the
// rules are tested without one.
//
// Containment: every parent path is resolved inside the model, following
// symlinks the way the kernel would if the rootfs were `/` (absolute targets
// restart at the root, `..` stops at the root). The sink only ever receives
// resolved paths whose parents are real directories, so no write can pass
// through a symlink, and nothing outside the root can be named.
import { entryComponents, entryTarget } from './entry-path.js';
import { BakeError, displayName } from './errors.js';
import type { TarEntry, TarHandler } from './tar-reader.js';

export interface Meta {
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch. */
  mtime: number;
}

export type DeviceKind = 'char' | 'block' | 'fifo';

/** One file object; several names share it when hardlinked. */
export interface Inode {
  type: 'file' | 'symlink' | 'special';
  meta: Meta;
  /** Content bytes of a regular file. */
  size: number;
  /** Byte string target of a symlink. */
  target?: string;
  device?: { kind: DeviceKind; major: number; minor: number };
  xattrs?: Map<string, Buffer>;
}

export interface DirNode {
  kind: 'dir';
  children: Map<string, TreeNode>;
  meta: Meta;
  xattrs?: Map<string, Buffer>;
  /** Layer that created or last listed this directory. */
  layer: number;
  /** Last layer that wrote anything at or below this directory. */
  touchedLayer: number;
}

export interface LeafNode {
  kind: 'leaf';
  inode: Inode;
  /** Layer that created this name. */
  layer: number;
}

export type TreeNode = DirNode | LeafNode;

/** The I/O side: paths are root-relative byte strings ('' is the root). */
export interface TreeSink {
  mkdir(path: string): void;
  remove(path: string, isDir: boolean): void;
  createFile(path: string, meta: Meta): void;
  writeFile(chunk: Buffer): void;
  closeFile(): void;
  symlink(path: string, target: string, meta: Meta): void;
  link(existingPath: string, newPath: string): void;
  setDirMeta(path: string, meta: Meta): void;
}

/** What mkfs cannot take from the staged tree, to be applied to the disk afterwards. */
export interface Fixups {
  root: Meta;
  /** Device nodes and fifos: kept out of the staging tree (creating them needs root). First path is the primary name. */
  specials: Array<{ paths: string[]; inode: Inode }>;
  xattrs: Array<{ path: string; xattrs: Map<string, Buffer> }>;
  /**
   * Symlinks with several names. mkfs -d does not keep hardlinks between
   * symlinks, so each name is staged as its own symlink and relinked after.
   */
  symlinkLinks: Array<{ paths: string[] }>;
  /** Modes and owners the staging tree could not carry (unprivileged staging only). */
  metas: Array<{ path: string; type: 'file' | 'dir' | 'symlink'; meta: Meta }>;
  /** Directories that gain special files after mkfs, with the mtime to restore. */
  dirTimes: Array<{ path: string; mtime: number }>;
}

export interface TreeOptions {
  /**
   * Set when staging runs without root: files are staged owned by this
   * uid/gid with owner read/write(/search) added so mkfs can read them, and
   * every node whose real mode or owner differs gets a fixup.
   */
  unprivileged?: { uid: number; gid: number };
}

const MAX_SYMLINK_HOPS = 255;

export class RootfsTree implements TarHandler {
  readonly root: DirNode = newDir({ mode: 0o755, uid: 0, gid: 0, mtime: 0 }, 0);
  private layer = 0;
  private writing = false;
  private rootMtimeSet = false;

  constructor(
    private readonly sink: TreeSink,
    private readonly options: TreeOptions = {},
  ) {}

  /** Starts the next layer; whiteouts only hide what earlier layers wrote. */
  beginLayer(): void {
    this.layer++;
  }

  entry(e: TarEntry): void {
    this.writing = false;
    if (!this.rootMtimeSet) {
      // Without a `./` entry the root gets the first entry's time: reproducible, unlike "now".
      this.root.meta.mtime = e.mtime;
      this.rootMtimeSet = true;
    }
    const target = entryTarget(e.name);
    switch (target.kind) {
      case 'ignored':
        return;
      case 'whiteout':
        return this.whiteout(target.parent, target.name);
      case 'opaque': {
        // The marker means the directory exists in this layer and shows only this layer's content.
        const dir = this.resolveDir(target.dir, true, e.mtime);
        return this.prune(dir.node, dir.path);
      }
      case 'path':
        return this.place(target.path, e);
    }
  }

  data(chunk: Buffer): void {
    if (this.writing) this.sink.writeFile(chunk);
  }

  entryEnd(): void {
    if (this.writing) this.sink.closeFile();
    this.writing = false;
  }

  /** Applies directory metadata (children first, so their creation cannot change it) and lists the fixups. */
  finish(): Fixups {
    const fixups: Fixups = { root: this.root.meta, specials: [], symlinkLinks: [], xattrs: [], metas: [], dirTimes: [] };
    const specials = new Map<Inode, string[]>();
    const symlinks = new Map<Inode, string[]>();
    const seen = new Set<Inode>();
    const checkMeta = (path: string, type: 'file' | 'dir' | 'symlink', meta: Meta) => {
      const staged = this.staged(meta, type);
      const modeDiffers = type !== 'symlink' && staged.mode !== meta.mode;
      if (path !== '' && (modeDiffers || staged.uid !== meta.uid || staged.gid !== meta.gid)) fixups.metas.push({ path, type, meta });
    };

    const walk = (dir: DirNode, path: string): void => {
      let hasSpecial = false;
      for (const [name, child] of dir.children) {
        const childPath = join(path, name);
        if (child.kind === 'dir') {
          walk(child, childPath);
          continue;
        }
        const inode = child.inode;
        if (inode.type === 'special') {
          hasSpecial = true;
          const names = specials.get(inode);
          if (names) names.push(childPath);
          else specials.set(inode, [childPath]);
          continue;
        }
        if (inode.type === 'symlink') {
          const names = symlinks.get(inode);
          if (names) names.push(childPath);
          else symlinks.set(inode, [childPath]);
        }
        if (seen.has(inode)) continue;
        seen.add(inode);
        if (inode.xattrs) fixups.xattrs.push({ path: childPath, xattrs: inode.xattrs });
        checkMeta(childPath, inode.type, inode.meta);
      }
      if (dir.xattrs) fixups.xattrs.push({ path, xattrs: dir.xattrs });
      checkMeta(path, 'dir', dir.meta);
      if (hasSpecial && path !== '') fixups.dirTimes.push({ path, mtime: dir.meta.mtime });
      this.sink.setDirMeta(path, this.staged(dir.meta, 'dir'));
    };
    walk(this.root, '');
    for (const paths of symlinks.values()) if (paths.length > 1) fixups.symlinkLinks.push({ paths });
    for (const [inode, paths] of specials) {
      fixups.specials.push({ paths, inode });
      if (inode.xattrs) fixups.xattrs.push({ path: paths[0], xattrs: inode.xattrs });
    }
    return fixups;
  }

  /** The metadata the staging tree gets for a node with metadata `meta`. */
  private staged(meta: Meta, type: 'file' | 'dir' | 'symlink'): Meta {
    const owner = this.options.unprivileged;
    if (!owner) return meta;
    const access = type === 'dir' ? 0o700 : type === 'file' ? 0o600 : 0;
    return { mode: meta.mode | access, uid: owner.uid, gid: owner.gid, mtime: meta.mtime };
  }

  private whiteout(parentParts: string[], name: string): void {
    const parent = this.resolveDir(parentParts, false, 0);
    const node = parent?.node.children.get(name);
    if (parent && node) this.hide(parent.node, parent.path, name, node);
  }

  /** Hides what lower layers put at `name`; what this layer wrote stays. */
  private hide(dir: DirNode, dirPath: string, name: string, node: TreeNode): void {
    const fromThisLayer = node.layer === this.layer || (node.kind === 'dir' && node.touchedLayer === this.layer);
    if (!fromThisLayer) return this.removeChild(dir, dirPath, name, node);
    if (node.kind === 'dir') this.prune(node, join(dirPath, name));
  }

  private prune(dir: DirNode, path: string): void {
    for (const [name, child] of [...dir.children]) this.hide(dir, path, name, child);
  }

  private place(parts: string[], e: TarEntry): void {
    const meta: Meta = { mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime };
    const xattrs = e.xattrs.size > 0 ? e.xattrs : undefined;
    if (parts.length === 0) {
      if (e.type !== 'directory') throw new BakeError('UNSAFE_ENTRY', `entry ${displayName(e.name)} would replace the root directory with a ${e.type}`);
      this.root.meta = meta;
      this.root.xattrs = xattrs;
      this.rootMtimeSet = true;
      return;
    }
    // Resolve a hardlink's target before anything at the new name is removed.
    const linkTarget = e.type === 'hardlink' ? this.resolveLinkTarget(e) : undefined;
    const name = parts[parts.length - 1];
    const parent = this.resolveDir(parts.slice(0, -1), true, e.mtime);
    const path = join(parent.path, name);
    const existing = parent.node.children.get(name);

    if (e.type === 'directory') {
      if (existing?.kind === 'dir') {
        // A directory over a directory merges: only its metadata changes.
        Object.assign(existing, { meta, xattrs, layer: this.layer, touchedLayer: this.layer });
        return;
      }
      if (existing) this.removeChild(parent.node, parent.path, name, existing);
      const dir = newDir(meta, this.layer);
      dir.xattrs = xattrs;
      parent.node.children.set(name, dir);
      this.sink.mkdir(path);
      return;
    }

    if (linkTarget && existing?.kind === 'leaf' && existing.inode === linkTarget.inode) {
      existing.layer = this.layer; // already this link
      return;
    }
    if (existing) this.removeChild(parent.node, parent.path, name, existing);

    if (linkTarget) {
      const inode = linkTarget.inode;
      parent.node.children.set(name, { kind: 'leaf', inode, layer: this.layer });
      if (inode.type === 'file') this.sink.link(linkTarget.path, path);
      else if (inode.type === 'symlink') this.sink.symlink(path, inode.target ?? '', this.staged(inode.meta, 'symlink'));
      return;
    }
    const inode: Inode = { type: 'file', meta, size: 0 };
    if (xattrs) inode.xattrs = xattrs;
    parent.node.children.set(name, { kind: 'leaf', inode, layer: this.layer });
    switch (e.type) {
      case 'file':
        inode.size = e.size;
        this.sink.createFile(path, this.staged(meta, 'file'));
        this.writing = true;
        return;
      case 'symlink':
        inode.type = 'symlink';
        inode.target = e.linkname;
        this.sink.symlink(path, e.linkname, this.staged(meta, 'symlink'));
        return;
      case 'char-device':
      case 'block-device':
      case 'fifo':
        inode.type = 'special';
        inode.device = { kind: e.type === 'fifo' ? 'fifo' : e.type === 'char-device' ? 'char' : 'block', major: e.devmajor, minor: e.devminor };
        return;
    }
  }

  private resolveLinkTarget(e: TarEntry): { inode: Inode; path: string } {
    const parts = entryComponents(e.linkname);
    const name = parts[parts.length - 1];
    if (name === undefined) throw new BakeError('UNSAFE_ENTRY', `hardlink ${displayName(e.name)} points to the root directory`);
    const parent = this.resolveDir(parts.slice(0, -1), false, 0);
    const node = parent?.node.children.get(name);
    if (!parent || !node) {
      throw new BakeError('UNSAFE_ENTRY', `hardlink ${displayName(e.name)} points to ${displayName(e.linkname)}, which is not in the image`);
    }
    if (node.kind === 'dir') throw new BakeError('UNSAFE_ENTRY', `hardlink ${displayName(e.name)} points to a directory`);
    return { inode: node.inode, path: join(parent.path, name) };
  }

  private removeChild(dir: DirNode, dirPath: string, name: string, node: TreeNode): void {
    dir.children.delete(name);
    if (node.kind === 'dir') this.sink.remove(join(dirPath, name), true);
    else if (node.inode.type !== 'special') this.sink.remove(join(dirPath, name), false);
  }

  /**
   * Walks `parts` from the root, following symlinks inside the model.
   * With `create`, missing directories are made (0755, root-owned, like
   * Docker and umoci do) and every directory on the way is marked as touched
   * by this layer; without it, a missing component gives null.
   */
  private resolveDir(parts: readonly string[], create: true, mtime: number): { node: DirNode; path: string };
  private resolveDir(parts: readonly string[], create: false, mtime: number): { node: DirNode; path: string } | null;
  private resolveDir(parts: readonly string[], create: boolean, mtime: number): { node: DirNode; path: string } | null {
    const stack: DirNode[] = [this.root];
    const names: string[] = [];
    const pending = parts.slice().reverse();
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.pop() as string;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (names.length > 0) {
          stack.pop();
          names.pop();
        }
        continue;
      }
      const current = stack[stack.length - 1];
      let child = current.children.get(part);
      if (child === undefined) {
        if (!create) return null;
        child = newDir({ mode: 0o755, uid: 0, gid: 0, mtime }, this.layer);
        current.children.set(part, child);
        this.sink.mkdir(join(names.join('/'), part));
      } else if (child.kind === 'leaf') {
        if (child.inode.type !== 'symlink') {
          throw new BakeError('UNSAFE_ENTRY', `${displayName(join(names.join('/'), part))} is not a directory, so ${displayName(parts.join('/'))} cannot be under it`);
        }
        if (++hops > MAX_SYMLINK_HOPS) throw new BakeError('UNSAFE_ENTRY', `too many levels of symbolic links in ${displayName(parts.join('/'))}`);
        const target = child.inode.target ?? '';
        if (target.startsWith('/')) {
          stack.length = 1;
          names.length = 0;
        }
        const targetParts = target.split('/');
        for (let i = targetParts.length - 1; i >= 0; i--) pending.push(targetParts[i]);
        continue;
      }
      stack.push(child);
      names.push(part);
    }
    if (create) for (const dir of stack) dir.touchedLayer = this.layer;
    return { node: stack[stack.length - 1], path: names.join('/') };
  }
}

function newDir(meta: Meta, layer: number): DirNode {
  return { kind: 'dir', children: new Map(), meta, layer, touchedLayer: layer };
}

function join(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}
