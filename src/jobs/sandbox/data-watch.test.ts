import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dataBytes, dataLimitBytes, OUT_OF_DATA } from './data-watch.js';

describe('data segment', () => {
  it('reads VmData from /proc/self/status', () => {
    assert.equal(dataBytes('Name:\tnode\nVmData:\t   48604 kB\nVmStk:\t  132 kB\n'), 48604 * 1024);
    assert.equal(dataBytes('Name:\tnode\n'), 0);
  });

  it('reads the soft RLIMIT_DATA from /proc/self/limits', () => {
    const header = 'Limit                     Soft Limit           Hard Limit           Units     \n';
    assert.equal(dataLimitBytes(`${header}Max data size             134217728            134217728            bytes     \n`), 134217728);
    assert.equal(dataLimitBytes(`${header}Max data size             unlimited            unlimited            bytes     \n`), null);
    assert.equal(dataLimitBytes(header), null);
  });

  it('says it in words the worker reads as running out of memory', () => {
    assert.match(OUT_OF_DATA, /^Cannot allocate memory/);
  });
});
