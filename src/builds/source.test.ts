import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import tarStream, { type Header } from 'tar-stream';
import { BuildError } from './errors.js';
import { extractSource, resolveDockerfile, resolveLinkTarget, safeEntryPath } from './source.js';

type Item = Partial<Header> & { name: string; body?: string };

/** A tar archive in memory, built with tar-stream's packer. */
async function tarOf(items: Item[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const { body, ...header } of items) {
    await new Promise<void>((resolve, reject) => pack.entry(header, body ?? '', (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

let scratch = '';
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-source-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

let counter = 0;
async function freshDir(): Promise<{ outer: string; tree: string }> {
  const outer = path.join(scratch, `case-${++counter}`);
  const tree = path.join(outer, 'tree');
  await mkdir(tree, { recursive: true });
  return { outer, tree };
}

const rejectsWith = (message: RegExp) => (err: unknown) => err instanceof BuildError && err.kind === 'invalid-input' && message.test(err.message);

describe('safeEntryPath', () => {
  const table: Array<[string, string | null]> = [
    ['a/b.txt', 'a/b.txt'],
    ['./a//b/', 'a/b'],
    ['./', ''],
    ['.', ''],
    ['../x', null],
    ['a/../../x', null],
    ['a/../b', null],
    ['/etc/passwd', null],
    ['a\0b', null],
  ];
  for (const [name, want] of table) it(JSON.stringify(name), () => assert.equal(safeEntryPath(name), want));
});

describe('resolveLinkTarget', () => {
  // Links already in the tree (tree-relative path → target); anything else is a directory or file.
  const tree: Record<string, string> = {
    root: '.',
    up: '..',
    'a/b/c/d/s': '../../../..',
    'x/in': '../a/b',
    loop1: 'loop2',
    loop2: 'loop1',
    abs: '/etc',
    'p/q': '..',
  };
  const readLink = async (rel: string) => tree[rel] ?? null;
  const table: Array<[string, string, string | null]> = [
    ['a/link', 'target', 'a/target'],
    ['a/link', '../b/target', 'b/target'],
    ['a/b/link', '../../top', 'top'],
    ['link', '.', ''],
    ['link', '..', null],
    ['a/link', '../../etc/passwd', null],
    ['link', '/etc/passwd', null],
    ['link', '', null],
    // The chain: s resolves to the tree's root, so s/../../.. climbs three levels above it.
    ['esc', 'a/b/c/d/s/../../..', null],
    ['esc', 'a/b/c/d/s', ''],
    ['esc', 'a/b/c/d/s/a', 'a'],
    ['deep/er/l', '../../root/..', null],
    ['l', 'up', null],
    ['l', 'up/x', null],
    ['l', 'x/in/../../..', null],
    ['l', 'x/in/c', 'a/b/c'],
    ['l', 'loop1', null],
    ['l', 'abs/passwd', null],
    ['p/l', 'q/../..', null],
    ['l', 'root/root/root/x', 'x'],
  ];
  for (const [link, target, want] of table) {
    it(`${link} → ${target}`, async () => assert.equal(await resolveLinkTarget(link, target, readLink), want));
  }
});

describe('extractSource', () => {
  const mtime = new Date('2024-05-01T12:00:00Z');
  const goodTree: Item[] = [
    { name: './', type: 'directory', mode: 0o755 },
    { name: 'app/', type: 'directory', mode: 0o750, mtime },
    { name: 'app/main.js', type: 'file', mode: 0o644, body: 'console.log(1)\n', mtime },
    { name: 'app/run.sh', type: 'file', mode: 0o4755, body: '#!/bin/sh\n' },
    { name: 'deep/er/file.txt', type: 'file', body: 'implicit parents' },
    { name: 'app/current', type: 'symlink', linkname: 'main.js' },
    { name: 'app/copy.js', type: 'link', linkname: 'app/main.js' },
    { name: 'Dockerfile', type: 'file', body: 'FROM scratch\n' },
  ];

  for (const compressed of [false, true]) {
    it(`extracts files, dirs, symlinks and hard links (${compressed ? 'tar.gz' : 'tar'})`, async () => {
      const tar = await tarOf(goodTree);
      const archive = compressed ? gzipSync(tar) : tar;
      const { tree } = await freshDir();
      const result = await extractSource(Readable.from([archive]), tree);
      assert.equal(result.sha256, `sha256:${createHash('sha256').update(archive).digest('hex')}`);
      assert.equal(result.files, 5);
      assert.equal(await readFile(path.join(tree, 'app/main.js'), 'utf8'), 'console.log(1)\n');
      assert.equal(await readFile(path.join(tree, 'deep/er/file.txt'), 'utf8'), 'implicit parents');
      assert.equal(await readlink(path.join(tree, 'app/current')), 'main.js');
      assert.equal(await readFile(path.join(tree, 'app/copy.js'), 'utf8'), 'console.log(1)\n');
      assert.equal((await lstat(path.join(tree, 'app/run.sh'))).mode & 0o7777, 0o755, 'setuid dropped');
      assert.equal((await lstat(path.join(tree, 'app'))).mode & 0o777, 0o750);
      assert.equal((await lstat(path.join(tree, 'app/main.js'))).mtime.getTime(), mtime.getTime());
      assert.equal((await lstat(path.join(tree, 'app'))).mtime.getTime(), mtime.getTime(), 'directory mtime survives its children');
    });
  }

  it('streams input that arrives one byte at a time', async () => {
    const archive = gzipSync(await tarOf([{ name: 'f', type: 'file', body: 'x' }]));
    const { tree } = await freshDir();
    await extractSource(Readable.from([...archive].map((b) => Buffer.from([b]))), tree);
    assert.equal(await readFile(path.join(tree, 'f'), 'utf8'), 'x');
  });

  it('a later entry replaces an earlier one without following it', async () => {
    const { outer, tree } = await freshDir();
    await writeFile(path.join(outer, 'victim'), 'untouched');
    const tar = await tarOf([
      { name: 'a', type: 'symlink', linkname: 'b' },
      { name: 'b', type: 'file', body: 'b' },
      { name: 'a', type: 'file', body: 'replaced' },
    ]);
    await extractSource(Readable.from([tar]), tree);
    assert.equal(await readFile(path.join(tree, 'a'), 'utf8'), 'replaced');
    assert.equal(await readFile(path.join(tree, 'b'), 'utf8'), 'b');
  });

  const hostile: Array<{ name: string; items: Item[]; message: RegExp }> = [
    { name: 'a ../ path', items: [{ name: '../evil', type: 'file', body: 'x' }], message: /"\.\.\/evil" points outside/ },
    { name: 'a nested ../ path', items: [{ name: 'a/../../evil', type: 'file', body: 'x' }], message: /points outside/ },
    { name: 'an absolute path', items: [{ name: '/tmp/evil', type: 'file', body: 'x' }], message: /points outside/ },
    { name: 'a symlink climbing out', items: [{ name: 'up', type: 'symlink', linkname: '../..' }], message: /symlink "up" → "\.\.\/\.\." points outside/ },
    { name: 'an absolute symlink', items: [{ name: 'etc', type: 'symlink', linkname: '/etc' }], message: /points outside/ },
    {
      name: 'a write through a symlinked directory',
      items: [
        { name: 'sub/', type: 'directory' },
        { name: 'd', type: 'symlink', linkname: 'sub' },
        { name: 'd/x', type: 'file', body: 'x' },
      ],
      message: /"d\/x" lies under "d", which is not a directory/,
    },
    {
      // The two-link escape: each link alone looks inside when read as a string.
      name: 'a chain of two links that leaves the tree',
      items: [
        { name: 'a/b/c/d/', type: 'directory' },
        { name: 'a/b/c/d/s', type: 'symlink', linkname: '../../../..' },
        { name: 'esc', type: 'symlink', linkname: 'a/b/c/d/s/../../..' },
      ],
      message: /symlink "esc" → "a\/b\/c\/d\/s\/\.\.\/\.\.\/\.\." points outside/,
    },
    {
      name: 'the chain in the other order (the far link first, dangling)',
      items: [
        { name: 'esc', type: 'symlink', linkname: 'a/b/c/d/s/../../..' },
        { name: 'a/b/c/d/', type: 'directory' },
        { name: 'a/b/c/d/s', type: 'symlink', linkname: '../../../..' },
      ],
      message: /symlink "esc" → "a\/b\/c\/d\/s\/\.\.\/\.\.\/\.\." leads outside the source tree through other links/,
    },
    {
      name: 'a directory an earlier link walks through, replaced by a link',
      items: [
        { name: 'p/q/', type: 'directory' },
        { name: 'p/l', type: 'symlink', linkname: 'q/../..' },
        { name: 'p/q', type: 'symlink', linkname: '..' },
      ],
      message: /symlink "p\/l" → "q\/\.\.\/\.\." leads outside/,
    },
    {
      name: 'a link through a link to the root',
      items: [
        { name: 'r', type: 'symlink', linkname: '.' },
        { name: 'esc', type: 'symlink', linkname: 'r/r/r/..' },
      ],
      message: /symlink "esc" → "r\/r\/r\/\.\." points outside/,
    },
    {
      name: 'a loop of links',
      items: [
        { name: 'l1', type: 'symlink', linkname: 'l2' },
        { name: 'l2', type: 'symlink', linkname: 'l1' },
      ],
      message: /symlink "l1" → "l2" leads outside/,
    },
    {
      name: 'a link to an absolute link',
      items: [
        { name: 'etc', type: 'symlink', linkname: 'x' },
        { name: 'x', type: 'symlink', linkname: '/etc' },
      ],
      message: /symlink "x" → "\/etc" points outside/,
    },
    { name: 'a hard link through a symlinked directory', items: [
      { name: 'real/', type: 'directory' },
      { name: 'real/f', type: 'file', body: 'x' },
      { name: 'd', type: 'symlink', linkname: 'real' },
      { name: 'h', type: 'link', linkname: 'd/f' },
    ], message: /"d\/f" lies under "d", which is not a directory/ },
    { name: 'a hard link to outside', items: [{ name: 'h', type: 'link', linkname: '../../etc/passwd' }], message: /hard link "h" .* points outside/ },
    { name: 'a hard link to nothing extracted', items: [{ name: 'h', type: 'link', linkname: 'nope' }], message: /does not name a file earlier/ },
    { name: 'a FIFO', items: [{ name: 'p', type: 'fifo' }], message: /"p" is a fifo; only files, directories and symlinks/ },
    { name: 'a device', items: [{ name: 'null', type: 'character-device', devmajor: 1, devminor: 3 }], message: /is a character-device/ },
  ];
  for (const row of hostile) {
    it(`refuses ${row.name} and writes nothing outside`, async () => {
      const { outer, tree } = await freshDir();
      await assert.rejects(extractSource(Readable.from([await tarOf(row.items)]), tree), rejectsWith(row.message));
      assert.deepEqual(await readdir(outer), ['tree']);
    });
  }

  it('keeps links that stay inside through other links', async () => {
    const { tree } = await freshDir();
    const tar = await tarOf([
      { name: 'a/b/c/d/', type: 'directory' },
      { name: 'a/b/c/d/s', type: 'symlink', linkname: '../../../..' },
      { name: 'fine', type: 'symlink', linkname: 'a/b/c/d/s/a/b' },
      { name: 'a/b/file', type: 'file', body: 'x' },
    ]);
    await extractSource(Readable.from([tar]), tree);
    assert.equal(await readFile(path.join(tree, 'fine', 'file'), 'utf8'), 'x');
  });

  it('caps the extracted size', async () => {
    const tar = await tarOf([
      { name: 'a', type: 'file', body: 'x'.repeat(600) },
      { name: 'b', type: 'file', body: 'x'.repeat(600) },
    ]);
    const { tree } = await freshDir();
    await assert.rejects(
      extractSource(Readable.from([tar]), tree, { maxBytes: 1000, maxEntries: 10 }),
      rejectsWith(/larger than 1000 bytes once extracted \(at "b"\)/),
    );
  });

  it('caps the number of entries', async () => {
    const tar = await tarOf(Array.from({ length: 4 }, (_, i) => ({ name: `f${i}`, type: 'file' as const, body: '' })));
    const { tree } = await freshDir();
    await assert.rejects(extractSource(Readable.from([tar]), tree, { maxBytes: 1000, maxEntries: 3 }), rejectsWith(/more than 3 entries/));
  });

  it('does not blame the archive for a failure to write', async () => {
    const { outer } = await freshDir();
    const tar = await tarOf([{ name: 'f', type: 'file', body: 'x' }]);
    await assert.rejects(extractSource(Readable.from([tar]), path.join(outer, 'missing')), { code: 'ENOENT' });
  });

  it('says so when the upload is not an archive', async () => {
    const { tree } = await freshDir();
    await assert.rejects(extractSource(Readable.from([Buffer.from('hello, this is not a tar file '.repeat(40))]), tree), rejectsWith(/not a readable tar or tar.gz/));
    await assert.rejects(extractSource(Readable.from([Buffer.from([0x1f, 0x8b, 1, 2, 3])]), tree), rejectsWith(/not a readable tar or tar.gz/));
    await assert.rejects(extractSource(Readable.from([]), tree), rejectsWith(/source archive is empty/));
  });
});

describe('resolveDockerfile', () => {
  it('writes given text outside the context', async () => {
    const { outer, tree } = await freshDir();
    await writeFile(path.join(tree, 'Dockerfile'), 'FROM ignored\n');
    const file = await resolveDockerfile({ contextDir: tree, workDir: outer, dockerfileText: 'FROM given\n' });
    assert.equal(file, path.join(outer, 'dockerfile', 'Dockerfile'));
    assert.equal(await readFile(file, 'utf8'), 'FROM given\n');
  });

  it('takes the source\'s Dockerfile, else its Containerfile', async () => {
    const { outer, tree } = await freshDir();
    await writeFile(path.join(tree, 'Containerfile'), 'FROM c\n');
    assert.equal(await resolveDockerfile({ contextDir: tree, workDir: outer, dockerfileText: '  ' }), path.join(tree, 'Containerfile'));
    await writeFile(path.join(tree, 'Dockerfile'), 'FROM d\n');
    assert.equal(await resolveDockerfile({ contextDir: tree, workDir: outer }), path.join(tree, 'Dockerfile'));
  });

  it('refuses a symlinked Dockerfile', async () => {
    const { outer, tree } = await freshDir();
    await symlink('/etc/hostname', path.join(tree, 'Dockerfile'));
    await assert.rejects(resolveDockerfile({ contextDir: tree, workDir: outer }), rejectsWith(/Dockerfile must be a regular file/));
  });

  it('says what to do when there is neither', async () => {
    const { outer, tree } = await freshDir();
    await assert.rejects(
      resolveDockerfile({ contextDir: tree, workDir: outer, dockerfileText: null }),
      rejectsWith(/no Dockerfile at its top level and no dockerfile text was sent/),
    );
  });
});
