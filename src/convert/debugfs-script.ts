// Turns Fixups into a `debugfs -w -f` script. Pure.
//
// Why debugfs after mkfs: Node has no mknod(2) or setxattr(2), and mknod needs
// root. mkfs.ext4 -d builds everything else from the staged tree; one debugfs
// process then creates device nodes and fifos, sets xattrs (values passed as
// files, so binary values such as security.capability survive), restores
// modes/owners that unprivileged staging could not set, and sets the root
// directory's metadata (mkfs -d does not copy it). It needs no privileges
// and works whatever the staging filesystem supports.
import { BakeError, displayName } from './errors.js';
import type { Fixups, Meta } from './rootfs-tree.js';

const S_IFIFO = 0o010000;
const S_IFCHR = 0o020000;
const S_IFDIR = 0o040000;
const S_IFBLK = 0o060000;
const S_IFREG = 0o100000;

export interface DebugfsScript {
  /** Byte string of commands, one per line. */
  script: string;
  /** Xattr values; command `i` reads `valuePath(i)`. */
  values: Buffer[];
}

export function buildDebugfsScript(fixups: Fixups, valuePath: (index: number) => string): DebugfsScript {
  const lines: string[] = [];
  const values: Buffer[] = [];

  for (const { paths, inode } of fixups.specials) {
    const device = inode.device;
    if (!device) continue;
    const [primary, ...others] = paths;
    const slash = primary.lastIndexOf('/');
    const dir = slash === -1 ? '' : primary.slice(0, slash);
    const name = primary.slice(slash + 1);
    const spec = device.kind === 'fifo' ? 'p' : `${device.kind === 'char' ? 'c' : 'b'} ${device.major} ${device.minor}`;
    const typeBits = device.kind === 'fifo' ? S_IFIFO : device.kind === 'char' ? S_IFCHR : S_IFBLK;
    // mknod takes a name in the current directory, not a path.
    lines.push(`cd ${quote(`/${dir}`)}`, `mknod ${quote(name)} ${spec}`, 'cd /');
    lines.push(...setMeta(`/${primary}`, typeBits, inode.meta, true));
    for (const other of others) lines.push(`ln ${quote(`/${primary}`)} ${quote(`/${other}`)}`);
    // ln does not count links; set the count once all names exist.
    if (others.length > 0) lines.push(`sif ${quote(`/${primary}`)} links_count ${paths.length}`);
  }

  for (const { paths } of fixups.symlinkLinks) {
    const [primary, ...others] = paths;
    for (const other of others) lines.push(`rm ${quote(`/${other}`)}`, `ln ${quote(`/${primary}`)} ${quote(`/${other}`)}`);
    lines.push(`sif ${quote(`/${primary}`)} links_count ${paths.length}`);
  }

  for (const { path, type, meta } of fixups.metas) {
    const typeBits = type === 'dir' ? S_IFDIR : type === 'file' ? S_IFREG : null;
    lines.push(...setMeta(`/${path}`, typeBits, meta, false));
  }

  for (const { path, xattrs } of fixups.xattrs) {
    for (const [name, value] of xattrs) {
      lines.push(`ea_set -f ${quote(valuePath(values.length))} ${quote(`/${path}`)} ${quote(Buffer.from(name).toString('latin1'))}`);
      values.push(value);
    }
  }

  lines.push(...setMeta('/', S_IFDIR, fixups.root, true));
  for (const { path, mtime } of fixups.dirTimes) lines.push(`sif ${quote(`/${path}`)} mtime ${seconds(mtime)}`);
  return { script: `${lines.join('\n')}\n`, values };
}

function setMeta(path: string, typeBits: number | null, meta: Meta, withTime: boolean): string[] {
  const p = quote(path);
  const out: string[] = [];
  if (typeBits !== null) out.push(`sif ${p} mode 0${(typeBits | (meta.mode & 0o7777)).toString(8)}`);
  out.push(`sif ${p} uid ${meta.uid}`, `sif ${p} gid ${meta.gid}`);
  if (withTime) out.push(`sif ${p} mtime ${seconds(meta.mtime)}`);
  return out;
}

/** debugfs (libss) reads one command per line; inside "…" a doubled quote is a literal quote. */
export function quote(byteString: string): string {
  if (byteString.includes('\n')) {
    throw new BakeError('UNSAFE_ENTRY', `${displayName(byteString)} has a newline in its name and needs metadata that can only be set by debugfs`);
  }
  return `"${byteString.replaceAll('"', '""')}"`;
}

function seconds(mtime: number): number {
  return Math.max(0, Math.floor(mtime));
}
