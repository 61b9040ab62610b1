import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TarFormatError, TarReader, parsePax, type TarEntry } from './tar-reader.js';
import { layerTar, paxHeader, ustarHeader } from './testing.js';

interface Read {
  entry: Omit<TarEntry, 'xattrs'> & { xattrs: Record<string, string> };
  content: string;
}

/** Feeds `tar` to a reader in pieces of `step` bytes; returns the entries with their content. */
function read(tar: Buffer, step = tar.length): Read[] {
  const out: Read[] = [];
  let current: Read | null = null;
  const reader = new TarReader({
    entry(e) {
      current = { entry: { ...e, xattrs: Object.fromEntries([...e.xattrs].map(([k, v]) => [k, v.toString('hex')])) }, content: '' };
      out.push(current);
    },
    data(chunk) {
      assert.ok(current);
      current.content += chunk.toString('latin1');
    },
    entryEnd() {
      current = null;
    },
  });
  for (let off = 0; off < tar.length; off += step) reader.write(tar.subarray(off, off + step));
  reader.end();
  return out;
}

const summary = (r: Read[]) => r.map(({ entry: e, content }) => [e.type, e.name, e.mode.toString(8), e.uid, e.gid, e.linkname, content]);

describe('TarReader', () => {
  it('reads every entry type with metadata, at any chunking', async () => {
    const tar = await layerTar([
      { name: 'dir/', type: 'directory', mode: 0o1777, uid: 1000, gid: 1001 },
      { name: 'dir/file', content: 'hello\n', mode: 0o4755 },
      { name: 'dir/link', type: 'symlink', linkname: '../target' },
      { name: 'dir/hard', type: 'link', linkname: 'dir/file' },
      { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: 'dev/loop0', type: 'block-device', mode: 0o660, devmajor: 7, devminor: 0 },
      { name: 'run/fifo', type: 'fifo', mode: 0o600 },
      { name: 'big', content: Buffer.alloc(5000, 'z') },
    ]);
    const expected = [
      ['directory', 'dir/', '1777', 1000, 1001, '', ''],
      ['file', 'dir/file', '4755', 0, 0, '', 'hello\n'],
      ['symlink', 'dir/link', '777', 0, 0, '../target', ''],
      ['hardlink', 'dir/hard', '644', 0, 0, 'dir/file', ''],
      ['char-device', 'dev/null', '666', 0, 0, '', ''],
      ['block-device', 'dev/loop0', '660', 0, 0, '', ''],
      ['fifo', 'run/fifo', '600', 0, 0, '', ''],
      ['file', 'big', '644', 0, 0, '', 'z'.repeat(5000)],
    ];
    for (const step of [tar.length, 1, 7, 511, 512, 513, 4096]) assert.deepEqual(summary(read(tar, step)), expected, `step ${step}`);
    const devs = read(tar).filter((r) => r.entry.type.endsWith('device')).map((r) => [r.entry.devmajor, r.entry.devminor]);
    assert.deepEqual(devs, [[1, 3], [7, 0]]);
    assert.equal(read(tar)[0].entry.mtime, 1700000000);
  });

  it('keeps binary xattr values and applies pax path, uid, gid and mtime', async () => {
    const cap = Buffer.from('0100000200040080000000000000000000000000', 'hex');
    const tar = Buffer.concat([
      paxHeader({
        path: Buffer.from(`${'long/'.repeat(40)}name`),
        uid: Buffer.from('3000000'),
        gid: Buffer.from('4000000'),
        mtime: Buffer.from('1700000000.5'),
        'SCHILY.xattr.security.capability': cap,
        'SCHILY.xattr.user.empty': Buffer.alloc(0),
        'LIBARCHIVE.xattr.user.a%20b': Buffer.from(Buffer.from([0xff, 0]).toString('base64')),
      }),
      await layerTar([{ name: 'short', content: 'x' }]),
    ]);
    const [r] = read(tar, 100);
    assert.equal(r.entry.name, `${'long/'.repeat(40)}name`);
    assert.equal(r.entry.uid, 3000000);
    assert.equal(r.entry.gid, 4000000);
    assert.equal(r.entry.mtime, 1700000000.5);
    assert.deepEqual(r.entry.xattrs, { 'security.capability': cap.toString('hex'), 'user.empty': '', 'user.a b': 'ff00' });
  });

  it('reads GNU long names and long link names, and long ustar prefixes', async () => {
    const longName = `${'d'.repeat(150)}/${'f'.repeat(120)}`;
    const gnuLong = (flag: string, value: string) => {
      const body = Buffer.from(`${value}\0`, 'latin1');
      return Buffer.concat([ustarHeader({ name: '././@LongLink', typeflag: flag, size: body.length }), body, Buffer.alloc(512 - body.length)]);
    };
    const tar = Buffer.concat([
      gnuLong('L', longName),
      gnuLong('K', 'target/'.repeat(30)),
      ustarHeader({ name: 'truncated', typeflag: '2', linkname: 'truncated' }),
      await layerTar([{ name: `${'p'.repeat(120)}/ok`, content: '1' }]),
    ]);
    const r = read(tar);
    assert.deepEqual(r.map((x) => [x.entry.type, x.entry.name, x.entry.linkname]), [
      ['symlink', longName, 'target/'.repeat(30)],
      ['file', `${'p'.repeat(120)}/ok`, ''],
    ]);
  });

  it('keeps non-UTF-8 names as bytes', () => {
    const name = Buffer.from([0x63, 0x61, 0x66, 0xe9]).toString('latin1'); // "café" in Latin-1
    const tar = Buffer.concat([ustarHeader({ name, typeflag: '0' }), Buffer.alloc(1024)]);
    assert.deepEqual(Buffer.from(read(tar)[0].entry.name, 'latin1'), Buffer.from([0x63, 0x61, 0x66, 0xe9]));
  });

  it('reads base-256 numbers', () => {
    const size = Buffer.alloc(12);
    size[0] = 0x80;
    size.writeUInt32BE(3, 8);
    const tar = Buffer.concat([ustarHeader({ name: 'f', typeflag: '0', sizeField: size }), Buffer.from('abc'), Buffer.alloc(509 + 1024)]);
    assert.equal(read(tar)[0].content, 'abc');
  });

  it('ignores content sizes on header-only types, as Go does', () => {
    const tar = Buffer.concat([ustarHeader({ name: 'l', typeflag: '2', size: 100, linkname: 'x' }), ustarHeader({ name: 'f', typeflag: '0' }), Buffer.alloc(1024)]);
    assert.deepEqual(read(tar).map((r) => r.entry.name), ['l', 'f']);
  });

  it('treats a pre-POSIX name with a trailing slash as a directory', () => {
    const tar = Buffer.concat([ustarHeader({ name: 'old/', typeflag: '\0' }), Buffer.alloc(1024)]);
    assert.equal(read(tar)[0].entry.type, 'directory');
  });

  it('tolerates missing end-of-archive blocks and a missing final padding (umoci writes both)', async () => {
    const tar = await layerTar([{ name: 'a', content: 'abc' }]);
    assert.equal(read(tar.subarray(0, 512 + 3)).length, 1);
    assert.equal(read(tar.subarray(0, 1024)).length, 1);
  });

  it('ignores what follows the end-of-archive block', async () => {
    const tar = Buffer.concat([await layerTar([{ name: 'a', content: 'abc' }]), Buffer.from('garbage')]);
    assert.equal(read(tar).length, 1);
  });

  const corrupt: Array<[string, () => Promise<Buffer>, RegExp]> = [
    ['truncated content', async () => (await layerTar([{ name: 'a', content: 'abcdef' }])).subarray(0, 514), /ends inside the content of "a"/],
    ['truncated header', async () => (await layerTar([{ name: 'a' }])).subarray(0, 100), /ends inside a header/],
    ['bad checksum', async () => { const t = await layerTar([{ name: 'a' }]); t[0] ^= 1; return t; }, /checksum/],
    ['not a tar', async () => Buffer.alloc(1024, 0x41), /checksum|invalid/],
    ['unsupported type', async () => Buffer.concat([ustarHeader({ name: 'x', typeflag: 'Z' }), Buffer.alloc(1024)]), /unsupported tar entry type "Z"/],
    ['sparse file', async () => Buffer.concat([ustarHeader({ name: 'x', typeflag: 'S' }), Buffer.alloc(1024)]), /sparse/],
    ['pax header with no entry', async () => paxHeader({ path: Buffer.from('x') }), /extended header with no entry/],
    ['malformed pax', async () => Buffer.concat([ustarHeader({ name: 'p', typeflag: 'x', size: 5 }), Buffer.from('99 a='), Buffer.alloc(507 + 1024)]), /malformed pax/],
  ];
  for (const [name, make, pattern] of corrupt) {
    it(`rejects ${name}`, async () => {
      const tar = await make();
      assert.throws(() => read(tar), (err: Error) => err instanceof TarFormatError && pattern.test(err.message));
    });
  }
});

describe('parsePax', () => {
  it('parses records with multi-digit lengths and = in values', () => {
    const records = parsePax(Buffer.from('12 path=a=b\n16 linkpath=xyz\n'));
    assert.deepEqual([...records].map(([k, v]) => [k, v.toString()]), [['path', 'a=b'], ['linkpath', 'xyz']]);
  });
});
