import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { bakeCgroupOwnerPid } from './sandbox/cgroup.js';
import { bakeScratchName, scratchOwner, sweepDeadWorkers, warmScratchPrefix } from './scratch-sweep.js';

describe('scratchOwner', () => {
  const cases: Array<[string, { host: string; pid: number } | null]> = [
    ['bake-42-node1-1234', { host: 'node1', pid: 1234 }],
    ['bake-42-node-12.example-77', { host: 'node-12.example', pid: 77 }],
    ['warm-node1-1234-AbC123', { host: 'node1', pid: 1234 }],
    ['warm-node-7-1234-AbC123', { host: 'node-7', pid: 1234 }],
    ['bake-42-1234', null],
    ['bake-x-node1-1234', null],
    ['warm-node1-1234', null],
    ['warm-node1-x-AbC123', null],
    ['build-7-abcdef', null],
    ['build-source-7', null],
    ['build-logs', null],
  ];
  for (const [name, owner] of cases) it(`${name} → ${JSON.stringify(owner)}`, () => assert.deepEqual(scratchOwner(name), owner));

  it('reads back the names workers make', () => {
    assert.deepEqual(scratchOwner(bakeScratchName(9, 'h-1', 55)), { host: 'h-1', pid: 55 });
    assert.deepEqual(scratchOwner(`${warmScratchPrefix('h-1', 55)}q1W2e3`), { host: 'h-1', pid: 55 });
  });
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
  it("removes what dead workers of this host left, and leaves live workers', other hosts' and builds' alone", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'kiln-sweep-'));
    try {
      const names = ['bake-1-here-100', 'warm-here-100-aaaaaa', 'bake-2-here-200', 'warm-here-200-bbbbbb', 'bake-5-there-100', 'warm-there-100-cccccc', 'build-3-cccccc', `bake-4-here-${process.pid}`];
      for (const name of names) {
        await mkdir(path.join(root, name, 'result-x'), { recursive: true });
        await writeFile(path.join(root, name, 'result-x', 'disk'), 'partial');
      }
      const noCgroups = { memoryRoot: path.join(root, 'no-cgroups'), pidsRoot: path.join(root, 'no-cgroups') };
      const removed = await sweepDeadWorkers(root, noCgroups, (pid) => pid !== 100, 'here');
      assert.deepEqual(removed.sort(), ['bake-1-here-100', 'warm-here-100-aaaaaa']);
      assert.deepEqual((await readdir(root)).sort(), names.filter((n) => !removed.includes(n)).sort());
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('is a no-op on a scratch root that does not exist yet', async () => {
    assert.deepEqual(await sweepDeadWorkers(path.join(os.tmpdir(), 'kiln-sweep-none', 'tmp'), { memoryRoot: '/nonexistent', pidsRoot: '/nonexistent' }, () => false), []);
  });
});
