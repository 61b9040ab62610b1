// A worker lowers every one of its threads, not only the main one: on Linux a
// nice value is per thread, and V8's compiler and GC threads exist before any
// of our code runs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { repoRoot } from './helpers/paths.js';

const PRIORITY = path.join(repoRoot, 'dist', 'src', 'jobs', 'priority.js');

describe('lowerAllThreads', () => {
  it('puts every thread of the process at the nice value, the ones started before it too', { skip: !existsSync('/proc/self/task') && 'needs /proc' }, () => {
    // The child lists its threads' nice values (field 19 of /proc/<pid>/task/<tid>/stat) before and after.
    const script = `
      import { readdirSync, readFileSync } from 'node:fs';
      import { lowerAllThreads } from ${JSON.stringify(pathToFileURL(PRIORITY).href)};
      const nices = () => readdirSync('/proc/self/task').map((t) => Number(readFileSync('/proc/self/task/' + t + '/stat', 'utf8').split(') ')[1].split(' ')[16]));
      const before = nices();
      lowerAllThreads(7);
      console.log(JSON.stringify({ before, after: nices() }));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const { before, after } = JSON.parse(run.stdout) as { before: number[]; after: number[] };
    assert.ok(before.length > 1, 'node runs more than one thread');
    assert.ok(before.some((n) => n !== 7), 'the threads did not start at 7');
    assert.deepEqual(after, after.map(() => 7), `every thread at nice 7: ${after.join(', ')}`);
  });
});
