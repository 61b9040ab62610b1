import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BakeError } from './errors.js';
import { RootfsTree, type DirNode, type Meta, type TreeSink } from './rootfs-tree.js';
import type { TarEntry } from './tar-reader.js';

/** Records every sink call as a short string. */
class RecordingSink implements TreeSink {
  ops: string[] = [];
  mkdir(p: string) { this.ops.push(`mkdir ${p}`); }
  remove(p: string, isDir: boolean) { this.ops.push(`${isDir ? 'rmdir' : 'rm'} ${p}`); }
  createFile(p: string, meta: Meta) { this.ops.push(`create ${p} ${meta.mode.toString(8)} ${meta.uid}:${meta.gid}`); }
  writeFile(chunk: Buffer) { this.ops.push(`write ${chunk.toString()}`); }
  closeFile() { this.ops.push('close'); }
  symlink(p: string, target: string) { this.ops.push(`symlink ${p} -> ${target}`); }
  link(existing: string, p: string) { this.ops.push(`link ${p} => ${existing}`); }
  setDirMeta(p: string, meta: Meta) { this.ops.push(`dirmeta /${p} ${meta.mode.toString(8)}`); }
}

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

function build(layers: Spec[][], options = {}) {
  const sink = new RecordingSink();
  const tree = new RootfsTree(sink, options);
  for (const layer of layers) apply(tree, layer);
  return { sink, tree };
}

/** Every path in the model with a type letter: d, f, l (symlink → target), c/b/p. */
function listing(root: DirNode): string[] {
  const out: string[] = [];
  const walk = (d: DirNode, prefix: string) => {
    for (const [name, child] of [...d.children].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const p = `${prefix}/${name}`;
      if (child.kind === 'dir') {
        out.push(`d ${p}`);
        walk(child, p);
      } else if (child.inode.type === 'symlink') out.push(`l ${p} -> ${child.inode.target}`);
      else if (child.inode.type === 'special') out.push(`${child.inode.device?.kind[0]} ${p}`);
      else out.push(`f ${p} ${child.inode.size}`);
    }
  };
  walk(root, '');
  return out;
}

const unsafe = (pattern: RegExp) => (err: unknown) => err instanceof BakeError && err.code === 'UNSAFE_ENTRY' && pattern.test(err.message);

