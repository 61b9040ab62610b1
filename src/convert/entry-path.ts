// How a tar entry name maps into the rootfs: pure string logic.
import { BakeError, displayName } from './errors.js';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
/** Linux and ext4 limits: NAME_MAX bytes per component, PATH_MAX - 1 bytes per path or symlink target. */
export const MAX_NAME_BYTES = 255;
export const MAX_PATH_BYTES = 4095;

/**
 * Splits an entry name into path components below the root. Leading `/` and
 * `./` are dropped (absolute names are contained, not refused), `.` and empty
 * components vanish, and `..` is resolved lexically; a name that climbs above
 * the root is refused. `[]` is the root itself.
 */
export function entryComponents(name: string): string[] {
  checkPathText(name, 'entry');
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part.length > MAX_NAME_BYTES) {
      throw new BakeError('UNSUPPORTED_ENTRY', `entry ${displayName(name)} has a name of ${part.length} bytes; ext4 names hold at most ${MAX_NAME_BYTES}`);
    }
    if (part === '..') {
      if (out.length === 0) throw new BakeError('UNSAFE_ENTRY', `entry ${displayName(name)} points outside the image root`);
      out.pop();
    } else {
      out.push(part);
    }
  }
  return out;
}

export type EntryTarget =
  /** An ordinary entry at `path`. */
  | { kind: 'path'; path: string[] }
  /** `.wh.<name>`: hide `<name>` of lower layers in `parent`. */
  | { kind: 'whiteout'; parent: string[]; name: string }
  /** `.wh..wh..opq`: hide everything lower layers put in `dir`. */
  | { kind: 'opaque'; dir: string[] }
  /** Other `.wh..wh.` names are AUFS bookkeeping (`.wh..wh.plnk/…`, …): skipped. */
  | { kind: 'ignored' };

export function entryTarget(name: string): EntryTarget {
  const path = entryComponents(name);
  const top = path[0];
  if (top !== undefined && top !== OPAQUE_MARKER && top.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return { kind: 'ignored' };
  const base = path[path.length - 1];
  if (base === undefined || !base.startsWith(WHITEOUT_PREFIX)) return { kind: 'path', path };
  const parent = path.slice(0, -1);
  if (base === OPAQUE_MARKER) return { kind: 'opaque', dir: parent };
  if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return { kind: 'ignored' };
  const hidden = base.slice(WHITEOUT_PREFIX.length);
  if (hidden === '' || hidden === '.' || hidden === '..') {
    throw new BakeError('UNSAFE_ENTRY', `whiteout ${displayName(name)} names no file`);
  }
  return { kind: 'whiteout', parent, name: hidden };
}

/** A name or link target as a byte string: at most MAX_PATH_BYTES, and no NUL (which would end it early on disk). */
export function checkPathText(text: string, what: string): void {
  if (text.length > MAX_PATH_BYTES) {
    throw new BakeError('UNSUPPORTED_ENTRY', `${what} ${displayName(text)} is ${text.length} bytes long; Linux paths hold at most ${MAX_PATH_BYTES}`);
  }
  if (text.includes('\0')) throw new BakeError('UNSUPPORTED_ENTRY', `${what} ${displayName(text)} contains a NUL byte`);
}
