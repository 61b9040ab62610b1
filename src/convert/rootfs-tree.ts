// The rootfs as layers build it up: an in-memory model of every path, and the
// OCI layer rules (whiteouts, opaque directories, replacement, containment)
// applied to it. Only file content leaves the model while layers stream: it
// goes to a DataSink (the disk writer), which stores it and tells the model
// where; everything else is written from the finished model.
//
// Containment: every parent path is resolved inside the model, following
// symlinks the way the kernel would if the rootfs were `/` (absolute targets
// restart at the root, `..` stops at the root). Nothing outside the root can
// be named, and nothing of the host is touched at all.
//
// Memory: a million entries must fit, so nodes are flat objects with the
// metadata inline, and a plain file's node is its own (first) name.
import { checkPathText, entryComponents, entryTarget } from './entry-path.js';
import { BakeError, displayName } from './errors.js';
import type { BakeBudget } from './limits.js';
import type { TarEntry, TarHandler } from './tar-reader.js';

export type DeviceKind = 'char' | 'block' | 'fifo';

export interface Device {
  kind: DeviceKind;
  major: number;
  minor: number;
}

/** What every inode carries. Modes are permission bits incl. setuid/setgid/sticky (07777). */
export interface Meta {
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch, possibly fractional. */
  mtime: number;
  xattrs: ReadonlyMap<string, Buffer> | undefined;
  /** Inode number, given by the disk writer when it lays the tree out (0 before). */
  ino: number;
}

/** Anything but a directory. Several names share one when hardlinked. */
export interface FileNode extends Meta {
  kind: 'file' | 'symlink' | 'special';
  /** Content bytes of a regular file (0 for the others). */
  size: number;
  /** Where the data sink stored the content; -1 when nothing is stored. */
  dataRef: number;
  /** Names of this node in the tree. */
  links: number;
  /** Layer that created this node's first name. */
  layer: number;
  /** Byte string target of a symlink. */
  target: string | undefined;
  device: Device | undefined;
}

/** A second or later name of a FileNode (a hardlink), with the layer that made it. */
export interface LinkNode {
  kind: 'link';
  node: FileNode;
  layer: number;
}

export interface DirNode extends Meta {
  kind: 'dir';
  children: Map<string, TreeNode>;
  /** Layer that created or last listed this directory. */
  layer: number;
  /** Last layer that wrote anything at or below this directory. */
  touchedLayer: number;
}

export type TreeNode = DirNode | FileNode | LinkNode;

/** Where file content goes while layers stream. */
export interface DataSink {
  /** A regular file of `size` bytes (> 0) begins; returns where its content is stored. */
  beginFile(size: number): number;
  /** The next bytes of the current file. */
  write(chunk: Buffer): void;
  endFile(): void;
  /** The last name of a file is gone: what was stored at `dataRef` can be reused. */
  release(dataRef: number, size: number): void;
  /** Why the disk cannot hold these extended attributes on one inode, or null. */
  xattrProblem(xattrs: ReadonlyMap<string, Buffer>): string | null;
}

/** ext4 (like most Linux filesystems) counts at most this many links to one file. */
export const MAX_LINKS = 65000;
const MAX_ID = 0xffffffff;
const MAX_DEV_MAJOR = 0xfff;
const MAX_DEV_MINOR = 0xfffff;

/** The node a name refers to: a hardlink's file, or the node itself. */
export function nodeOf(child: TreeNode): DirNode | FileNode {
  return child.kind === 'link' ? child.node : child;
}

export class RootfsTree implements TarHandler {
  readonly root: DirNode = newDir(0o755, 0, 0, 0, 0);
  private layer = 0;
  private writing = false;
  private rootMtimeSet = false;

  constructor(
    private readonly sink: DataSink,
    private readonly budget: BakeBudget,
  ) {}

  /** Starts the next layer; whiteouts only hide what earlier layers wrote. */
  beginLayer(): void {
    this.layer++;
    this.budget.beginLayer();
  }

  entry(e: TarEntry): void {
    this.writing = false;
    this.budget.addEntry();
    if (!this.rootMtimeSet) {
      // Without a `./` entry the root gets the first entry's time: reproducible, unlike "now".
      this.root.mtime = e.mtime;
      this.rootMtimeSet = true;
    }
    const target = entryTarget(e.name);
    switch (target.kind) {
      case 'ignored':
        return;
      case 'whiteout':
        return this.whiteout(target.parent, target.name, e.name);
      case 'opaque':
        // The marker means the directory exists in this layer and shows only this layer's content.
        return this.prune(this.resolveDir(target.dir, true, e.mtime, e.name));
      case 'path':
        return this.place(target.path, e);
    }
  }

