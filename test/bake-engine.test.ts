// bakeImage end to end on a three-layer image that uses every entry kind:
// the disk is checked with e2fsck and read back with debugfs.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { bakeImage, type BakeResult } from '../src/convert/bake.js';
import { imageFromBlobs, layerTar, paxHeader, TEST_MTIME, ustarHeader, type LayerEntry, type TestImage } from '../src/convert/testing.js';
import { OCI_LAYER_GZIP } from '../src/oci/media-types.js';
import { debugfsCat, ext4Tree, fsck, run, summarize, type Tree } from './bake-helpers.js';
import { BINARY_XATTR, CAPABILITY, fixtureImage, LONG_NAME, UNICODE_NAME } from './bake-fixture.js';

const bytes = (s: string) => Buffer.from(s).toString('latin1');
const sha = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16);
const file = (content: string, mode = '644', owner = '0:0', nlink = 1, xattrs = '') =>
  `file ${mode} ${owner} size=${Buffer.byteLength(content)} sha=${sha(content)} nlink=${nlink}${xattrs ? ` xattrs=${xattrs}` : ''}`;
const dir = (mode = '755', owner = '0:0') => `dir ${mode} ${owner}`;
const link = (target: string, nlink = 1) => `symlink 777 0:0 -> ${target} nlink=${nlink}`;

const EXPECTED: Array<[string, string]> = [
  ['/', dir()],
  ['/bin', link('usr/bin')],
  ['/lib', link('usr/lib')],
  ['/data', dir()],
  ['/data/notes', file('xattrs here\n', '644', '0:0', 1, `user.bin:${BINARY_XATTR.toString('hex')},user.comment:${Buffer.from('hello').toString('hex')}`)],
  [`/${bytes(UNICODE_NAME)}`, file('unicode\n')],
  [`/${LONG_NAME}`, file('long\n')],
  ['/data/a', file('three names\n', '644', '0:0', 3)],
  ['/data/b', file('three names\n', '644', '0:0', 3)],
  ['/data/c', file('three names\n', '644', '0:0', 3)],
  ['/dev', dir()],
  ['/dev/null', 'char 666 0:0 dev=1,3 nlink=1'],
  ['/dev/loop0', 'block 660 0:6 dev=7,0 nlink=1'],
  ['/etc', dir()],
  ['/etc/passwd', file('root:x:0:0::/root:/bin/sh\n', '600')],
  ['/etc/hostname', link('../proc/sys/kernel/hostname')],
  ['/etc/skel', dir()],
  ['/etc/skel/new', file('new skel\n')],
  ['/home', dir()],
  ['/home/user', dir('700', '1000:1000')],
  ['/home/user/notes', file('mine\n', '600', '1000:1000')],
  ['/opt', dir()],
  ['/run', dir()],
  ['/run/fifo', 'fifo 600 0:0 nlink=1'],
  ['/srv', dir()],
  ['/srv/empty', dir()],
  ['/srv/thing', file('now a file\n')],
  ['/tmp', dir('1777')],
  ['/usr', dir()],
  ['/usr/bin', dir()],
  ['/usr/bin/ping', file('ping binary\n', '755', '0:0', 2, `security.capability:${CAPABILITY.toString('hex')}`)],
  ['/usr/bin/ping6', file('ping binary\n', '755', '0:0', 2, `security.capability:${CAPABILITY.toString('hex')}`)],
  ['/usr/bin/su', file('su binary\n', '4755')],
  ['/usr/bin/wall', file('wall binary\n', '2755', '0:5')],
  ['/usr/lib', dir()],
  ['/usr/lib/extra.so', file('through the lib symlink\n')],
  ['/usr/lib/libfoo.so', link('libfoo.so.1', 2)],
  ['/usr/lib/libfoo.so.alias', link('libfoo.so.1', 2)],
  ['/usr/lib/libfoo.so.1', file('libfoo v2\n')],
  ['/var', dir()],
  ['/var/lib', dir()],
  ['/var/lib/x', file('second\n')],
];

