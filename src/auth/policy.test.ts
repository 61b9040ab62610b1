import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Action, Principal } from './authorizer.js';
import { allowedActions, buildTokenAccess, classifyRepo, grantAccess, isBaseImageRepo, visibleRepos, type OwnerOfBuild } from './policy.js';
import { NO_PUBLIC_REPOS, parsePublicRepos } from './public-repos.js';
import { tenantNameProblem } from './tenant.js';
import { tenantScope } from './tenant.js';

const ACME_CACHE = `cache/${tenantScope('acme')}`;
const BETA_CACHE = `cache/${tenantScope('beta')}`;

const owners: Record<string, string> = { 'b-acme': 'acme', 'b-beta': 'beta', 'b-admin': 'acme' };
const ownerOfBuild: OwnerOfBuild = (id) => owners[id] ?? null;

const callers: Record<string, Principal> = {
  'tenant acme': { subject: 'acme', role: 'tenant', tenant: 'acme' },
  admin: { subject: 'admin', role: 'admin', tenant: null },
  'admin of acme': { subject: 'admin', role: 'admin', tenant: 'acme' },
  anonymous: { subject: 'anonymous', role: 'anonymous', tenant: null },
  'tenant build (acme, key node20)': {
    subject: 'build:b-acme', role: 'build', tenant: 'acme', buildId: 'b-acme', adminBuild: false, globalCacheKey: 'node20',
  },
  'tenant build (acme, no key)': {
    subject: 'build:b-acme', role: 'build', tenant: 'acme', buildId: 'b-acme', adminBuild: false, globalCacheKey: null,
  },
  'admin build (acme, key node20)': {
    subject: 'build:b-admin', role: 'build', tenant: 'acme', buildId: 'b-admin', adminBuild: true, globalCacheKey: 'node20',
  },
  'admin build (no tenant, no key)': {
    subject: 'build:b-admin', role: 'build', tenant: null, buildId: 'b-admin', adminBuild: true, globalCacheKey: null,
  },
  'tenant without a tenant name': { subject: 'x', role: 'tenant', tenant: null },
};

const repos = [
  'acme/app',
  'acme/team/app',
  'beta/app',
  ACME_CACHE,
  BETA_CACHE,
  'cache/global/node20',
  'cache/global/python3',
  'cache/global/node20/extra',
  'builds/b-acme',
  'builds/b-beta',
  'builds/b-admin',
  'builds/b-unknown',
  'alpine',
  'acme',
  'cache',
  'cache/global',
  'cache/acme',
  `${ACME_CACHE}/extra`,
  'builds/b-acme/extra',
  'builds',
  'library/base',
  'library/team/node',
  'library',
] as const;

const P = 'pull';
const PP = 'pull,push';
const PD = 'pull,delete';
const ALL = 'pull,push,delete';
const NONE = '';

