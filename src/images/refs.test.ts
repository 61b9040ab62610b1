import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseImageRef } from './refs.js';

const HEX = 'a'.repeat(64);

test('parseImageRef: accepted forms', () => {
  const cases: [string, ReturnType<typeof parseImageRef>][] = [
    ['library/base:latest', { kind: 'tag', repo: 'library/base', tag: 'latest' }],
    ['library/base', { kind: 'tag', repo: 'library/base', tag: 'latest' }],
    ['cache/global/node:v1.2', { kind: 'tag', repo: 'cache/global/node', tag: 'v1.2' }],
    [`app@sha256:${HEX}`, { kind: 'repo-digest', repo: 'app', digest: `sha256:${HEX}` }],
    [`sha256:${HEX}`, { kind: 'digest', digest: `sha256:${HEX}` }],
  ];
  for (const [input, want] of cases) assert.deepEqual(parseImageRef(input), want, input);
});

test('parseImageRef: refused forms say why', () => {
  const cases: [string, RegExp][] = [
    ['Upper/case:1', /lowercase/],
    ['a/../b:1', /"\.\."|components/],
    ['app:bad tag', /not a valid tag/],
    ['app@sha256:1234', /64 lowercase hex/],
  ];
  for (const [input, message] of cases) assert.throws(() => parseImageRef(input), message, input);
});
