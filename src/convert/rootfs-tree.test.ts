import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BakeError } from './errors.js';
import { BakeBudget, DEFAULT_BAKE_LIMITS, type BakeLimits } from './limits.js';
import { nodeOf, RootfsTree, type DirNode, type FileNode } from './rootfs-tree.js';
import { MemorySink } from './testing.js';
import type { TarEntry } from './tar-reader.js';

type Spec = Partial<TarEntry> & { name: string; body?: string };
const entry = (spec: Spec): TarEntry => ({
  type: 'file', mode: 0o644, uid: 0, gid: 0, size: spec.body?.length ?? 0, mtime: 1700000000,
  linkname: '', devmajor: 0, devminor: 0, xattrs: new Map(), ...spec,
});
const dir = (name: string, extra: Partial<TarEntry> = {}) => entry({ name, type: 'directory', mode: 0o755, ...extra });
const file = (name: string, body = '', extra: Partial<TarEntry> = {}) => entry({ name, body, ...extra });
const symlink = (name: string, linkname: string) => entry({ name, type: 'symlink', mode: 0o777, linkname });
const hardlink = (name: string, linkname: string) => entry({ name, type: 'hardlink', linkname });

function apply(tree: RootfsTree, layer: Spec[]): void {
  tree.beginLayer();
  for (const spec of layer) {
    const e = entry(spec);
    tree.entry(e);
    if (spec.body) tree.data(Buffer.from(spec.body));
    tree.entryEnd();
  }
}

function build(layers: Spec[][], limits: Partial<BakeLimits> = {}) {
  const sink = new MemorySink();
  const tree = new RootfsTree(sink, new BakeBudget({ ...DEFAULT_BAKE_LIMITS, ...limits }));
  for (const layer of layers) apply(tree, layer);
  return { sink, tree };
}

/** Every path in the model with a type letter: d, f (size, content), l (symlink → target), c/b/p. */
function listing(root: DirNode, sink?: MemorySink): string[] {
  const out: string[] = [];
  const walk = (d: DirNode, prefix: string) => {
    for (const [name, child] of [...d.children].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const p = `${prefix}/${name}`;
      const node = nodeOf(child);
      if (node.kind === 'dir') {
        out.push(`d ${p}`);
        walk(node, p);
      } else if (node.kind === 'symlink') out.push(`l ${p} -> ${node.target}`);
      else if (node.kind === 'special') out.push(`${node.device?.kind[0]} ${p}`);
      else out.push(`f ${p} ${node.size}${sink && node.dataRef >= 0 ? ` ${sink.contents.get(node.dataRef)?.toString()}` : ''}`);
    }
  };
  walk(root, '');
  return out;
}

function child(tree: RootfsTree, ...names: string[]) {
  let node: DirNode | FileNode = tree.root;
  for (const name of names) {
    const next = (node as DirNode).children.get(name);
    assert.ok(next, `no ${names.join('/')}`);
    node = nodeOf(next);
  }
  return node;
}

const failsWith = (code: string, pattern: RegExp) => (err: unknown) => err instanceof BakeError && err.code === code && pattern.test(err.message);
const unsafe = (pattern: RegExp) => failsWith('UNSAFE_ENTRY', pattern);

