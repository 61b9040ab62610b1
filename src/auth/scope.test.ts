import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  accessAllows,
  formatScope,
  formatScopes,
  intersectScopes,
  mergeAccess,
  parseScope,
  parseScopeParams,
  ScopeError,
  type AccessEntry,
} from './scope.js';

describe('parseScope', () => {
  const good: [string, AccessEntry][] = [
    ['repository:acme/app:pull', { type: 'repository', name: 'acme/app', actions: ['pull'] }],
    ['repository:acme/app:pull,push', { type: 'repository', name: 'acme/app', actions: ['pull', 'push'] }],
    ['repository:acme/app:pull,pull', { type: 'repository', name: 'acme/app', actions: ['pull'] }],
    ['repository:acme/app:', { type: 'repository', name: 'acme/app', actions: [] }],
    ['repository:acme/app:push,', { type: 'repository', name: 'acme/app', actions: ['push'] }],
    ['registry:catalog:*', { type: 'registry', name: 'catalog', actions: ['*'] }],
    ['repository:localhost:5000/acme/app:pull', { type: 'repository', name: 'localhost:5000/acme/app', actions: ['pull'] }],
    ['repository(plugin):acme/app:pull', { type: 'repository(plugin)', name: 'acme/app', actions: ['pull'] }],
  ];
  for (const [text, expected] of good) {
    it(`parses ${text}`, () => assert.deepEqual(parseScope(text), expected));
  }
  const bad = ['', 'repository', 'repository:acme/app', ':acme/app:pull', 'repository::pull', 'Repo:acme/app:pull', 'repository:acme/app:PULL'];
  for (const text of bad) {
    it(`refuses "${text}"`, () => assert.throws(() => parseScope(text), ScopeError));
  }
});

describe('parseScopeParams', () => {
  it('reads repeated parameters and space-separated lists alike', () => {
    assert.deepEqual(parseScopeParams(['repository:a/b:pull', 'repository:c/d:push registry:catalog:*', '']), [
      { type: 'repository', name: 'a/b', actions: ['pull'] },
      { type: 'repository', name: 'c/d', actions: ['push'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
  });
  it('reads no parameter as no scope', () => assert.deepEqual(parseScopeParams([]), []));
});

describe('formatScope', () => {
  it('round-trips', () => {
    for (const text of ['repository:acme/app:pull,push', 'registry:catalog:*', 'repository:localhost:5000/x:pull']) {
      assert.equal(formatScope(parseScope(text)), text);
    }
  });
  it('joins several with spaces', () => {
    assert.equal(
      formatScopes([
        { type: 'repository', name: 'a/b', actions: ['pull'] },
        { type: 'registry', name: 'catalog', actions: ['*'] },
      ]),
      'repository:a/b:pull registry:catalog:*',
    );
  });
});

describe('mergeAccess', () => {
  it('folds entries for the same resource and keeps the others apart', () => {
    assert.deepEqual(
      mergeAccess([
        { type: 'repository', name: 'a/b', actions: ['pull'] },
        { type: 'registry', name: 'a/b', actions: ['*'] },
        { type: 'repository', name: 'a/b', actions: ['push', 'pull'] },
      ]),
      [
        { type: 'repository', name: 'a/b', actions: ['pull', 'push'] },
        { type: 'registry', name: 'a/b', actions: ['*'] },
      ],
    );
  });
});

describe('intersectScopes', () => {
  const allowed = (type: string, name: string) => (type === 'repository' && name === 'a/b' ? ['pull', 'push'] : []);
  const cases: [string, AccessEntry[], AccessEntry[]][] = [
    ['keeps the asked and allowed', [{ type: 'repository', name: 'a/b', actions: ['pull'] }], [{ type: 'repository', name: 'a/b', actions: ['pull'] }]],
    ['cuts the not allowed', [{ type: 'repository', name: 'a/b', actions: ['pull', 'delete'] }], [{ type: 'repository', name: 'a/b', actions: ['pull'] }]],
    ['gives all allowed for *', [{ type: 'repository', name: 'a/b', actions: ['*'] }], [{ type: 'repository', name: 'a/b', actions: ['pull', 'push'] }]],
    ['drops empty grants', [{ type: 'repository', name: 'c/d', actions: ['pull'] }], []],
    ['drops scopes asking for nothing', [{ type: 'repository', name: 'a/b', actions: [] }], []],
    ['grants nothing when nothing is asked', [], []],
  ];
  for (const [name, requested, granted] of cases) {
    it(name, () => assert.deepEqual(intersectScopes(requested, allowed), granted));
  }
});

describe('accessAllows', () => {
  const access: AccessEntry[] = [
    { type: 'repository', name: 'a/b', actions: ['pull'] },
    { type: 'registry', name: 'catalog', actions: ['*'] },
  ];
  const cases: [string, string, string, boolean][] = [
    ['repository', 'a/b', 'pull', true],
    ['repository', 'a/b', 'push', false],
    ['repository', 'a/bc', 'pull', false],
    ['registry', 'a/b', 'pull', false],
    ['registry', 'catalog', '*', true],
    ['registry', 'catalog', 'list', true],
  ];
  for (const [type, name, action, expected] of cases) {
    it(`${type}:${name}:${action} → ${expected}`, () => assert.equal(accessAllows(access, type, name, action), expected));
  }
});