  data(chunk: Buffer): void {
    if (this.writing) this.sink.write(chunk);
  }

  entryEnd(): void {
    if (this.writing) this.sink.endFile();
    this.writing = false;
  }

  private whiteout(parentParts: string[], name: string, entryName: string): void {
    const parent = this.resolveDir(parentParts, false, 0, entryName);
    const node = parent?.children.get(name);
    if (parent && node) this.hide(parent, name, node);
  }

  /** Hides what lower layers put at `name`; what this layer wrote stays. */
  private hide(dir: DirNode, name: string, node: TreeNode): void {
    const fromThisLayer = node.layer === this.layer || (node.kind === 'dir' && node.touchedLayer === this.layer);
    if (!fromThisLayer) return this.removeChild(dir, name, node);
    if (node.kind === 'dir') this.prune(node);
  }

  /** Hides everything lower layers put below `top`, iteratively: trees can be deeper than the JS stack. */
  private prune(top: DirNode): void {
    const pending = [top];
    for (let dir = pending.pop(); dir; dir = pending.pop()) {
      for (const [name, child] of [...dir.children]) {
        const fromThisLayer = child.layer === this.layer || (child.kind === 'dir' && child.touchedLayer === this.layer);
        if (!fromThisLayer) this.removeChild(dir, name, child);
        else if (child.kind === 'dir') pending.push(child);
      }
    }
  }

  private place(parts: string[], e: TarEntry): void {
    this.checkEntry(e);
    const xattrs = e.xattrs.size > 0 ? e.xattrs : undefined;
    if (parts.length === 0) {
      if (e.type !== 'directory') throw new BakeError('UNSAFE_ENTRY', `entry ${displayName(e.name)} would replace the root directory with a ${e.type}`);
      Object.assign(this.root, { mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, xattrs });
      this.rootMtimeSet = true;
      return;
    }
    // Resolve a hardlink's target before anything at the new name is removed.
    const linkTarget = e.type === 'hardlink' ? this.resolveLinkTarget(e) : undefined;
    const name = parts[parts.length - 1];
    const parent = this.resolveDir(parts.slice(0, -1), true, e.mtime, e.name);
    const existing = parent.children.get(name);

    if (e.type === 'directory') {
      if (existing?.kind === 'dir') {
        // A directory over a directory merges: only its metadata changes.
        Object.assign(existing, { mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, xattrs, layer: this.layer, touchedLayer: this.layer });
        return;
      }
      if (existing) this.removeChild(parent, name, existing);
      const dir = newDir(e.mode, e.uid, e.gid, e.mtime, this.layer);
      dir.xattrs = xattrs;
      parent.children.set(name, dir);
      return;
    }

    if (linkTarget && existing && nodeOf(existing) === linkTarget) {
      existing.layer = this.layer; // already this link
      return;
    }
    if (linkTarget) {
      if (linkTarget.links >= MAX_LINKS) {
        throw new BakeError('UNSUPPORTED_ENTRY', `hardlink ${displayName(e.name)} would give ${displayName(e.linkname)} more than ${MAX_LINKS} names, the most ext4 allows`);
      }
      // Counted first: what is replaced here may hold the target's last other name.
      linkTarget.links++;
      if (existing) this.removeChild(parent, name, existing);
      parent.children.set(name, { kind: 'link', node: linkTarget, layer: this.layer });
      return;
    }
    if (existing) this.removeChild(parent, name, existing);
    const node: FileNode = {
      kind: 'file', mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, xattrs, ino: 0,
      size: 0, dataRef: -1, links: 1, layer: this.layer, target: undefined, device: undefined,
    };
    switch (e.type) {
      case 'file':
        node.size = e.size;
        if (e.size > 0) {
          this.budget.expectFileBytes(e.size);
          node.dataRef = this.sink.beginFile(e.size);
          this.writing = true;
        }
        break;
      case 'symlink':
        node.kind = 'symlink';
        node.target = e.linkname;
        break;
      case 'char-device':
      case 'block-device':
      case 'fifo':
        node.kind = 'special';
        node.device = { kind: e.type === 'fifo' ? 'fifo' : e.type === 'char-device' ? 'char' : 'block', major: e.devmajor, minor: e.devminor };
        break;
    }
    parent.children.set(name, node);
  }