describe('RootfsTree: layer rules', () => {
  it('creates files, dirs, symlinks and missing parents, and sends file content to the sink', () => {
    const { sink, tree } = build([[dir('etc/'), file('etc/hostname', 'x'), file('usr/bin/env', 'ab'), file('empty'), symlink('bin', 'usr/bin')]]);
    assert.deepEqual(listing(tree.root, sink), ['l /bin -> usr/bin', 'f /empty 0', 'd /etc', 'f /etc/hostname 1 x', 'd /usr', 'd /usr/bin', 'f /usr/bin/env 2 ab']);
    assert.equal(sink.contents.size, 2, 'empty files store nothing');
  });

  it('whiteouts hide lower layers only, including a whole directory, and release their content', () => {
    const { sink, tree } = build([
      [file('a', '1'), file('b', '1'), file('d/x', 'dx'), file('d/y/z', 'dz')],
      [file('b', '22'), file('.wh.b'), file('.wh.a'), file('.wh.d'), file('.wh.missing'), file('nope/.wh.x')],
    ]);
    // b was rewritten in the same layer as its whiteout: the new b stays.
    assert.deepEqual(listing(tree.root, sink), ['f /b 2 22']);
    assert.deepEqual(sink.released.sort(), ['1', '1', 'dx', 'dz']);
  });

  it('deleted-then-recreated: a whiteout then the same path in a later layer', () => {
    const { tree } = build([[file('etc/app.conf', 'old'), file('etc/app.d/1', 'x')], [file('etc/.wh.app.conf'), file('etc/.wh.app.d')], [file('etc/app.conf', 'new!'), dir('etc/app.d/')]]);
    assert.deepEqual(listing(tree.root), ['d /etc', 'f /etc/app.conf 4', 'd /etc/app.d']);
  });

  it('an opaque marker after its siblings keeps this layer and hides lower layers', () => {
    const { tree } = build([
      [file('etc/skel/.bashrc', 'x'), file('etc/skel/.profile', 'x'), file('etc/skel/sub/old', 'x'), file('etc/other', 'x')],
      [file('etc/skel/new', 'yy'), file('etc/skel/sub/fresh', 'z'), file('etc/skel/.wh..wh..opq')],
    ]);
    assert.deepEqual(listing(tree.root), ['d /etc', 'f /etc/other 1', 'd /etc/skel', 'f /etc/skel/new 2', 'd /etc/skel/sub', 'f /etc/skel/sub/fresh 1']);
  });

  it('an opaque marker without its directory entry creates the directory', () => {
    const { tree } = build([[file('pkg/a/index.js', 'x')], [file('pkg/a/.wh..wh..opq'), file('fresh/.wh..wh..opq')]]);
    assert.deepEqual(listing(tree.root), ['d /fresh', 'd /pkg', 'd /pkg/a']);
  });

  it('a directory listed in the same layer as an opaque parent loses its lower children', () => {
    const { tree } = build([[file('d/keep/old', 'x')], [dir('d/keep/'), file('d/.wh..wh..opq')]]);
    assert.deepEqual(listing(tree.root), ['d /d', 'd /d/keep']);
  });

  it('replaces a directory by a file and a file by a directory; merges directories', () => {
    const { sink, tree } = build([[file('x/1', 'a'), file('y', 'b'), dir('z/', { mode: 0o700 }), file('z/k', 'c')], [file('x', 'new'), dir('y/'), dir('z/', { mode: 0o750 })]]);
    assert.deepEqual(listing(tree.root), ['f /x 3', 'd /y', 'd /z', 'f /z/k 1']);
    assert.deepEqual(sink.released.sort(), ['a', 'b']);
    assert.equal(child(tree, 'z').mode, 0o750);
  });

  it('hardlinks share a node, and its content is released only with the last name', () => {
    const { sink, tree } = build([[file('bin/a', 'abc'), hardlink('bin/b', 'bin/a'), hardlink('c', '/bin/a')], [file('bin/.wh.a')]]);
    assert.deepEqual(listing(tree.root), ['d /bin', 'f /bin/b 3', 'f /c 3']);
    assert.equal(child(tree, 'bin', 'b'), child(tree, 'c'));
    assert.equal((child(tree, 'c') as FileNode).links, 2);
    assert.deepEqual(sink.released, []);
    const later = build([[file('a', 'abc'), hardlink('b', 'a')], [file('.wh.a'), file('.wh.b')]]);
    assert.deepEqual(later.sink.released, ['abc']);
  });

  it('a hardlink that replaces the directory holding its target keeps the target', () => {
    const { sink, tree } = build([[file('d/f', 'keep')], [hardlink('d', 'd/f')]]);
    assert.deepEqual(listing(tree.root, sink), ['f /d 4 keep']);
    assert.deepEqual(sink.released, []);
  });

  it('keeps devices and fifos, hardlinked too, with their numbers and modes', () => {
    const { tree } = build([[
      entry({ name: 'dev/null', type: 'char-device', mode: 0o666, devmajor: 1, devminor: 3 }),
      entry({ name: 'dev/loop0', type: 'block-device', mode: 0o660, gid: 6, devmajor: 7, devminor: 0 }),
      entry({ name: 'run/fifo', type: 'fifo', mode: 0o600 }),
      hardlink('run/fifo2', 'run/fifo'),
    ]]);
    assert.deepEqual(listing(tree.root), ['d /dev', 'b /dev/loop0', 'c /dev/null', 'd /run', 'f /run/fifo', 'f /run/fifo2']);
    const fifo = child(tree, 'run', 'fifo') as FileNode;
    assert.equal(fifo, child(tree, 'run', 'fifo2'));
    assert.deepEqual([fifo.links, fifo.mode], [2, 0o600]);
    assert.deepEqual((child(tree, 'dev', 'loop0') as FileNode).device, { kind: 'block', major: 7, minor: 0 });
  });

  it('keeps metadata and xattrs, the root directory included', () => {
    const cap = Buffer.from([1, 0, 0, 2, 0, 4, 0, 0x80]);
    const { tree } = build([[
      dir('./', { mode: 0o700, mtime: 1600000000 }),
      dir('opt/', { mode: 0o750, uid: 5, xattrs: new Map([['user.dir', Buffer.from('d')]]) }),
      file('opt/ping', 'x', { xattrs: new Map([['security.capability', cap]]) }),
    ]]);
    assert.deepEqual([tree.root.mode, tree.root.mtime], [0o700, 1600000000]);
    const opt = child(tree, 'opt');
    assert.deepEqual([opt.mode, opt.uid, [...(opt.xattrs ?? new Map()).keys()]], [0o750, 5, ['user.dir']]);
    assert.deepEqual(child(tree, 'opt', 'ping').xattrs?.get('security.capability'), cap);
  });
});