// Expected actions per caller and repo: the table, spelled out.
const table: Record<string, Record<(typeof repos)[number], string>> = {
  'tenant acme': {
    'acme/app': ALL, 'acme/team/app': ALL, 'beta/app': NONE,
    [ACME_CACHE]: PP, [BETA_CACHE]: NONE,
    'cache/global/node20': P, 'cache/global/python3': P, 'cache/global/node20/extra': P,
    'builds/b-acme': PD, 'builds/b-beta': NONE, 'builds/b-admin': PD, 'builds/b-unknown': NONE,
    alpine: NONE, acme: NONE, cache: NONE, 'cache/global': NONE, 'cache/acme': NONE, [`${ACME_CACHE}/extra`]: NONE,
    'builds/b-acme/extra': NONE, builds: NONE,
    'library/base': P, 'library/team/node': P, library: NONE,
  },
  admin: Object.fromEntries(repos.map((r) => [r, ALL])) as Record<(typeof repos)[number], string>,
  'admin of acme': Object.fromEntries(repos.map((r) => [r, ALL])) as Record<(typeof repos)[number], string>,
  anonymous: Object.fromEntries(repos.map((r) => [r, NONE])) as Record<(typeof repos)[number], string>,
  'tenant build (acme, key node20)': {
    'acme/app': NONE, 'acme/team/app': NONE, 'beta/app': NONE,
    [ACME_CACHE]: PP, [BETA_CACHE]: NONE,
    'cache/global/node20': P, 'cache/global/python3': P, 'cache/global/node20/extra': P,
    'builds/b-acme': PP, 'builds/b-beta': NONE, 'builds/b-admin': NONE, 'builds/b-unknown': NONE,
    alpine: NONE, acme: NONE, cache: NONE, 'cache/global': NONE, 'cache/acme': NONE, [`${ACME_CACHE}/extra`]: NONE,
    'builds/b-acme/extra': NONE, builds: NONE,
    'library/base': NONE, 'library/team/node': NONE, library: NONE,
  },
  'tenant build (acme, no key)': {
    'acme/app': NONE, 'acme/team/app': NONE, 'beta/app': NONE,
    [ACME_CACHE]: PP, [BETA_CACHE]: NONE,
    'cache/global/node20': P, 'cache/global/python3': P, 'cache/global/node20/extra': P,
    'builds/b-acme': PP, 'builds/b-beta': NONE, 'builds/b-admin': NONE, 'builds/b-unknown': NONE,
    alpine: NONE, acme: NONE, cache: NONE, 'cache/global': NONE, 'cache/acme': NONE, [`${ACME_CACHE}/extra`]: NONE,
    'builds/b-acme/extra': NONE, builds: NONE,
    'library/base': NONE, 'library/team/node': NONE, library: NONE,
  },
  'admin build (acme, key node20)': {
    'acme/app': NONE, 'acme/team/app': NONE, 'beta/app': NONE,
    [ACME_CACHE]: NONE, [BETA_CACHE]: NONE,
    'cache/global/node20': PP, 'cache/global/python3': P, 'cache/global/node20/extra': P,
    'builds/b-acme': NONE, 'builds/b-beta': NONE, 'builds/b-admin': PP, 'builds/b-unknown': NONE,
    alpine: NONE, acme: NONE, cache: NONE, 'cache/global': NONE, 'cache/acme': NONE, [`${ACME_CACHE}/extra`]: NONE,
    'builds/b-acme/extra': NONE, builds: NONE,
    'library/base': NONE, 'library/team/node': NONE, library: NONE,
  },
  'admin build (no tenant, no key)': {
    'acme/app': NONE, 'acme/team/app': NONE, 'beta/app': NONE,
    [ACME_CACHE]: NONE, [BETA_CACHE]: NONE,
    'cache/global/node20': P, 'cache/global/python3': P, 'cache/global/node20/extra': P,
    'builds/b-acme': NONE, 'builds/b-beta': NONE, 'builds/b-admin': PP, 'builds/b-unknown': NONE,
    alpine: NONE, acme: NONE, cache: NONE, 'cache/global': NONE, 'cache/acme': NONE, [`${ACME_CACHE}/extra`]: NONE,
    'builds/b-acme/extra': NONE, builds: NONE,
    'library/base': NONE, 'library/team/node': NONE, library: NONE,
  },
  'tenant without a tenant name': Object.fromEntries(repos.map((r) => [r, NONE])) as Record<(typeof repos)[number], string>,
};

describe('allowedActions: caller × repo × action', () => {
  for (const [callerName, principal] of Object.entries(callers)) {
    for (const repo of repos) {
      const expected = table[callerName][repo];
      for (const action of ['pull', 'push', 'delete'] as Action[]) {
        const allow = expected.split(',').includes(action);
        it(`${callerName} ${allow ? 'may' : 'may not'} ${action} ${repo}`, () => {
          assert.equal(allowedActions(principal, repo, { ownerOfBuild }).includes(action), allow);
        });
      }
    }
  }
});

describe('allowedActions details', () => {
  it('answers in the order pull, push, delete', () => {
    assert.deepEqual(allowedActions(callers['tenant acme'], 'acme/app'), ['pull', 'push', 'delete']);
  });
  it('knows no builds by default, so tenants get nothing on builds/*', () => {
    assert.deepEqual(allowedActions(callers['tenant acme'], 'builds/b-acme'), []);
  });
  it('does not let a tenant reach another tenant by a name that merely starts the same', () => {
    const ac: Principal = { subject: 'ac', role: 'tenant', tenant: 'ac' };
    assert.deepEqual(allowedActions(ac, 'acme/app'), []);
  });
  it('gives a tenant literally named like a reserved namespace nothing there', () => {
    const cache: Principal = { subject: 'cache', role: 'tenant', tenant: 'cache' };
    assert.deepEqual(allowedActions(cache, 'cache/global/node20'), ['pull']);
    assert.deepEqual(allowedActions(cache, 'cache/anything/app'), []);
    const builds: Principal = { subject: 'builds', role: 'tenant', tenant: 'builds' };
    assert.deepEqual(allowedActions(builds, 'builds/x/y'), []);
  });
});

