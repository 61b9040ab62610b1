import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { PID_SCOPE } from './pid-scope.js';
import { bakeCgroupOwner } from './sandbox/cgroup.js';
import { bakeScratchName, scratchOwner, sweepDeadWorkers, warmScratchPrefix } from './scratch-sweep.js';

describe('scratchOwner', () => {
  const cases: Array<[string, { scope: string; pid: number } | null]> = [
    ['bake-42-node1_4026531836-1234', { scope: 'node1_4026531836', pid: 1234 }],
    ['bake-42-node-12.example_7-77', { scope: 'node-12.example_7', pid: 77 }],
    ['warm-node1_4026531836-1234-AbC123', { scope: 'node1_4026531836', pid: 1234 }],
    ['warm-node-7_1-1234-AbC123', { scope: 'node-7_1', pid: 1234 }],
    ['bake-42-1234', null],
    ['bake-x-node1_1-1234', null],
    ['warm-node1_1-1234', null],
    ['warm-node1_1-x-AbC123', null],
    ['build-7-abcdef', null],
    ['build-source-7', null],
    ['build-logs', null],
  ];
  for (const [name, owner] of cases) it(`${name} → ${JSON.stringify(owner)}`, () => assert.deepEqual(scratchOwner(name), owner));

  it('reads back the names workers make', () => {
    assert.deepEqual(scratchOwner(bakeScratchName(9, 'h-1_5', 55)), { scope: 'h-1_5', pid: 55 });
    assert.deepEqual(scratchOwner(`${warmScratchPrefix('h-1_5', 55)}q1W2e3`), { scope: 'h-1_5', pid: 55 });
    assert.deepEqual(scratchOwner(bakeScratchName(9)), { scope: PID_SCOPE, pid: process.pid });
  });
});

describe('bakeCgroupOwner', () => {
  const cases: Array<[string, { scope: string; pid: number } | null]> = [
    ['kiln-bake-node1_4026531836-1234-1', { scope: 'node1_4026531836', pid: 1234 }],
    ['kiln-bake-node-2_9-1234-17', { scope: 'node-2_9', pid: 1234 }],
    ['kiln-bake-1234-1', null],
    ['kiln-bake-node1_1-1234-', null],
    ['other-node1_1-1234-1', null],
  ];
  for (const [name, owner] of cases) it(`${name} → ${JSON.stringify(owner)}`, () => assert.deepEqual(bakeCgroupOwner(name), owner));
});

describe('sweepDeadWorkers', () => {
  it("removes what dead workers of this pid scope left, and leaves live workers', other hosts' or containers' and builds' alone", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'kiln-sweep-'));
    try {
      const names = ['bake-1-here_1-100', 'warm-here_1-100-aaaaaa', 'bake-2-here_1-200', 'warm-here_1-200-bbbbbb', 'bake-5-there_1-100', 'warm-here_2-100-cccccc', 'build-3-cccccc', `bake-4-here_1-${process.pid}`];
      for (const name of names) {
        await mkdir(path.join(root, name, 'result-x'), { recursive: true });
        await writeFile(path.join(root, name, 'result-x', 'disk'), 'partial');
      }
      const noCgroups = { memoryRoot: path.join(root, 'no-cgroups'), pidsRoot: path.join(root, 'no-cgroups') };
      const removed = await sweepDeadWorkers(root, noCgroups, (pid) => pid !== 100, 'here_1');
      assert.deepEqual(removed.sort(), ['bake-1-here_1-100', 'warm-here_1-100-aaaaaa']);
      assert.deepEqual((await readdir(root)).sort(), names.filter((n) => !removed.includes(n)).sort());
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('is a no-op on a scratch root that does not exist yet', async () => {
    assert.deepEqual(await sweepDeadWorkers(path.join(os.tmpdir(), 'kiln-sweep-none', 'tmp'), { memoryRoot: '/nonexistent', pidsRoot: '/nonexistent' }, () => false), []);
  });
});