describe('RootfsTree: containment', () => {
  it('follows a relative parent symlink inside the root (usrmerge)', () => {
    const { tree } = build([[dir('usr/lib/'), symlink('lib', 'usr/lib')], [file('lib/x.so', 'x')]]);
    assert.equal(child(tree, 'usr', 'lib', 'x.so').kind, 'file');
  });

  it('resolves absolute and climbing symlink targets against the image root, never the host', () => {
    const { tree } = build([[
      symlink('abs', '/etc'),
      symlink('up', '../../../../../../tmp'),
      symlink('chain1', 'chain2'),
      symlink('chain2', '/abs/../up'),
    ], [
      file('abs/passwd', 'x'),
      file('up/evil', 'x'),
      file('chain1/deep', 'x'),
    ]]);
    assert.deepEqual(listing(tree.root).filter((l) => l.startsWith('f')), ['f /etc/passwd 1', 'f /tmp/deep 1', 'f /tmp/evil 1']);
  });

  it('replaces a symlink named by an entry instead of writing through it', () => {
    const { tree } = build([[symlink('etc/passwd', '/host/etc/passwd'), symlink('d', '/outside')], [file('etc/passwd', 'root'), dir('d/')]]);
    assert.deepEqual(listing(tree.root), ['d /d', 'd /etc', 'f /etc/passwd 4']);
  });

  it('refuses names that climb out of the root', () => {
    assert.throws(() => build([[file('../escape', 'x')]]), unsafe(/outside the image root/));
    assert.throws(() => build([[file('a/../../escape', 'x')]]), unsafe(/outside the image root/));
  });

  it('contains absolute names', () => {
    const { tree } = build([[file('/etc/motd', 'hi')]]);
    assert.deepEqual(listing(tree.root), ['d /etc', 'f /etc/motd 2']);
  });

  it('refuses hardlinks to missing, escaping and directory targets', () => {
    assert.throws(() => build([[hardlink('shadow', '/etc/shadow')]]), unsafe(/not in the image/));
    assert.throws(() => build([[hardlink('shadow', '../../etc/shadow')]]), unsafe(/outside the image root/));
    assert.throws(() => build([[dir('etc/'), hardlink('e', 'etc')]]), unsafe(/points to a directory/));
  });

  it('links to a symlink itself, not to what it points at', () => {
    const { tree } = build([[symlink('esc', '/etc/shadow'), hardlink('h', 'esc')]]);
    assert.deepEqual(listing(tree.root), ['l /esc -> /etc/shadow', 'l /h -> /etc/shadow']);
    assert.equal(child(tree, 'h'), child(tree, 'esc'));
  });

  it('resolves a hardlink target through a parent symlink inside the root', () => {
    const { tree } = build([[file('usr/bin/python3', 'x'), symlink('bin', 'usr/bin'), hardlink('py', 'bin/python3')]]);
    assert.equal(child(tree, 'py'), child(tree, 'usr', 'bin', 'python3'));
  });

  it('refuses symlink loops and files used as directories', () => {
    assert.throws(() => build([[symlink('a', 'b'), symlink('b', 'a'), file('a/x', '1')]]), failsWith('LIMIT_EXCEEDED', /too many levels of symbolic links in "a\/x".*KILN_BAKE_MAX_SYMLINK_HOPS/));
    assert.throws(() => build([[file('f', '1'), file('f/x', '1')]]), unsafe(/is not a directory/));
  });

  it('refuses replacing the root with a non-directory', () => {
    assert.throws(() => build([[symlink('./', '/')]]), unsafe(/replace the root/));
  });
});

