// Helpers for the bake tests: read an ext4 image with debugfs and a directory
// tree with lstat, into the same comparable shape.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { nodeOf, type DirNode, type FileNode } from '../src/convert/rootfs-tree.js';
import type { MemorySink } from '../src/convert/testing.js';

export interface Node {
  type: 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  mode: number; // permission bits incl. setuid/setgid/sticky
  uid: number;
  gid: number;
  size?: number; // files
  sha256?: string; // files
  target?: string; // symlinks, byte string
  rdev?: [number, number]; // devices
  mtime?: number; // whole seconds
  ino: number;
  nlink?: number;
  xattrs: Record<string, string>; // hex values
}

export type Tree = Map<string, Node>;

const TYPE_BITS: Record<number, Node['type']> = { 0o040000: 'dir', 0o100000: 'file', 0o120000: 'symlink', 0o020000: 'char', 0o060000: 'block', 0o010000: 'fifo', 0o140000: 'socket' };

export function run(command: string, args: string[], options: { input?: Buffer } = {}): { status: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(command, args, { input: options.input, maxBuffer: 1 << 30 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

/** e2fsck -fn: exit 0 means the filesystem is clean. */
export function fsck(disk: string): { clean: boolean; output: string } {
  const r = run('e2fsck', ['-fn', disk]);
  return { clean: r.status === 0, output: `${r.stdout.toString()}${r.stderr}` };
}

/** Runs debugfs commands in one process; returns each command's output (latin1). */
export function debugfsBatch(disk: string, commands: string[]): string[] {
  if (commands.length === 0) return [];
  const r = run('debugfs', ['-f', '-', disk], { input: Buffer.from(`${commands.join('\n')}\n`, 'latin1') });
  const out = r.stdout.toString('latin1');
  const parts = out.split(/^debugfs: .*$/m);
  parts.shift(); // before the first echo
  if (parts.length !== commands.length) throw new Error(`debugfs answered ${parts.length} of ${commands.length} commands:\n${r.stderr}`);
  return parts.map((p) => p.replace(/^\n/, ''));
}

export const q = (p: string) => `"${p.replaceAll('"', '""')}"`;

export function debugfsCat(disk: string, p: string): Buffer {
  return run('debugfs', ['-R', `cat ${q(p)}`, disk]).stdout;
}

/** The whole tree of an ext4 image (lost+found excluded), via debugfs ls -p, stat, ea_list/ea_get and rdump. */
export function ext4Tree(disk: string, scratch: string): Tree {
  const tree: Tree = new Map();
  let level = [''];
  while (level.length > 0) {
    const outputs = debugfsBatch(disk, level.map((d) => `ls -p ${q(d === '' ? '/' : d)}`));
    const next: string[] = [];
    level.forEach((dir, i) => {
      for (const line of outputs[i].split('\n')) {
        const f = line.split('/');
        if (f.length !== 8) continue;
        const [, ino, mode, uid, gid, name, size] = f;
        if (name === '.' || name === '..' || (dir === '' && name === 'lost+found')) continue;
        const m = parseInt(mode, 8);
        const p = `${dir}/${name}`;
        const type = TYPE_BITS[m & 0o170000];
        tree.set(p, { type, mode: m & 0o7777, uid: Number(uid), gid: Number(gid), ino: Number(ino), xattrs: {}, ...(type === 'file' ? { size: Number(size) } : {}) });
        if (type === 'dir') next.push(p);
      }
    });
    level = next;
  }
  const paths = ['/', ...tree.keys()];
  const stats = debugfsBatch(disk, paths.map((p) => `stat ${q(p)}`));
  const lists = debugfsBatch(disk, paths.map((p) => `ea_list ${q(p)}`));
  const root: Node = { type: 'dir', mode: 0, uid: 0, gid: 0, ino: 2, xattrs: {} };
  const gets: Array<{ node: Node; name: string; file: string; cmd: string }> = [];
  mkdirSync(path.join(scratch, 'ea'), { recursive: true });
  paths.forEach((p, i) => {
    const node = p === '/' ? root : (tree.get(p) as Node);
    const s = stats[i];
    if (p === '/') {
      const mode = /Mode:\s+(\d+)/.exec(s);
      const user = /User:\s+(\d+)\s+Group:\s+(\d+)/.exec(s);
      node.mode = parseInt(mode?.[1] ?? '0', 8);
      node.uid = Number(user?.[1]);
      node.gid = Number(user?.[2]);
    }
    node.nlink = Number(/Links:\s+(\d+)/.exec(s)?.[1]);
    node.mtime = parseInt(/^\s*mtime: 0x([0-9a-f]+)/m.exec(s)?.[1] ?? '0', 16);
    const dev = /Device major\/minor number: (\d+):(\d+)/.exec(s);
    if (dev) node.rdev = [Number(dev[1]), Number(dev[2])];
    for (const m of lists[i].matchAll(/^\s+(\S+) \(\d+\)/gm)) {
      const file = path.join(scratch, 'ea', String(gets.length));
      gets.push({ node, name: m[1], file, cmd: `ea_get -f ${q(file)} ${q(p)} ${m[1]}` });
    }
  });
  debugfsBatch(disk, gets.map((g) => g.cmd));
  for (const g of gets) g.node.xattrs[g.name] = readFileSync(g.file).toString('hex');
  tree.set('/', root);

  // Contents and link targets from rdump (it skips device nodes and fifos).
  const dump = path.join(scratch, 'rdump');
  mkdirSync(dump, { recursive: true });
  const r = run('debugfs', ['-R', `rdump / ${dump}`, disk]);
  if (r.status !== 0) throw new Error(r.stderr);
  for (const [p, node] of tree) {
    const local = Buffer.concat([Buffer.from(dump), Buffer.from(p, 'latin1')]);
    if (node.type === 'file') node.sha256 = createHash('sha256').update(readFileSync(local)).digest('hex');
    if (node.type === 'symlink') node.target = readlinkSync(local, { encoding: 'buffer' }).toString('latin1');
  }
  return tree;
}

/** The same shape for a directory on the host (e.g. umoci's rootfs). */
export function hostTree(root: string): Tree {
  const tree: Tree = new Map();
  const rootBuf = Buffer.from(root);
  const walk = (rel: string) => {
    const abs = Buffer.concat([rootBuf, Buffer.from(rel, 'latin1')]);
    const st = lstatSync(abs);
    const type = TYPE_BITS[st.mode & 0o170000];
    const node: Node = { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, ino: st.ino, nlink: st.nlink, mtime: Math.floor(st.mtimeMs / 1000), xattrs: {} };
    if (type === 'file') {
      node.size = st.size;
      node.sha256 = createHash('sha256').update(readFileSync(abs)).digest('hex');
    }
    if (type === 'symlink') node.target = readlinkSync(abs, { encoding: 'buffer' }).toString('latin1');
    if (type === 'char' || type === 'block') node.rdev = [Math.floor(st.rdev / 256) & 0xfff, (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)];
    tree.set(rel === '' ? '/' : rel, node);
    if (type === 'dir') for (const name of readdirSync(abs, { encoding: 'buffer' })) walk(`${rel}/${name.toString('latin1')}`);
  };
  walk('');
  // xattrs of everything, in one getfattr run.
  const r = run('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root]);
  let current: Node | undefined;
  for (const line of r.stdout.toString('latin1').split('\n')) {
    const file = /^# file: (.*)$/.exec(line);
    if (file) {
      const rel = file[1].slice(root.length).replace(/\/$/, '');
      current = tree.get(rel === '' ? '/' : rel);
      continue;
    }
    const kv = /^([^=]+)=0x([0-9a-f]*)$/.exec(line);
    if (kv && current) current.xattrs[kv[1]] = kv[2];
  }
  return tree;
}

/** The same shape for a tree model whose file contents a MemorySink kept (what the disk should hold). */
export function modelTree(root: DirNode, sink: MemorySink): Tree {
  const tree: Tree = new Map();
  const ids = new Map<DirNode | FileNode, number>();
  const id = (n: DirNode | FileNode) => ids.get(n) ?? (ids.set(n, ids.size + 1), ids.size);
  const hexXattrs = (n: DirNode | FileNode) => Object.fromEntries([...(n.xattrs ?? [])].map(([k, v]) => [k, v.toString('hex')]));
  const pending: Array<[DirNode, string]> = [[root, '']];
  tree.set('/', { type: 'dir', mode: root.mode, uid: root.uid, gid: root.gid, ino: id(root), xattrs: hexXattrs(root) });
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [dir, prefix] = next;
    for (const [name, child] of dir.children) {
      const n = nodeOf(child);
      const p = `${prefix}/${name}`;
      const node: Node = { type: 'dir', mode: n.mode, uid: n.uid, gid: n.gid, ino: id(n), mtime: Math.floor(n.mtime), xattrs: hexXattrs(n) };
      if (n.kind === 'dir') pending.push([n, p]);
      else {
        node.nlink = n.links;
        if (n.kind === 'file') {
          const content = n.dataRef >= 0 ? (sink.contents.get(n.dataRef) as Buffer) : Buffer.alloc(0);
          Object.assign(node, { type: 'file', size: n.size, sha256: createHash('sha256').update(content).digest('hex') });
        } else if (n.kind === 'symlink') Object.assign(node, { type: 'symlink', target: n.target });
        else {
          const d = n.device as NonNullable<FileNode['device']>;
          node.type = d.kind;
          if (d.kind !== 'fifo') node.rdev = [d.major, d.minor];
        }
      }
      tree.set(p, node);
    }
  }
  return tree;
}

/** Groups of paths sharing an inode (hardlinks), as sorted lists; non-directories only. */
export function linkGroups(tree: Tree): string[][] {
  const byIno = new Map<number, string[]>();
  for (const [p, n] of tree) if (n.type !== 'dir') byIno.set(n.ino, [...(byIno.get(n.ino) ?? []), p]);
  return [...byIno.values()].filter((g) => g.length > 1).map((g) => g.sort()).sort();
}

/** A comparable summary line per path (ino dropped: it differs between filesystems). */
export function summarize(tree: Tree, options: { mtimes?: boolean } = {}): Map<string, string> {
  const out = new Map<string, string>();
  for (const [p, n] of tree) {
    const parts = [n.type, n.mode.toString(8), `${n.uid}:${n.gid}`];
    if (n.size !== undefined) parts.push(`size=${n.size}`, `sha=${n.sha256?.slice(0, 16)}`);
    if (n.target !== undefined) parts.push(`-> ${n.target}`);
    if (n.rdev) parts.push(`dev=${n.rdev.join(',')}`);
    if (n.type !== 'dir') parts.push(`nlink=${n.nlink}`);
    if (options.mtimes && n.type !== 'dir') parts.push(`mtime=${n.mtime}`);
    const xattrs = Object.entries(n.xattrs).sort(([a], [b]) => (a < b ? -1 : 1));
    if (xattrs.length) parts.push(`xattrs=${xattrs.map(([k, v]) => `${k}:${v}`).join(',')}`);
    out.set(p, parts.join(' '));
  }
  return out;
}