describe('classifyRepo', () => {
  const cases: [string, ReturnType<typeof classifyRepo>][] = [
    ['acme/app', { kind: 'tenant', tenant: 'acme' }],
    ['cache/tenant-0123456789abcdef', { kind: 'tenant-cache', scope: 'tenant-0123456789abcdef' }],
    ['cache/global/node20', { kind: 'global-cache', key: 'node20' }],
    ['cache/global/a/b', { kind: 'global-cache', key: 'a/b' }],
    ['builds/abc', { kind: 'build', buildId: 'abc' }],
    ['alpine', { kind: 'other' }],
    ['cache/global', { kind: 'other' }],
    ['cache/x/y', { kind: 'other' }],
    ['builds/a/b', { kind: 'other' }],
  ];
  for (const [repo, expected] of cases) {
    it(repo, () => assert.deepEqual(classifyRepo(repo), expected));
  }
});

describe('grantAccess', () => {
  const acme = callers['tenant acme'];
  const cases: { name: string; principal: Principal; requested: { type: string; name: string; actions: string[] }[]; granted: unknown }[] = [
    {
      name: 'keeps what was asked and allowed',
      principal: acme,
      requested: [{ type: 'repository', name: 'acme/app', actions: ['pull', 'push'] }],
      granted: [{ type: 'repository', name: 'acme/app', actions: ['pull', 'push'] }],
    },
    {
      name: 'never more than asked',
      principal: acme,
      requested: [{ type: 'repository', name: 'acme/app', actions: ['pull'] }],
      granted: [{ type: 'repository', name: 'acme/app', actions: ['pull'] }],
    },
    {
      name: 'cuts what the policy refuses',
      principal: acme,
      requested: [{ type: 'repository', name: 'cache/global/node20', actions: ['pull', 'push'] }],
      granted: [{ type: 'repository', name: 'cache/global/node20', actions: ['pull'] }],
    },
    {
      name: 'drops resources left with nothing',
      principal: acme,
      requested: [
        { type: 'repository', name: 'beta/app', actions: ['pull'] },
        { type: 'repository', name: 'acme/app', actions: ['delete'] },
      ],
      granted: [{ type: 'repository', name: 'acme/app', actions: ['delete'] }],
    },
    {
      name: 'expands * to what the policy allows',
      principal: acme,
      requested: [{ type: 'repository', name: ACME_CACHE, actions: ['*'] }],
      granted: [{ type: 'repository', name: ACME_CACHE, actions: ['pull', 'push'] }],
    },
    {
      name: 'merges repeated scopes for one repository',
      principal: acme,
      requested: [
        { type: 'repository', name: 'acme/app', actions: ['pull'] },
        { type: 'repository', name: 'acme/app', actions: ['push'] },
      ],
      granted: [{ type: 'repository', name: 'acme/app', actions: ['pull', 'push'] }],
    },
    {
      name: 'grants the catalog to identified callers',
      principal: acme,
      requested: [{ type: 'registry', name: 'catalog', actions: ['*'] }],
      granted: [{ type: 'registry', name: 'catalog', actions: ['*'] }],
    },
    {
      name: 'refuses the catalog to anonymous callers',
      principal: callers.anonymous,
      requested: [{ type: 'registry', name: 'catalog', actions: ['*'] }],
      granted: [],
    },
    {
      name: 'gives anonymous callers nothing',
      principal: callers.anonymous,
      requested: [{ type: 'repository', name: 'acme/app', actions: ['pull'] }],
      granted: [],
    },
    {
      name: 'ignores invalid repository names, even for admins',
      principal: callers.admin,
      requested: [{ type: 'repository', name: 'localhost:5000/acme/app', actions: ['pull'] }],
      granted: [],
    },
    {
      name: 'ignores unknown resource types',
      principal: callers.admin,
      requested: [{ type: 'repository(plugin)', name: 'acme/app', actions: ['pull'] }],
      granted: [],
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(grantAccess(c.principal, c.requested, { ownerOfBuild }), c.granted));
  }
});

