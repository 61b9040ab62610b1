// The upload path's minor collections (src/store/fs/young-gc.ts): one every
// 16 MiB of body when the process runs with --expose-gc (as `kiln serve`
// does), nothing otherwise.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { repoRoot } from './helpers/paths.js';

const MODULE = pathToFileURL(path.join(repoRoot, 'dist', 'src', 'store', 'fs', 'young-gc.js')).href;

/** Runs `bodyBytesReceived` for `chunks` chunks of `size` bytes in a fresh node and returns how many minor GCs it saw. */
function minorGcs(flags: string[], chunks: number, size: number): number {
  const script = `
    import { PerformanceObserver, constants } from 'node:perf_hooks';
    import { bodyBytesReceived } from ${JSON.stringify(MODULE)};
    let minor = 0;
    const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++; });
    obs.observe({ entryTypes: ['gc'] });
    for (let i = 0; i < ${chunks}; i++) bodyBytesReceived(${size});
    setTimeout(() => { obs.disconnect(); console.log(minor); }, 50);`;
  const run = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return Number(run.stdout.trim());
}

describe('young-gc', () => {
  it('with --expose-gc, a minor collection per 16 MiB of body counted', () => {
    // 64 chunks of 1 MiB: four collections, and nothing in the loop allocates enough to cause one itself.
    assert.ok(minorGcs(['--expose-gc'], 64, 1024 * 1024) >= 4);
  });

  it('without --expose-gc it does nothing', () => {
    assert.equal(minorGcs([], 64, 1024 * 1024), 0);
  });
});
