import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { planBuild } from './plan.js';
import { buildProvenance, findLockfiles, LOCKFILE_NAMES, pinnedDigest, sha256File } from './provenance.js';

const sha = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
const D = 'sha256:' + 'ab'.repeat(32);

let root = '';
before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kiln-prov-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('findLockfiles', () => {
  it('finds every kind of lockfile at any depth, hashed, sorted', async () => {
    const tree = path.join(root, 'tree');
    const files: Record<string, string> = {
      'package-lock.json': '{"lockfileVersion":3}',
      'web/yarn.lock': 'yarn',
      'web/pnpm-lock.yaml': 'pnpm',
      'py/requirements.txt': 'flask==3.0.0',
      'py/poetry.lock': 'poetry',
      'py/Pipfile.lock': 'pipenv',
      'svc/go.sum': 'go',
      'rs/Cargo.lock': 'cargo',
      'README.md': 'not a lockfile',
      'node_modules/dep/package-lock.json': 'a dependency\'s own',
      '.git/yarn.lock': 'vcs data',
    };
    for (const [rel, body] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(tree, rel)), { recursive: true });
      await writeFile(path.join(tree, rel), body);
    }
    await symlink('/etc', path.join(tree, 'outside')); // not followed
    await symlink('package-lock.json', path.join(tree, 'go.sum')); // a symlink, not a lockfile of its own

    const found = await findLockfiles(tree);
    const want = Object.entries(files)
      .filter(([rel]) => LOCKFILE_NAMES.includes(path.basename(rel)) && !rel.startsWith('node_modules') && !rel.startsWith('.git'))
      .map(([rel, body]) => ({ path: rel, sha256: sha(body) }))
      .sort((a, b) => (a.path < b.path ? -1 : 1));
    assert.equal(found.length, 8);
    assert.deepEqual(found, want);
  });

  it('finds nothing in a tree without lockfiles', async () => {
    const tree = path.join(root, 'empty');
    await mkdir(tree);
    assert.deepEqual(await findLockfiles(tree), []);
  });
});

describe('sha256File', () => {
  it('hashes the file\'s bytes', async () => {
    const file = path.join(root, 'f');
    await writeFile(file, 'hello');
    assert.equal(await sha256File(file), sha('hello'));
  });
});

describe('pinnedDigest', () => {
  const table: Array<[string, string | null]> = [
    [`node@${D}`, D],
    [`127.0.0.1:5000/library/base:latest@${D}`, D],
    ['127.0.0.1:5000/library/base:latest', null],
    ['node@sha256:short', null],
  ];
  for (const [ref, want] of table) it(ref, () => assert.equal(pinnedDigest(ref), want));
});

describe('buildProvenance', () => {
  it('records source, lockfiles, base digests, builder and cache refs', () => {
    const plan = planBuild({ registry: 'r:1', insecure: true, buildId: 'b1', tenantScope: 'tenant-abc', globalKey: 'node20', admin: false });
    const provenance = buildProvenance({
      sourceSha256: sha('src'),
      lockfiles: [{ path: 'package-lock.json', sha256: sha('lock') }],
      baseImageRefs: ['r:1/library/base', `node@${D}`, 'unresolvable:1'],
      resolvedDigests: new Map([['r:1/library/base', 'sha256:' + '01'.repeat(32)]]),
      builder: { name: 'buildkit', version: 'v0.20.2' },
      plan,
    });
    assert.deepEqual(provenance, {
      source: { sha256: sha('src') },
      lockfiles: [{ path: 'package-lock.json', sha256: sha('lock') }],
      baseImages: [
        { ref: 'r:1/library/base', digest: 'sha256:' + '01'.repeat(32) },
        { ref: `node@${D}`, digest: D },
        { ref: 'unresolvable:1', digest: null },
      ],
      builder: { name: 'buildkit', version: 'v0.20.2' },
      cache: { imported: ['r:1/cache/global/node20', 'r:1/cache/tenant-abc'], exported: 'r:1/cache/tenant-abc' },
    });
  });
});
