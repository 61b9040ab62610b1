import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { bakeCgroupOwnerPid } from './sandbox/cgroup.js';
import { scratchOwnerPid, sweepDeadWorkers } from './scratch-sweep.js';

describe('scratchOwnerPid', () => {
  const cases: Array<[string, number | null]> = [
    ['bake-42-1234', 1234],
    ['bake-0193ab-cd-77', 77],
    ['warm-1234-AbC123', 1234],
    ['bake-1234', null],
    ['warm-1234', null],
    ['warm-x-AbC123', null],
    ['build-7-abcdef', null],
    ['build-source-7', null],
    ['build-logs', null],
    ['bake-42-1234/..', null],
  ];
  for (const [name, pid] of cases) it(`${name} → ${pid}`, () => assert.equal(scratchOwnerPid(name), pid));
});

describe('bakeCgroupOwnerPid', () => {
  const cases: Array<[string, number | null]> = [
    ['kiln-bake-1234-1', 1234],
    ['kiln-bake-1234-', null],
    ['kiln-bake--1', null],
    ['other-1234-1', null],
  ];
  for (const [name, pid] of cases) it(`${name} → ${pid}`, () => assert.equal(bakeCgroupOwnerPid(name), pid));
});

describe('sweepDeadWorkers', () => {
  it("removes the entries of dead workers only, and leaves live workers' and builds' alone", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'kiln-sweep-'));
    try {
      for (const name of ['bake-1-100', 'warm-100-aaaaaa', 'bake-2-200', 'warm-200-bbbbbb', 'build-3-cccccc', `bake-4-${process.pid}`]) {
        await mkdir(path.join(root, name, 'result-x'), { recursive: true });
        await writeFile(path.join(root, name, 'result-x', 'disk'), 'partial');
      }
      const removed = await sweepDeadWorkers(root, { memoryRoot: path.join(root, 'no-cgroups'), pidsRoot: path.join(root, 'no-cgroups') }, (pid) => pid !== 100);
      assert.deepEqual(removed.sort(), ['bake-1-100', 'warm-100-aaaaaa']);
      assert.deepEqual((await readdir(root)).sort(), ['bake-2-200', `bake-4-${process.pid}`, 'build-3-cccccc', 'warm-200-bbbbbb'].sort());
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('is a no-op on a scratch root that does not exist yet', async () => {
    assert.deepEqual(await sweepDeadWorkers(path.join(os.tmpdir(), 'kiln-sweep-none', 'tmp'), { memoryRoot: '/nonexistent', pidsRoot: '/nonexistent' }, () => false), []);
  });
});