describe('RootfsTree: what ext4 cannot hold', () => {
  const unsupported = (pattern: RegExp) => failsWith('UNSUPPORTED_ENTRY', pattern);
  it('refuses long names and paths, NUL bytes, empty and long symlink targets, and big ids and device numbers', () => {
    assert.throws(() => build([[file(`d/${'n'.repeat(256)}`, 'x')]]), unsupported(/name of 256 bytes; ext4 names hold at most 255/));
    assert.throws(() => build([[file(`${'d/'.repeat(2048)}f`, 'x')]]), unsupported(/is 4097 bytes long; Linux paths hold at most 4095/));
    assert.throws(() => build([[file('a\0b', 'x')]]), unsupported(/contains a NUL byte/));
    assert.throws(() => build([[symlink('l', '')]]), unsupported(/empty target/));
    assert.throws(() => build([[symlink('l', 'x'.repeat(4096))]]), unsupported(/target of symbolic link "l" .* 4096 bytes long/));
    assert.throws(() => build([[file('f', 'x', { uid: 2 ** 32 })]]), unsupported(/owner 4294967296:0/));
    assert.throws(() => build([[entry({ name: 'dev/x', type: 'char-device', devmajor: 4096, devminor: 1 })]]), unsupported(/device 4096:1/));
    assert.throws(() => build([[file('f', 'x', { xattrs: new Map([['user.bad', Buffer.from('v')]]) })]]), unsupported(/^entry "f" has user.bad$/));
  });

  it('accepts a name of 255 bytes and a path of 4095', () => {
    const long = 'n'.repeat(255);
    const path = `${'d/'.repeat(2046)}abc`;
    const { tree } = build([[file(long, 'x'), file(path, 'y')]]);
    assert.equal(child(tree, long).kind, 'file');
  });
});

describe('RootfsTree: limits', () => {
  const limit = (setting: string) => failsWith('LIMIT_EXCEEDED', new RegExp(`raise ${setting} to allow more`));
  it('counts tar entries and the directories they imply', () => {
    assert.doesNotThrow(() => build([[file('a/b/c', 'x'), file('d', 'y')]], { maxEntries: 4 }));
    assert.throws(() => build([[file('a/b/c', 'x'), file('d', 'y')]], { maxEntries: 3 }), limit('KILN_BAKE_MAX_ENTRIES'));
  });

  it('refuses a file whose declared size passes the byte limit before any content arrives', () => {
    const { tree } = build([], { maxUnpackedBytes: 100 });
    tree.beginLayer();
    assert.throws(() => tree.entry(entry({ name: 'big', size: 101 })), limit('KILN_BAKE_MAX_BYTES'));
  });

  it('bounds the symlinks followed per path and the resolution steps per layer', () => {
    // Each step of the chain doubles the path: 2^6 hops for one entry.
    const chain: Spec[] = [symlink('l0', '.')];
    for (let i = 1; i <= 6; i++) chain.push(symlink(`l${i}`, `l${i - 1}/l${i - 1}`));
    assert.throws(() => build([chain, [file('l6/x', '1')]]), limit('KILN_BAKE_MAX_SYMLINK_HOPS'));
    assert.doesNotThrow(() => build([chain, [file('l5/x', '1')]], { maxSymlinkHops: 63 }));
    // Few hops, many components: a target of 1000 "." walked by each of 50 entries.
    const wide: Spec[] = [dir('d/'), symlink('w', `${'./'.repeat(1000)}d`)];
    const entries = Array.from({ length: 50 }, (_, i) => file(`w/f${i}`, 'x'));
    assert.throws(() => build([wide, entries], { maxResolveStepsPerLayer: 40_000 }), limit('KILN_BAKE_MAX_RESOLVE_STEPS'));
    assert.doesNotThrow(() => build([wide, entries], { maxResolveStepsPerLayer: 60_000 }));
  });
});