// A build token's pullRepos (its FROM images): pull, and only that, on exactly the
// listed repos; entries under cache/ or builds/ change nothing (the table decides).
describe('build tokens with pullRepos', () => {
  const listed = [
    'acme/base', 'beta/app', 'alpine',
    BETA_CACHE, 'cache/global/python3', 'cache/global', 'cache/acme', `${ACME_CACHE}/extra`, 'cache',
    'builds/b-beta', 'builds/b-unknown', 'builds/b-acme/extra', 'builds',
  ];
  const withList = (name: string): Principal => ({ ...callers[name], pullRepos: listed });
  const buildCallers = Object.keys(callers).filter((name) => callers[name].role === 'build');
  const probes = [...new Set([...repos, ...listed, 'acme/other', 'acme/base/sub', 'acme/bas'])];
  const expected = (name: string, repo: string): string => {
    if (['acme/base', 'beta/app', 'alpine'].includes(repo)) return P;
    // Everything else, listed under cache/ or builds/ or not listed at all, is the table's answer.
    return allowedActions(callers[name], repo, { ownerOfBuild }).join(',');
  };
  for (const name of buildCallers) {
    for (const repo of probes) {
      const want = expected(name, repo);
      for (const action of ['pull', 'push', 'delete'] as Action[]) {
        const allow = want.split(',').includes(action);
        it(`${name} with pullRepos ${allow ? 'may' : 'may not'} ${action} ${repo}`, () => {
          assert.equal(allowedActions(withList(name), repo, { ownerOfBuild }).includes(action), allow);
        });
      }
    }
  }
  it('without the list a build token pulls no tenant image (the table\'s column)', () => {
    for (const name of buildCallers) assert.deepEqual(allowedActions(callers[name], 'acme/base', { ownerOfBuild }), [], name);
  });
  it('the list gives nothing to callers that are not builds', () => {
    const tenant: Principal = { ...callers['tenant acme'], pullRepos: ['beta/app'] };
    assert.deepEqual(allowedActions(tenant, 'beta/app', { ownerOfBuild }), []);
    const anonymous: Principal = { ...callers.anonymous, pullRepos: ['acme/app'] };
    assert.deepEqual(allowedActions(anonymous, 'acme/app', { ownerOfBuild }), []);
  });
  it('a listed cache/ or builds/ repo does not widen the table: no push on the global cache, no other build', () => {
    const build: Principal = { ...callers['tenant build (acme, key node20)'], pullRepos: ['cache/global/node20', BETA_CACHE, 'builds/b-beta'] };
    assert.deepEqual(allowedActions(build, 'cache/global/node20', { ownerOfBuild }), ['pull']);
    assert.deepEqual(allowedActions(build, BETA_CACHE, { ownerOfBuild }), []);
    assert.deepEqual(allowedActions(build, 'builds/b-beta', { ownerOfBuild }), []);
  });
  it('grantAccess cuts a requested push or delete on a listed repo down to pull', () => {
    const build = withList('tenant build (acme, no key)');
    const granted = grantAccess(build, [
      { type: 'repository', name: 'acme/base', actions: ['pull', 'push', 'delete'] },
      { type: 'repository', name: 'acme/other', actions: ['pull'] },
      { type: 'repository', name: BETA_CACHE, actions: ['pull'] },
    ], { ownerOfBuild });
    assert.deepEqual(granted, [{ type: 'repository', name: 'acme/base', actions: ['pull'] }]);
  });
  const baseRepoCases: [string, boolean][] = [
    ['acme/base', true], ['alpine', true], ['library/node', true],
    ['cache/global/k', false], [BETA_CACHE, false], ['cache', false], ['builds/b1', false], ['builds', false],
    ['Acme/Base', false], ['', false], ['acme//base', false],
  ];
  for (const [repo, want] of baseRepoCases) {
    it(`isBaseImageRepo(${JSON.stringify(repo)}) is ${want}`, () => assert.equal(isBaseImageRepo(repo), want));
  }
});