  /** What ext4 cannot hold is refused by name, never cut short. */
  private checkEntry(e: TarEntry): void {
    const unsupported = (why: string) => new BakeError('UNSUPPORTED_ENTRY', `entry ${displayName(e.name)} ${why}`);
    if (e.uid > MAX_ID || e.gid > MAX_ID) throw unsupported(`has owner ${e.uid}:${e.gid}; ext4 ids are at most ${MAX_ID}`);
    if (e.type === 'symlink') {
      if (e.linkname === '') throw unsupported('is a symbolic link with an empty target, which Linux cannot hold');
      checkPathText(e.linkname, `the target of symbolic link ${displayName(e.name)}`);
    }
    if ((e.type === 'char-device' || e.type === 'block-device') && (e.devmajor > MAX_DEV_MAJOR || e.devminor > MAX_DEV_MINOR)) {
      throw unsupported(`is device ${e.devmajor}:${e.devminor}; Linux device numbers are at most ${MAX_DEV_MAJOR}:${MAX_DEV_MINOR}`);
    }
    if (e.xattrs.size > 0) {
      const problem = this.sink.xattrProblem(e.xattrs);
      if (problem) throw unsupported(problem);
    }
  }

  private resolveLinkTarget(e: TarEntry): FileNode {
    const parts = entryComponents(e.linkname);
    const name = parts[parts.length - 1];
    if (name === undefined) throw new BakeError('UNSAFE_ENTRY', `hardlink ${displayName(e.name)} points to the root directory`);
    const parent = this.resolveDir(parts.slice(0, -1), false, 0, e.linkname);
    const child = parent?.children.get(name);
    if (!parent || !child) {
      throw new BakeError('UNSAFE_ENTRY', `hardlink ${displayName(e.name)} points to ${displayName(e.linkname)}, which is not in the image`);
    }
    const node = nodeOf(child);
    if (node.kind === 'dir') throw new BakeError('UNSAFE_ENTRY', `hardlink ${displayName(e.name)} points to a directory`);
    return node;
  }

  private removeChild(dir: DirNode, name: string, child: TreeNode): void {
    dir.children.delete(name);
    if (child.kind !== 'dir') return this.unlink(nodeOf(child) as FileNode);
    const pending = [child];
    for (let d = pending.pop(); d; d = pending.pop()) {
      for (const c of d.children.values()) {
        if (c.kind === 'dir') pending.push(c);
        else this.unlink(nodeOf(c) as FileNode);
      }
    }
  }

  /** One name of `node` is gone; with the last one, its content's space is released. */
  private unlink(node: FileNode): void {
    if (--node.links > 0 || node.dataRef < 0) return;
    this.sink.release(node.dataRef, node.size);
    node.dataRef = -1;
  }

  /**
   * Walks `parts` from the root, following symlinks inside the model.
   * With `create`, missing directories are made (0755, root-owned, like
   * Docker and umoci do) and every directory on the way is marked as touched
   * by this layer; without it, a missing component gives null. The work is
   * bounded: symlinks followed per path, and components walked per layer.
   */
  private resolveDir(parts: readonly string[], create: true, mtime: number, entryName: string): DirNode;
  private resolveDir(parts: readonly string[], create: false, mtime: number, entryName: string): DirNode | null;
  private resolveDir(parts: readonly string[], create: boolean, mtime: number, entryName: string): DirNode | null {
    const stack: DirNode[] = [this.root];
    const pending = parts.slice().reverse();
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.pop() as string;
      this.budget.addResolveStep();
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const current = stack[stack.length - 1];
      let child = current.children.get(part);
      if (child === undefined) {
        if (!create) return null;
        this.budget.addEntry(); // an implied directory costs as much as a listed one
        child = newDir(0o755, 0, 0, mtime, this.layer);
        current.children.set(part, child);
      } else if (child.kind !== 'dir') {
        const node = nodeOf(child) as FileNode;
        if (node.kind !== 'symlink') {
          throw new BakeError('UNSAFE_ENTRY', `${displayName(part)} is not a directory, so ${displayName(entryName)} cannot be under it`);
        }
        this.budget.checkSymlinkHops(++hops, displayName(entryName));
        const target = node.target ?? '';
        if (target.startsWith('/')) stack.length = 1;
        const targetParts = target.split('/');
        for (let i = targetParts.length - 1; i >= 0; i--) pending.push(targetParts[i]);
        continue;
      }
      stack.push(child);
    }
    if (create) for (const dir of stack) dir.touchedLayer = this.layer;
    return stack[stack.length - 1];
  }
}

function newDir(mode: number, uid: number, gid: number, mtime: number, layer: number): DirNode {
  return { kind: 'dir', mode, uid, gid, mtime, xattrs: undefined, ino: 0, children: new Map(), layer, touchedLayer: layer };
}