const sorted = (m: Map<string, string>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));

describe('bakeImage', () => {
  let tmp: string;
  let image: TestImage;
  let result: BakeResult;
  let tree: Tree;
  const progress: Array<[number, number]> = [];

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'kiln-bake-engine-'));
    image = await fixtureImage();
    result = await bakeImage({
      manifest: image.manifest,
      configBytes: image.configBytes,
      openBlob: async (digest) => Readable.from([image.blobs.get(digest) as Buffer]),
      workDir: path.join(tmp, 'work'),
      outputDir: path.join(tmp, 'images', 'abc'),
      onProgress: (done, total) => progress.push([done, total]),
    });
    tree = ext4Tree(result.diskPath, path.join(tmp, 'scratch'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('writes an ext4 disk that e2fsck finds clean', () => {
    assert.equal(result.diskPath, path.join(tmp, 'images', 'abc', 'rootfs.ext4'));
    const check = fsck(result.diskPath);
    assert.ok(check.clean, check.output);
    assert.equal(statSync(result.diskPath).size, result.diskSizeBytes);
  });

  it('holds exactly the expected tree: names, types, modes, owners, contents, link targets, link counts, devices, xattrs', () => {
    assert.deepEqual(sorted(summarize(tree)), sorted(new Map(EXPECTED)));
  });

  it('keeps every mtime from the layers', () => {
    const wrong = [...tree].filter(([, n]) => n.mtime !== TEST_MTIME).map(([p, n]) => `${p}: ${n.mtime}`);
    assert.deepEqual(wrong, []);
  });

  it('shares one inode between hardlinks', () => {
    assert.equal(tree.get('/data/a')?.ino, tree.get('/data/c')?.ino);
    assert.equal(tree.get('/usr/bin/ping')?.ino, tree.get('/usr/bin/ping6')?.ino);
    assert.equal(tree.get('/usr/lib/libfoo.so')?.ino, tree.get('/usr/lib/libfoo.so.alias')?.ino);
  });

  it('reads back with debugfs cat, stat and ls -l', () => {
    assert.equal(debugfsCat(result.diskPath, '/var/lib/x').toString(), 'second\n');
    assert.equal(debugfsCat(result.diskPath, '/usr/lib/extra.so').toString(), 'through the lib symlink\n');
    const stat = run('debugfs', ['-R', 'stat /usr/bin/su', result.diskPath]).stdout.toString();
    assert.match(stat, /Type: regular\s+Mode:\s+04755/);
    const ls = run('debugfs', ['-R', 'ls -l /dev', result.diskPath]).stdout.toString();
    assert.match(ls, /20666 \(3\)\s+0\s+0\s+0\s+\S+ \S+ null/);
    assert.match(ls, /60660 \(4\)\s+0\s+6\s+0\s+\S+ \S+ loop0/);
  });

  it('writes config.json with the run config, layers and disk, naming no repo or tag', () => {
    const doc = JSON.parse(readFileSync(result.configPath, 'utf8'));
    assert.deepEqual(doc, {
      schemaVersion: 1,
      entrypoint: ['/usr/local/bin/entry.sh'],
      cmd: ['serve', '--port', '8080'],
      env: ['PATH=/usr/bin:/bin', 'MODE=test'],
      workingDir: '/srv',
      user: '1000:1000',
      exposedPorts: ['8080/tcp'],
      stopSignal: 'SIGTERM',
      labels: { 'org.example.kind': 'fixture' },
      os: 'linux',
      architecture: 'amd64',
      configDigest: image.manifest.config.digest,
      layers: image.manifest.layers.map((l) => l.digest),
      diffIds: JSON.parse(image.configBytes.toString()).rootfs.diff_ids,
      disk: { file: 'rootfs.ext4', format: 'ext4', sizeBytes: result.diskSizeBytes },
    });
    assert.equal(result.runConfig.workingDir, '/srv');
  });

  it('reports progress in compressed bytes up to the total', () => {
    const total = image.manifest.layers.reduce((s, l) => s + l.size, 0);
    assert.deepEqual(progress[0], [0, total]);
    assert.deepEqual(progress[progress.length - 1], [total, total]);
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i][0] >= progress[i - 1][0]);
  });

  it('leaves no temporary output behind', () => {
    assert.deepEqual(readdirSync(path.join(tmp, 'images')), ['abc']);
    assert.deepEqual(readdirSync(path.join(tmp, 'images', 'abc')).sort(), ['config.json', 'rootfs.ext4']);
    assert.deepEqual(readdirSync(path.join(tmp, 'work')), []);
  });
});