describe('RootfsTree: layer rules', () => {
  it('creates files, dirs, symlinks and missing parents in order', () => {
    const { sink, tree } = build([[dir('etc/'), file('etc/hostname', 'x'), file('usr/bin/env', 'ab'), symlink('bin', 'usr/bin')]]);
    assert.deepEqual(sink.ops, [
      'mkdir etc', 'create etc/hostname 644 0:0', 'write x', 'close',
      'mkdir usr', 'mkdir usr/bin', 'create usr/bin/env 644 0:0', 'write ab', 'close',
      'symlink bin -> usr/bin',
    ]);
    assert.deepEqual(listing(tree.root), ['l /bin -> usr/bin', 'd /etc', 'f /etc/hostname 1', 'd /usr', 'd /usr/bin', 'f /usr/bin/env 2']);
  });

  it('whiteouts hide lower layers only, including a whole directory', () => {
    const { tree } = build([
      [file('a', '1'), file('b', '1'), file('d/x', '1'), file('d/y/z', '1')],
      [file('b', '22'), file('.wh.b'), file('.wh.a'), file('.wh.d'), file('.wh.missing'), file('nope/.wh.x')],
    ]);
    // b was rewritten in the same layer as its whiteout: the new b stays.
    assert.deepEqual(listing(tree.root), ['f /b 2']);
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
    assert.ok(sink.ops.includes('rmdir x') && sink.ops.includes('rm y'));
  });

  it('hardlinks share an inode and survive removal of the first name', () => {
    const { sink, tree } = build([[file('bin/a', 'abc'), hardlink('bin/b', 'bin/a'), hardlink('c', '/bin/a')], [file('bin/.wh.a')]]);
    assert.deepEqual(listing(tree.root), ['d /bin', 'f /bin/b 3', 'f /c 3']);
    assert.ok(sink.ops.includes('link bin/b => bin/a') && sink.ops.includes('link c => bin/a'));
    const b = tree.root.children.get('bin');
    const c = tree.root.children.get('c');
    assert.ok(b?.kind === 'dir' && c?.kind === 'leaf');
    const bNode = b.children.get('b');
    assert.ok(bNode?.kind === 'leaf' && bNode.inode === c.inode);
  });

  it('specials are kept out of the staging tree and listed as fixups with every name', () => {
    const { sink, tree } = build([[
      entry({ name: 'dev/null', type: 'char-device', mode: 0o666, devmajor: 1, devminor: 3 }),
      entry({ name: 'dev/loop0', type: 'block-device', mode: 0o660, gid: 6, devmajor: 7, devminor: 0 }),
      entry({ name: 'run/fifo', type: 'fifo', mode: 0o600 }),
      hardlink('run/fifo2', 'run/fifo'),
    ]]);
    assert.deepEqual(sink.ops, ['mkdir dev', 'mkdir run']);
    const fixups = tree.finish();
    assert.deepEqual(fixups.specials.map((s) => [s.paths, s.inode.device, s.inode.meta.mode.toString(8), s.inode.meta.gid]), [
      [['dev/null'], { kind: 'char', major: 1, minor: 3 }, '666', 0],
      [['dev/loop0'], { kind: 'block', major: 7, minor: 0 }, '660', 6],
      [['run/fifo', 'run/fifo2'], { kind: 'fifo', major: 0, minor: 0 }, '600', 0],
    ]);
    assert.deepEqual(fixups.dirTimes.map((d) => d.path).sort(), ['dev', 'run']);
  });

  it('lists xattrs once per inode and applies directory metadata children first', () => {
    const cap = Buffer.from([1, 0, 0, 2, 0, 4, 0, 0x80]);
    const { sink, tree } = build([[
      dir('./', { mode: 0o700 }),
      dir('opt/', { mode: 0o750, xattrs: new Map([['user.dir', Buffer.from('d')]]) }),
      file('opt/ping', 'x', { xattrs: new Map([['security.capability', cap]]) }),
      hardlink('opt/ping2', 'opt/ping'),
    ]]);
    const fixups = tree.finish();
    assert.deepEqual(fixups.xattrs.map((x) => [x.path, [...x.xattrs.keys()]]), [['opt/ping', ['security.capability']], ['opt', ['user.dir']]]);
    assert.equal(fixups.root.mode, 0o700);
    assert.deepEqual(sink.ops.filter((o) => o.startsWith('dirmeta')), ['dirmeta /opt 750', 'dirmeta / 700']);
    assert.deepEqual(fixups.metas, []);
  });

  it('unprivileged staging stages readable files owned by the process and lists the real metadata', () => {
    const { sink, tree } = build([[
      file('etc/shadow', 'x', { mode: 0o000 }),
      file('home/u/f', 'x', { uid: 1000, gid: 1000 }),
      dir('srv/', { mode: 0o555 }),
      file('bin/su', 'x', { mode: 0o4755 }),
    ]], { unprivileged: { uid: 0, gid: 0 } });
    const fixups = tree.finish();
    assert.ok(sink.ops.includes('create etc/shadow 600 0:0'));
    assert.ok(sink.ops.includes('dirmeta /srv 755'));
    assert.deepEqual(fixups.metas.map((m) => `${m.type} ${m.path} ${m.meta.mode.toString(8)} ${m.meta.uid}`).sort(), [
      'dir srv 555 0',
      'file etc/shadow 0 0',
      'file home/u/f 644 1000',
    ]);
  });
});

