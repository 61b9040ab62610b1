// bakeImage end to end on a three-layer image that uses every entry kind:
// the disk is checked with e2fsck and read back with debugfs.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { bakeImage, type BakeResult } from '../src/convert/bake.js';
import { TEST_MTIME, type TestImage } from '../src/convert/testing.js';
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
      source: { repo: 'acme/app', tag: 'v1' },
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

  it('writes config.json with the run config, layers, disk and source', () => {
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
      source: { repo: 'acme/app', tag: 'v1' },
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