// Entry kinds the fixture does not reach: slow symlinks, xattr blocks, POSIX
// ACLs, wide device numbers, nanosecond times, big ids, hardlinked specials,
// a large directory, and a file with an extent tree (more than 4 extents).
describe('bakeImage: every kind of entry ext4 stores', () => {
  let tmp: string;
  let disk: string;
  let tree: Tree;
  const longTarget = `/${'t'.repeat(200)}`;
  const maxTarget = `/${'m/'.repeat(2046)}xy`; // 4095 bytes
  // user::rwx, user:1000:r-x, group::r-x, mask::r-x, other::r-x, in the xattr (VFS) form
  const acl = Buffer.from('02000000' + '01000700ffffffff' + '02000500e8030000' + '04000500ffffffff' + '10000500ffffffff' + '20000500ffffffff', 'hex');
  const bigValue = Buffer.alloc(2000, 0xab);
  const wide = Array.from({ length: 5000 }, (_, i) => `wide/entry-${String(i).padStart(5, '0')}-${'x'.repeat(i % 200)}`);
  const MiB = 1 << 20;
  const bigChunks = 520; // > 4 × 128 MiB: five extents, so a leaf block

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'kiln-bake-kinds-'));
    const entries: LayerEntry[] = [
      { name: 'links/', type: 'directory' },
      { name: 'links/slow', type: 'symlink', linkname: longTarget },
      { name: 'links/max', type: 'symlink', linkname: maxTarget },
      { name: 'links/slow2', type: 'link', linkname: 'links/slow' },
      { name: 'links/tagged', type: 'symlink', linkname: 'x', xattrs: { 'user.big': bigValue } },
      { name: 'shared/', type: 'directory', xattrs: { 'system.posix_acl_access': acl, 'system.posix_acl_default': acl } },
      { name: 'blocky', content: 'x', xattrs: { 'user.big': bigValue, 'security.selinux': 'system_u:object_r:bin_t:s0\0', 'trusted.t': '1' } },
      { name: 'dev/', type: 'directory' },
      { name: 'dev/nvme0n1p9', type: 'block-device', devmajor: 259, devminor: 0x12345, mode: 0o660 },
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'dev/null2', type: 'link', linkname: 'dev/null' },
      { name: 'dev/pipe', type: 'fifo' },
      { name: 'dev/pipe2', type: 'link', linkname: 'dev/pipe' },
      { name: 'owned', content: 'o', uid: 100000, gid: 70000 },
      ...wide.map((name): LayerEntry => ({ name, content: name.slice(-3) })),
    ];
    const tar = Buffer.concat([
      (await layerTar(entries)).subarray(0, -1024),
      paxHeader({ mtime: Buffer.from('1700000000.25') }),
      ustarHeader({ name: 'nanos', typeflag: '0', size: 0 }),
      ustarHeader({ name: 'big', typeflag: '0', size: bigChunks * MiB }),
    ]);
    const members = [gzipSync(tar), ...Array.from({ length: bigChunks }, (_, i) => gzipSync(Buffer.alloc(MiB, i % 251), { level: 1 })), gzipSync(Buffer.alloc(1024))];
    const diffId = createHash('sha256');
    diffId.update(tar);
    for (let i = 0; i < bigChunks; i++) diffId.update(Buffer.alloc(MiB, i % 251));
    diffId.update(Buffer.alloc(1024));
    const image = imageFromBlobs([{ blob: Buffer.concat(members), mediaType: OCI_LAYER_GZIP, diffId: `sha256:${diffId.digest('hex')}` }]);
    const result = await bakeImage({
      manifest: image.manifest,
      configBytes: image.configBytes,
      openBlob: async (digest) => Readable.from([image.blobs.get(digest) as Buffer]),
      workDir: path.join(tmp, 'work'),
      outputDir: path.join(tmp, 'out'),
    });
    disk = result.diskPath;
    tree = ext4Tree(disk, path.join(tmp, 'scan'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('is clean for e2fsck', () => {
    const check = fsck(disk);
    assert.ok(check.clean, check.output);
  });

  it('keeps slow symlinks (up to 4095 bytes), hardlinked ones, and a symlink with an xattr block', () => {
    assert.equal(tree.get('/links/slow')?.target, longTarget);
    assert.equal(tree.get('/links/max')?.target, maxTarget);
    assert.equal(tree.get('/links/slow2')?.ino, tree.get('/links/slow')?.ino);
    assert.equal(tree.get('/links/slow')?.nlink, 2);
    assert.equal(tree.get('/links/tagged')?.xattrs['user.big'], bigValue.toString('hex'));
  });

  it('keeps xattrs in the inode and in a block, and POSIX ACLs as the kernel reads them', () => {
    assert.deepEqual(tree.get('/blocky')?.xattrs, {
      'security.selinux': Buffer.from('system_u:object_r:bin_t:s0\0').toString('hex'),
      'trusted.t': Buffer.from('1').toString('hex'),
      'user.big': bigValue.toString('hex'),
    });
    assert.match(run('debugfs', ['-R', 'stat /blocky', disk]).stdout.toString(), /File ACL: [1-9]\d*/);
    // debugfs translates the disk form back, writing 0 where the kernel writes -1 for entries without an id.
    const asDebugfsReads = '02000000' + '0100070000000000' + '02000500e8030000' + '0400050000000000' + '1000050000000000' + '2000050000000000';
    assert.equal(tree.get('/shared')?.xattrs['system.posix_acl_access'], asDebugfsReads);
    assert.equal(tree.get('/shared')?.xattrs['system.posix_acl_default'], asDebugfsReads);
  });

  it('keeps wide device numbers, hardlinked devices and fifos, 32-bit ids and nanoseconds', () => {
    assert.deepEqual(tree.get('/dev/nvme0n1p9')?.rdev, [259, 0x12345]);
    assert.equal(tree.get('/dev/null2')?.ino, tree.get('/dev/null')?.ino);
    assert.deepEqual([tree.get('/dev/pipe2')?.ino, tree.get('/dev/pipe')?.nlink], [tree.get('/dev/pipe')?.ino, 2]);
    assert.deepEqual([tree.get('/owned')?.uid, tree.get('/owned')?.gid], [100000, 70000]);
    assert.match(run('debugfs', ['-R', 'stat /nanos', disk]).stdout.toString(), /mtime: 0x6553f100:3b9aca00/);
  });

  it('keeps 5,000 entries in one linear directory', () => {
    assert.equal([...tree.keys()].filter((p) => p.startsWith('/wide/')).length, wide.length);
    assert.equal(debugfsCat(disk, `/${wide[4999]}`).toString(), wide[4999].slice(-3));
  });

  it('maps a 520 MiB file through a leaf block, every MiB where it belongs', () => {
    assert.match(run('debugfs', ['-R', 'dump_extents /big', disk]).stdout.toString(), /Level Entries[\s\S]* 0\/ 1 +1\/ +1 [\s\S]* 1\/ 1 +5\/ +5 /);
    const content = debugfsCat(disk, '/big');
    assert.equal(content.length, bigChunks * MiB);
    for (let i = 0; i < bigChunks; i++) assert.equal(content[i * MiB + 12345], i % 251, `MiB ${i}`);
  });
});