describe('buildTokenAccess', () => {
  const cases: { name: string; build: Parameters<typeof buildTokenAccess>[0]; access: unknown }[] = [
    {
      name: 'tenant build with a key',
      build: { buildId: 'b1', tenant: 'acme', admin: false, globalKey: 'node20' },
      access: [
        { type: 'repository', name: 'builds/b1', actions: ['pull', 'push'] },
        { type: 'repository', name: ACME_CACHE, actions: ['pull', 'push'] },
        { type: 'repository', name: 'cache/global/node20', actions: ['pull'] },
      ],
    },
    {
      name: 'tenant build without a key',
      build: { buildId: 'b1', tenant: 'acme', admin: false, globalKey: null },
      access: [
        { type: 'repository', name: 'builds/b1', actions: ['pull', 'push'] },
        { type: 'repository', name: ACME_CACHE, actions: ['pull', 'push'] },
      ],
    },
    {
      name: 'admin build with a key',
      build: { buildId: 'b1', tenant: 'acme', admin: true, globalKey: 'node20' },
      access: [
        { type: 'repository', name: 'builds/b1', actions: ['pull', 'push'] },
        { type: 'repository', name: 'cache/global/node20', actions: ['pull', 'push'] },
      ],
    },
    {
      name: 'admin build without a key',
      build: { buildId: 'b1', tenant: null, admin: true, globalKey: null },
      access: [{ type: 'repository', name: 'builds/b1', actions: ['pull', 'push'] }],
    },
    {
      name: 'tenant build with FROM repos (cache/, builds/ and repeated entries left out)',
      build: {
        buildId: 'b1', tenant: 'acme', admin: false, globalKey: 'node20',
        pullRepos: ['acme/base', 'library/node', 'acme/base', 'cache/global/node20', BETA_CACHE, 'builds/b2', 'builds/b1'],
      },
      access: [
        { type: 'repository', name: 'builds/b1', actions: ['pull', 'push'] },
        { type: 'repository', name: ACME_CACHE, actions: ['pull', 'push'] },
        { type: 'repository', name: 'cache/global/node20', actions: ['pull'] },
        { type: 'repository', name: 'acme/base', actions: ['pull'] },
        { type: 'repository', name: 'library/node', actions: ['pull'] },
      ],
    },
    {
      name: 'admin build with a FROM repo of another tenant',
      build: { buildId: 'b1', tenant: null, admin: true, globalKey: null, pullRepos: ['beta/base'] },
      access: [
        { type: 'repository', name: 'builds/b1', actions: ['pull', 'push'] },
        { type: 'repository', name: 'beta/base', actions: ['pull'] },
      ],
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(buildTokenAccess(c.build), c.access));
  }
  it('never exceeds what the policy gives the same build', () => {
    for (const c of cases) {
      const principal: Principal = {
        subject: 'build:b1', role: 'build', tenant: c.build.tenant, buildId: c.build.buildId,
        adminBuild: c.build.admin, globalCacheKey: c.build.globalKey, pullRepos: c.build.pullRepos ?? [],
      };
      for (const entry of buildTokenAccess(c.build)) {
        assert.deepEqual(allowedActions(principal, entry.name), entry.actions, `${c.name}: ${entry.name}`);
      }
    }
  });
});

describe('grantAccess never grants more than was asked or is allowed', () => {
  const principal = fc.constantFrom(...Object.values(callers));
  const repo = fc.constantFrom(...repos);
  const actions = fc.subarray(['pull', 'push', 'delete', '*', 'other']);
  it('holds for any caller, repositories and actions', () => {
    fc.assert(
      fc.property(principal, fc.array(fc.record({ name: repo, actions })), (who, asked) => {
        const requested = asked.map((a) => ({ type: 'repository', ...a }));
        for (const entry of grantAccess(who, requested, { ownerOfBuild })) {
          const allowed: string[] = allowedActions(who, entry.name, { ownerOfBuild });
          const askedFor = requested.filter((r) => r.name === entry.name).flatMap((r) => r.actions);
          for (const action of entry.actions) {
            assert.ok(allowed.includes(action), `${who.subject} got ${action} on ${entry.name}`);
            assert.ok(askedFor.includes(action) || askedFor.includes('*'), `${action} on ${entry.name} was not asked`);
          }
        }
      }),
    );
  });
});

