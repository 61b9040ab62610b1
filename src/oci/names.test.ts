import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_NAME_LENGTH, explainInvalidName, isValidRepoName, isValidTag } from './names.js';

describe('repository names (distribution-spec grammar)', () => {
  const valid = [
    'a',
    'busybox',
    'library/base',
    'cache/global/node',
    'cache/tenant-abc/legacy',
    'builds/0f8e2c1a-job',
    'a/b/c/d/e/f',
    'my.repo',
    'my_repo',
    'my__repo',
    'my-repo',
    'my---repo',
    'a1/b2.c3_d4__e5-f6',
    'blobs/manifests/uploads', // keywords are fine as components
    '0',
    'x'.repeat(MAX_NAME_LENGTH),
  ];
  for (const name of valid) {
    it(`accepts ${name.length > 40 ? `${name.slice(0, 10)}… (${name.length} chars)` : name}`, () => assert.equal(isValidRepoName(name), true));
  }

  const invalid: [string, RegExp][] = [
    ['', /slash-separated/],
    ['Uppercase', /lowercase/],
    ['library/Base', /lowercase/],
    ['..', /"\." or "\.\."/],
    ['a/../b', /"\." or "\.\."/],
    ['../etc', /"\." or "\.\."/],
    ['a/./b', /"\." or "\.\."/],
    ['.', /"\." or "\.\."/],
    ['a..b', /slash-separated/],
    ['/leading', /slash-separated/],
    ['trailing/', /slash-separated/],
    ['double//slash', /slash-separated/],
    ['-leading-dash', /slash-separated/],
    ['trailing-', /slash-separated/],
    ['.hidden', /slash-separated/],
    ['a___b', /slash-separated/],
    ['a_.b', /slash-separated/],
    ['space here', /slash-separated/],
    ['tab\there', /slash-separated/],
    ['with:colon', /slash-separated/],
    ['with@at', /slash-separated/],
    ['back\\slash', /slash-separated/],
    ['nul\0byte', /slash-separated/],
    ['ünïcode', /slash-separated/],
    ['x'.repeat(MAX_NAME_LENGTH + 1), /longer than/],
  ];
  for (const [name, why] of invalid) {
    it(`refuses ${JSON.stringify(name.length > 40 ? `${name.slice(0, 10)}… (${name.length} chars)` : name)}`, () => {
      assert.equal(isValidRepoName(name), false);
      assert.match(explainInvalidName(name), why);
    });
  }
});

describe('tags', () => {
  const valid = ['latest', 'v1', 'v1.2.3', '1.0', '_private', 'UPPER', 'a-b_c.d', 'x'.repeat(128), '0'];
  for (const tag of valid) it(`accepts ${tag.length > 40 ? `${tag.length} chars` : tag}`, () => assert.equal(isValidTag(tag), true));

  const invalid = ['', '.dot-first', '-dash-first', 'x'.repeat(129), 'has:colon', 'has/slash', 'sp ace', 'sha256:' + 'a'.repeat(64), 'ünï', 'tab\t'];
  for (const tag of invalid) it(`refuses ${JSON.stringify(tag.length > 40 ? `${tag.length} chars` : tag)}`, () => assert.equal(isValidTag(tag), false));
});