describe('RootfsTree: containment', () => {
  it('follows a relative parent symlink inside the root (usrmerge)', () => {
    const { sink } = build([[dir('usr/lib/'), symlink('lib', 'usr/lib')], [file('lib/x.so', 'x')]]);
    assert.ok(sink.ops.includes('create usr/lib/x.so 644 0:0'));
  });

  it('resolves absolute and climbing symlink targets against the image root, never the host', () => {
    const { sink, tree } = build([[
      symlink('abs', '/etc'),
      symlink('up', '../../../../../../tmp'),
      symlink('chain1', 'chain2'),
      symlink('chain2', '/abs/../up'),
    ], [
      file('abs/passwd', 'x'),
      file('up/evil', 'x'),
      file('chain1/deep', 'x'),
    ]]);
    assert.ok(sink.ops.includes('create etc/passwd 644 0:0'));
    assert.ok(sink.ops.includes('create tmp/evil 644 0:0'));
    assert.ok(sink.ops.includes('create tmp/deep 644 0:0'));
    assert.deepEqual(listing(tree.root).filter((l) => l.startsWith('f')), ['f /etc/passwd 1', 'f /tmp/deep 1', 'f /tmp/evil 1']);
  });

  it('replaces a symlink named by an entry instead of writing through it', () => {
    const { sink, tree } = build([[symlink('etc/passwd', '/host/etc/passwd'), symlink('d', '/outside')], [file('etc/passwd', 'root'), dir('d/')]]);
    assert.ok(sink.ops.includes('rm etc/passwd') && sink.ops.includes('rm d') && sink.ops.includes('mkdir d'));
    assert.deepEqual(listing(tree.root), ['d /d', 'd /etc', 'f /etc/passwd 4']);
  });

  it('refuses names that climb out of the root', () => {
    assert.throws(() => build([[file('../escape', 'x')]]), unsafe(/outside the image root/));
    assert.throws(() => build([[file('a/../../escape', 'x')]]), unsafe(/outside the image root/));
  });

  it('contains absolute names', () => {
    const { sink } = build([[file('/etc/motd', 'hi')]]);
    assert.ok(sink.ops.includes('create etc/motd 644 0:0'));
  });

  it('refuses hardlinks to missing, escaping and directory targets', () => {
    assert.throws(() => build([[hardlink('shadow', '/etc/shadow')]]), unsafe(/not in the image/));
    assert.throws(() => build([[hardlink('shadow', '../../etc/shadow')]]), unsafe(/outside the image root/));
    assert.throws(() => build([[dir('etc/'), hardlink('e', 'etc')]]), unsafe(/points to a directory/));
  });

  it('links to a symlink itself, not to what it points at', () => {
    const { sink, tree } = build([[symlink('esc', '/etc/shadow'), hardlink('h', 'esc')]]);
    // Staged as a second symlink (mkfs -d does not keep symlink hardlinks), relinked by a fixup.
    assert.ok(sink.ops.includes('symlink h -> /etc/shadow'));
    assert.deepEqual(listing(tree.root), ['l /esc -> /etc/shadow', 'l /h -> /etc/shadow']);
    assert.deepEqual(tree.finish().symlinkLinks, [{ paths: ['esc', 'h'] }]);
  });

  it('resolves a hardlink target through a parent symlink inside the root', () => {
    const { sink } = build([[file('usr/bin/python3', 'x'), symlink('bin', 'usr/bin'), hardlink('py', 'bin/python3')]]);
    assert.ok(sink.ops.includes('link py => usr/bin/python3'));
  });

  it('refuses symlink loops and files used as directories', () => {
    assert.throws(() => build([[symlink('a', 'b'), symlink('b', 'a'), file('a/x', '1')]]), unsafe(/too many levels/));
    assert.throws(() => build([[file('f', '1'), file('f/x', '1')]]), unsafe(/is not a directory/));
  });

  it('refuses replacing the root with a non-directory', () => {
    assert.throws(() => build([[symlink('./', '/')]]), unsafe(/replace the root/));
  });
});
