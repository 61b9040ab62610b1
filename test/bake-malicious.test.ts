// Layers that try to write outside the rootfs: the bake fails or contains
// them, and nothing appears outside the job's directories.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { bakeImage, type BakeResult } from '../src/convert/bake.js';
import { BakeError } from '../src/convert/errors.js';
import { layerTar, makeImage, type LayerEntry } from '../src/convert/testing.js';
import { debugfsCat, ext4Tree, fsck } from './bake-helpers.js';

let root: string;
let sentinel: string;

beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kiln-malicious-'));
  sentinel = path.join(root, 'sentinel');
  await mkdir(sentinel);
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function bake(...layers: LayerEntry[][]): Promise<BakeResult> {
  const image = makeImage(await Promise.all(layers.map(async (l) => ({ tar: await layerTar(l), compression: 'gzip' as const }))));
  return bakeImage({
    manifest: image.manifest,
    configBytes: image.configBytes,
    openBlob: async (digest) => Readable.from([image.blobs.get(digest) as Buffer]),
    workDir: path.join(root, 'work'),
    outputDir: path.join(root, 'out', 'image'),
  });
}

/** Nothing outside work/ and out/: the sentinel stays empty and no new names appear. */
function assertContained(): void {
  assert.deepEqual(readdirSync(sentinel), []);
  assert.deepEqual(readdirSync(root).filter((n) => !['sentinel', 'work', 'out'].includes(n)), []);
  if (existsSync(path.join(root, 'work'))) assert.deepEqual(readdirSync(path.join(root, 'work')), [], 'no temporary result left');
}

const refused = (pattern: RegExp, code = 'UNSAFE_ENTRY') => (err: unknown) => {
  assert.ok(err instanceof BakeError, String(err));
  assert.equal(err.code, code, err.message);
  assert.match(err.message, /^layer \d+ \(sha256:[0-9a-f]{64}\): /);
  assert.match(err.message, pattern);
  return true;
};

const file = (name: string, content = 'pwned\n'): LayerEntry => ({ name, content });
const symlink = (name: string, linkname: string): LayerEntry => ({ name, type: 'symlink', linkname });
const hardlink = (name: string, linkname: string): LayerEntry => ({ name, type: 'link', linkname });
const climb = (target: string) => `${'../'.repeat(30)}${target.slice(1)}`;

describe('malicious layers', () => {
  for (const name of ['../escape', '../../../../../../../../tmp/escape', 'a/../../escape', './../escape']) {
    it(`refuses ${name}`, async () => {
      await assert.rejects(bake([file(name)]), refused(/outside the image root/));
      assertContained();
      assert.ok(!existsSync(path.join(root, 'out', 'image')), 'no output');
    });
  }

  it('contains absolute names inside the image', async () => {
    const result = await bake([file(`${sentinel}/abs`)]);
    assertContained();
    assert.equal(debugfsCat(result.diskPath, `${sentinel}/abs`).toString(), 'pwned\n');
  });

  it('contains writes through symlinks that point outside (relative, absolute, chained, as directories)', async () => {
    const result = await bake(
      [symlink('up', climb(sentinel)), symlink('abs', sentinel), symlink('chain', 'hop'), symlink('hop', 'abs'), symlink('d', sentinel)],
      [file('up/one'), file('abs/two'), file('chain/three'), file('abs/new/deeper/four'), { name: 'd/', type: 'directory' }, file('d/five')],
    );
    assertContained();
    assert.ok(fsck(result.diskPath).clean);
    const tree = ext4Tree(result.diskPath, path.join(root, 'work', 'scan'));
    for (const name of ['one', 'two', 'three', 'new/deeper/four']) assert.equal(tree.get(`${sentinel}/${name}`)?.type, 'file', name);
    // An explicit directory entry replaces the symlink instead of following it.
    assert.equal(tree.get('/d')?.type, 'dir');
    assert.equal(tree.get('/d/five')?.type, 'file');
    assert.equal(tree.get('/up')?.type, 'symlink');
  });

  it('replaces a symlink to a host file instead of writing through it', async () => {
    const result = await bake([symlink('passwd', `${sentinel}/passwd`)], [file('passwd', 'image passwd\n')]);
    assertContained();
    assert.equal(debugfsCat(result.diskPath, '/passwd').toString(), 'image passwd\n');
  });

  it('refuses a hardlink to the host /etc/shadow, by absolute path, by climbing, and through a symlink', async () => {
    const before = existsSync('/etc/shadow') ? createHash('sha256').update(readFileSync('/etc/shadow')).digest('hex') : null;
    await assert.rejects(bake([hardlink('shadow', '/etc/shadow')]), refused(/"\/etc\/shadow", which is not in the image/));
    await assert.rejects(bake([hardlink('shadow', '../../../../../../etc/shadow')]), refused(/outside the image root/));
    await assert.rejects(bake([symlink('hostetc', '/etc')], [hardlink('shadow', 'hostetc/shadow')]), refused(/not in the image/));
    await assert.rejects(bake([symlink('etc', '/etc')], [hardlink('shadow', 'etc/shadow')]), refused(/too many levels/, 'LIMIT_EXCEEDED'));
    await assert.rejects(bake([symlink('up', climb('/etc'))], [hardlink('shadow', 'up/shadow')]), refused(/not in the image/));
    assertContained();
    const after = existsSync('/etc/shadow') ? createHash('sha256').update(readFileSync('/etc/shadow')).digest('hex') : null;
    assert.equal(after, before);
  });

  it('links to an escaping symlink itself, which stays a harmless symlink in the image', async () => {
    const result = await bake([symlink('esc', '/etc/shadow'), hardlink('h', 'esc')]);
    assertContained();
    const tree = ext4Tree(result.diskPath, path.join(root, 'work', 'scan'));
    assert.equal(tree.get('/h')?.type, 'symlink');
    assert.equal(tree.get('/h')?.target, '/etc/shadow');
    assert.equal(tree.get('/h')?.nlink, 2);
  });

  it('refuses symlink loops', async () => {
    await assert.rejects(bake([symlink('a', 'b'), symlink('b', 'a'), file('a/x')]), refused(/too many levels of symbolic links/, 'LIMIT_EXCEEDED'));
    assertContained();
  });
});

