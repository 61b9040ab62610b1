import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildDebugfsScript, quote } from './debugfs-script.js';
import { BakeError } from './errors.js';
import type { Fixups, Inode } from './rootfs-tree.js';

const meta = (mode: number, uid = 0, gid = 0, mtime = 1700000000.7) => ({ mode, uid, gid, mtime });
const special = (kind: 'char' | 'block' | 'fifo', major: number, minor: number, m = meta(0o600)): Inode => ({ type: 'special', meta: m, size: 0, device: { kind, major, minor } });
const empty = (): Fixups => ({ root: meta(0o755), specials: [], symlinkLinks: [], xattrs: [], metas: [], dirTimes: [] });
const lines = (f: Fixups) => buildDebugfsScript(f, (i) => `/scratch/x${i}`).script.trimEnd().split('\n');
const ROOT = ['sif "/" mode 040755', 'sif "/" uid 0', 'sif "/" gid 0', 'sif "/" mtime 1700000000'];

describe('buildDebugfsScript', () => {
  it('always sets the root directory, which mkfs -d leaves at its defaults', () => {
    assert.deepEqual(lines({ ...empty(), root: meta(0o700, 5, 6, 42) }), ['sif "/" mode 040700', 'sif "/" uid 5', 'sif "/" gid 6', 'sif "/" mtime 42']);
  });

  it('creates devices and fifos from their directory, links extra names and counts them', () => {
    const f = empty();
    f.specials = [
      { paths: ['dev/null'], inode: special('char', 1, 3, meta(0o666)) },
      { paths: ['dev/loop0'], inode: special('block', 7, 0, meta(0o660, 0, 6)) },
      { paths: ['fifo', 'run/fifo2'], inode: special('fifo', 0, 0) },
    ];
    f.dirTimes = [{ path: 'dev', mtime: 1600000000 }];
    assert.deepEqual(lines(f), [
      'cd "/dev"', 'mknod "null" c 1 3', 'cd /', 'sif "/dev/null" mode 020666', 'sif "/dev/null" uid 0', 'sif "/dev/null" gid 0', 'sif "/dev/null" mtime 1700000000',
      'cd "/dev"', 'mknod "loop0" b 7 0', 'cd /', 'sif "/dev/loop0" mode 060660', 'sif "/dev/loop0" uid 0', 'sif "/dev/loop0" gid 6', 'sif "/dev/loop0" mtime 1700000000',
      'cd "/"', 'mknod "fifo" p', 'cd /', 'sif "/fifo" mode 010600', 'sif "/fifo" uid 0', 'sif "/fifo" gid 0', 'sif "/fifo" mtime 1700000000',
      'ln "/fifo" "/run/fifo2"', 'sif "/fifo" links_count 2',
      ...ROOT,
      'sif "/dev" mtime 1600000000',
    ]);
  });

  it('relinks hardlinked symlinks, restores modes and owners, and sets xattrs from value files', () => {
    const f = empty();
    f.symlinkLinks = [{ paths: ['a', 'b', 'c'] }];
    f.metas = [
      { path: 'etc/shadow', type: 'file', meta: meta(0o000) },
      { path: 'srv', type: 'dir', meta: meta(0o555, 1000, 1000) },
      { path: 'link', type: 'symlink', meta: meta(0o777, 7, 8) },
    ];
    f.xattrs = [{ path: 'bin/ping', xattrs: new Map([['security.capability', Buffer.from([1, 0x80])], ['user.ü', Buffer.from('v')]]) }];
    const { script, values } = buildDebugfsScript(f, (i) => `/scratch/x${i}`);
    assert.deepEqual(script.trimEnd().split('\n'), [
      'rm "/b"', 'ln "/a" "/b"', 'rm "/c"', 'ln "/a" "/c"', 'sif "/a" links_count 3',
      'sif "/etc/shadow" mode 0100000', 'sif "/etc/shadow" uid 0', 'sif "/etc/shadow" gid 0',
      'sif "/srv" mode 040555', 'sif "/srv" uid 1000', 'sif "/srv" gid 1000',
      'sif "/link" uid 7', 'sif "/link" gid 8',
      'ea_set -f "/scratch/x0" "/bin/ping" "security.capability"',
      `ea_set -f "/scratch/x1" "/bin/ping" "${Buffer.from('user.ü').toString('latin1')}"`,
      ...ROOT,
    ]);
    assert.deepEqual(values, [Buffer.from([1, 0x80]), Buffer.from('v')]);
  });
});

describe('quote', () => {
  const table: Array<[string, string]> = [
    ['plain', '"plain"'],
    ['with space', '"with space"'],
    ['say "hi"', '"say ""hi"""'],
    ['-dash', '"-dash"'],
    ['\xe9t\xe9', '"\xe9t\xe9"'],
  ];
  for (const [input, expected] of table) it(JSON.stringify(input), () => assert.equal(quote(input), expected));
  it('refuses names with a newline, which debugfs scripts cannot carry', () => {
    assert.throws(() => quote('a\nb'), (err: Error) => err instanceof BakeError && /newline/.test(err.message));
  });
});
