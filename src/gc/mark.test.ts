import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { GcImageNameRow } from '../store/gc-store.js';
import { imageNameLives } from './mark.js';

const IMAGE = `sha256:${'1'.repeat(64)}`;
const INDEX = `sha256:${'2'.repeat(64)}`;
const OTHER = `sha256:${'3'.repeat(64)}`;

test('imageNameLives: a tag name lives while its tag points where it does, a digest name while its manifest is in the repo', () => {
  const name = (tag: string, indexDigest = ''): GcImageNameRow => ({ repo: 'acme/app', tag, digest: IMAGE, indexDigest, updatedAt: 0 });
  const cases: [string, GcImageNameRow, number | undefined, [string, string][], string[], boolean][] = [
    ['tag names the image', name('v1'), 1, [['1\u0000v1', IMAGE]], [], true],
    ['tag names the index it was picked from', name('v1', INDEX), 1, [['1\u0000v1', INDEX]], [], true],
    ['tag moved to another manifest', name('v1'), 1, [['1\u0000v1', OTHER]], [], false],
    ['tag of an index moved to its child', name('v1', INDEX), 1, [['1\u0000v1', IMAGE]], [], false],
    ['tag deleted', name('v1'), 1, [], [`1\u0000${IMAGE}`], false],
    ['same tag in another repo only', name('v1'), 1, [['2\u0000v1', IMAGE]], [], false],
    ['digest name, manifest in the repo', name(''), 1, [], [`1\u0000${IMAGE}`], true],
    ['digest name of an index, index in the repo', name('', INDEX), 1, [], [`1\u0000${INDEX}`], true],
    ['digest name of an index, only the child left', name('', INDEX), 1, [], [`1\u0000${IMAGE}`], false],
    ['digest name, manifest gone', name(''), 1, [], [], false],
    ['repo gone', name('v1'), undefined, [['1\u0000v1', IMAGE]], [], false],
  ];
  for (const [label, n, repoId, tags, manifests, want] of cases) {
    assert.equal(imageNameLives(n, repoId, new Map(tags), new Map(manifests.map((m) => [m, true]))), want, label);
  }
});