// The review's attack on the old engine: debugfs read its script in 8191-byte
// pieces and ran a piece starting with "!" through the shell, so a name long
// enough to put "!cmd" at a piece boundary ran cmd on the host. The names here
// are built to do exactly that against the old script format; the engine now
// refuses such names and runs no external tool on image data at all.
describe('names that carried shell commands into debugfs', () => {
  const PIECE = 8191; // fgets(buf, BUFSIZ = 8192) returns at most 8191 characters
  let shims: string;
  let calls: string;
  let savedPath: string | undefined;

  beforeEach(async () => {
    // Shims for the e2fsprogs tools that record any call; the real tool still runs.
    shims = await mkdtemp(path.join(os.tmpdir(), 'kiln-shims-'));
    calls = path.join(shims, 'calls');
    for (const tool of ['debugfs', 'mkfs.ext4', 'mke2fs']) {
      const real = ['/sbin', '/usr/sbin', '/usr/bin', '/bin'].map((d) => path.join(d, tool)).find((p) => existsSync(p));
      await writeFile(path.join(shims, tool), `#!/bin/sh\necho ${tool} >> '${calls}'\n${real ? `exec '${real}' "$@"` : 'exit 1'}\n`, { mode: 0o755 });
    }
    savedPath = process.env.PATH;
    process.env.PATH = `${shims}:${savedPath ?? ''}`;
  });
  afterEach(async () => {
    process.env.PATH = savedPath;
    await rm(shims, { recursive: true, force: true });
  });

  /** Bakes, then checks before anything else runs: no canary, no e2fsprogs tool started. */
  async function bakeAttack(canary: string, ...layers: LayerEntry[][]): Promise<BakeResult | BakeError> {
    const outcome = await bake(...layers).catch((err: unknown) => {
      if (!(err instanceof BakeError)) throw err;
      return err;
    });
    assert.equal(existsSync(canary), false, 'the command in the name ran');
    assert.equal(existsSync(calls), false, `e2fsprogs ran during the bake: ${existsSync(calls) ? readFileSync(calls, 'utf8') : ''}`);
    process.env.PATH = savedPath;
    return outcome;
  }

  it('an xattr name carrying !touch is refused by name, and runs nothing', async () => {
    const canary = path.join(root, 'canary-xattr');
    // Old line: ea_set -f "<workDir>/debugfs/xattr-0" "/victim" "<name>"
    const prefix = `ea_set -f "${path.join(root, 'work', 'debugfs', 'xattr-0')}" "/victim" "`;
    const name = `user.${'a'.repeat(PIECE - prefix.length - 'user.'.length)}!touch ${canary};#`;
    const outcome = await bakeAttack(canary, [{ name: 'victim', content: 'x', xattrs: { [name]: 'v' } }]);
    assert.ok(outcome instanceof BakeError);
    assert.equal(outcome.code, 'UNSUPPORTED_ENTRY');
    assert.match(outcome.message, /^layer 1 \(sha256:[0-9a-f]{64}\): entry "victim" has an extended attribute name of \d+ bytes .*at most 255/);
    assert.ok(!outcome.message.includes(root), 'no host path in the message');
    assertContained();
  });

  it('a FIFO name carrying !touch is refused by name, and runs nothing', async () => {
    const canary = path.join(root, 'canary-fifo');
    // Old line: mknod "<name>" p. A name holds no "/", so the shell finds the canary's path in the environment.
    process.env.KILN_TEST_CANARY = canary;
    const name = `${'f'.repeat(PIECE - 'mknod "'.length)}!touch $KILN_TEST_CANARY;#`;
    const outcome = await bakeAttack(canary, [{ name, type: 'fifo', mode: 0o644 }]).finally(() => delete process.env.KILN_TEST_CANARY);
    assert.ok(outcome instanceof BakeError);
    assert.equal(outcome.code, 'UNSUPPORTED_ENTRY');
    assert.match(outcome.message, /^layer 1 \(sha256:[0-9a-f]{64}\): entry "f{160}"… \(\d+ bytes\) is \d+ bytes long; Linux paths hold at most 4095$/);
    assert.ok(!outcome.message.includes(root), 'no host path in the message');
    assertContained();
  });

  it('names that ext4 can hold keep their "!" and quotes as plain bytes', async () => {
    const canary = path.join(root, 'canary-short');
    const odd = `!touch ${canary} "!touch ${canary}"`;
    const outcome = await bakeAttack(canary, [
      { name: 'dev/', type: 'directory' },
      { name: `dev/${odd.replaceAll('/', '_')}`, type: 'fifo', mode: 0o600 },
      { name: 'victim', content: 'x', xattrs: { [`user.!touch;${canary}`]: '!touch' } },
    ]);
    assert.ok(!(outcome instanceof BakeError), String(outcome));
    const tree = ext4Tree(outcome.diskPath, path.join(root, 'work', 'scan'));
    assert.equal(tree.get(`/dev/${odd.replaceAll('/', '_')}`)?.type, 'fifo');
    assert.equal(tree.get('/victim')?.xattrs[`user.!touch;${canary}`], Buffer.from('!touch').toString('hex'));
    assert.equal(existsSync(canary), false);
  });
});