describe('public repos (KILN_PUBLIC_REPOS, platform base images)', () => {
  const tenant: Principal = { subject: 'acme', role: 'tenant', tenant: 'acme' };
  const buildWithFrom: Principal = {
    subject: 'build:b-acme', role: 'build', tenant: 'acme', buildId: 'b-acme', adminBuild: false, globalCacheKey: null, pullRepos: ['library/base'],
  };
  const publicRepos = parsePublicRepos('library/**, platform/*/base, tools/node');
  // caller → repo → actions, with the patterns above.
  const table: Array<[string, Principal, string, string]> = [
    ['tenant', tenant, 'library/base', P],
    ['tenant', tenant, 'library/a/b/c', P],
    ['tenant', tenant, 'platform/x/base', P],
    ['tenant', tenant, 'platform/x/other', NONE],
    ['tenant', tenant, 'platform/x/y/base', NONE],
    ['tenant', tenant, 'tools/node', P],
    ['tenant', tenant, 'tools/python', NONE],
    ['tenant', tenant, 'acme/app', ALL],
    ['admin', callers.admin, 'library/base', ALL],
    ['anonymous', callers.anonymous, 'library/base', NONE],
    ['build token listing its FROM image', buildWithFrom, 'library/base', P],
    ['build token listing its FROM image', buildWithFrom, 'library/other', NONE],
    ['build token without FROM images', callers['tenant build (acme, no key)'], 'library/base', NONE],
  ];
  for (const [who, principal, repo, want] of table) {
    it(`${who}: ${repo} → ${want || 'nothing'}`, () => assert.equal(allowedActions(principal, repo, { publicRepos }).join(','), want));
  }

  it('a tenant named like a public namespace owns nothing there, and the name is reserved', () => {
    const library: Principal = { subject: 'library', role: 'tenant', tenant: 'library' };
    assert.deepEqual(allowedActions(library, 'library/base'), ['pull']);
    assert.deepEqual(allowedActions(library, 'library/anything'), ['pull']);
    assert.deepEqual(allowedActions(tenant, 'platform/own', { publicRepos }), [], 'a reserved namespace outside the patterns belongs to nobody');
    assert.match(tenantNameProblem('library', parsePublicRepos('library/**').reservedNamespaces) ?? '', /reserved for the platform's public images \(KILN_PUBLIC_REPOS\)/);
    assert.equal(tenantNameProblem('library', NO_PUBLIC_REPOS.reservedNamespaces), null);
  });

  it('without public repos library/* is an ordinary tenant namespace', () => {
    assert.deepEqual(allowedActions(tenant, 'library/base', { publicRepos: NO_PUBLIC_REPOS }), []);
    const library: Principal = { subject: 'library', role: 'tenant', tenant: 'library' };
    assert.deepEqual(allowedActions(library, 'library/base', { publicRepos: NO_PUBLIC_REPOS }), ['pull', 'push', 'delete']);
  });

  it('grants a tenant a pull token, never push, on a public repo', () => {
    const granted = grantAccess(tenant, [{ type: 'repository', name: 'library/base', actions: ['pull', 'push'] }]);
    assert.deepEqual(granted, [{ type: 'repository', name: 'library/base', actions: ['pull'] }]);
  });

  const patterns: Array<[string, string[] | RegExp]> = [
    ['library/**', ['library']],
    ['library/**,tools/*', ['library', 'tools']],
    ['  ', []],
    ['*/base', /must start with a plain repository name component/],
    ['**', /must start with a plain/],
    ['cache/**', /may not cover cache\//],
    ['builds/x', /may not cover builds\//],
    ['library/**/x', /\*\* only as its last component/],
    ['library/Base', /neither a repository name component/],
  ];
  for (const [setting, want] of patterns) {
    it(`parsePublicRepos(${JSON.stringify(setting)})`, () => {
      if (want instanceof RegExp) assert.throws(() => parsePublicRepos(setting), (err: Error) => /^KILN_PUBLIC_REPOS: /.test(err.message) && want.test(err.message));
      else assert.deepEqual(parsePublicRepos(setting).reservedNamespaces, want);
    });
  }
  const prefixes: Array<[string, string[]]> = [
    ['library/**', ['library/']],
    ['library/**, platform/*/base, tools/node', ['library/', 'platform/', 'tools/node']],
    ['a/b/*', ['a/b/']],
    ['', []],
  ];
  for (const [setting, want] of prefixes) {
    it(`listing prefixes of ${JSON.stringify(setting)} hold every match`, () => {
      assert.deepEqual(parsePublicRepos(setting).listingPrefixes, want);
    });
  }
  it("a tenant's listing ranges include the public repos; an anonymous caller's do not", () => {
    const publicRepos = parsePublicRepos('library/**, tools/node');
    const ranges = visibleRepos(tenant, publicRepos);
    assert.ok(!ranges.all && ranges.prefixes.includes('library/') && ranges.prefixes.includes('tools/node'));
    assert.deepEqual(visibleRepos({ subject: 'anonymous', role: 'anonymous', tenant: null }, publicRepos), { all: false, prefixes: [], names: [] });
  });
  it('`**` needs at least one component', () => {
    const p = parsePublicRepos('library/**');
    assert.equal(p.matches('library'), false);
    assert.equal(p.matches('library/a'), true);
    assert.equal(p.matches('librar/a'), false);
  });
});
