import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BuildError } from './errors.js';
import { baseImageGrants, normalizeCacheName, planBuild, type BuildPlan, type PlanInput } from './plan.js';

const R = '10.0.0.1:8083';
const base = { registry: R, buildId: 'b1', tenantScope: 'tenant-abc' };

type Expected = Pick<BuildPlan, 'output' | 'imports' | 'export' | 'grants'>;

const table: Array<{ name: string; input: Omit<PlanInput, 'registry' | 'buildId' | 'tenantScope'>; want: Expected }> = [
  {
    name: 'tenant, key, https',
    input: { admin: false, globalKey: 'node20', insecure: false },
    want: {
      output: `type=image,name=${R}/builds/b1,push=true,oci-mediatypes=true`,
      imports: [`type=registry,ref=${R}/cache/global/node20`, `type=registry,ref=${R}/cache/tenant-abc`],
      export: `type=registry,ref=${R}/cache/tenant-abc,mode=max,image-manifest=true,oci-mediatypes=true`,
      grants: [
        { repo: 'builds/b1', actions: ['pull', 'push'] },
        { repo: 'cache/tenant-abc', actions: ['pull', 'push'] },
        { repo: 'cache/global/node20', actions: ['pull'] },
      ],
    },
  },
  {
    name: 'tenant, key, http',
    input: { admin: false, globalKey: 'node20', insecure: true },
    want: {
      output: `type=image,name=${R}/builds/b1,push=true,oci-mediatypes=true,registry.insecure=true`,
      imports: [
        `type=registry,ref=${R}/cache/global/node20,registry.insecure=true`,
        `type=registry,ref=${R}/cache/tenant-abc,registry.insecure=true`,
      ],
      export: `type=registry,ref=${R}/cache/tenant-abc,mode=max,image-manifest=true,oci-mediatypes=true,registry.insecure=true`,
      grants: [
        { repo: 'builds/b1', actions: ['pull', 'push'] },
        { repo: 'cache/tenant-abc', actions: ['pull', 'push'] },
        { repo: 'cache/global/node20', actions: ['pull'] },
      ],
    },
  },
  {
    name: 'tenant, no key, https',
    input: { admin: false, globalKey: null, insecure: false },
    want: {
      output: `type=image,name=${R}/builds/b1,push=true,oci-mediatypes=true`,
      imports: [`type=registry,ref=${R}/cache/tenant-abc`],
      export: `type=registry,ref=${R}/cache/tenant-abc,mode=max,image-manifest=true,oci-mediatypes=true`,
      grants: [
        { repo: 'builds/b1', actions: ['pull', 'push'] },
        { repo: 'cache/tenant-abc', actions: ['pull', 'push'] },
      ],
    },
  },
  {
    name: 'tenant, no key, http',
    input: { admin: false, insecure: true },
    want: {
      output: `type=image,name=${R}/builds/b1,push=true,oci-mediatypes=true,registry.insecure=true`,
      imports: [`type=registry,ref=${R}/cache/tenant-abc,registry.insecure=true`],
      export: `type=registry,ref=${R}/cache/tenant-abc,mode=max,image-manifest=true,oci-mediatypes=true,registry.insecure=true`,
      grants: [
        { repo: 'builds/b1', actions: ['pull', 'push'] },
        { repo: 'cache/tenant-abc', actions: ['pull', 'push'] },
      ],
    },
  },
  {
    name: 'admin, key, https',
    input: { admin: true, globalKey: 'node20', insecure: false },
    want: {
      output: `type=image,name=${R}/builds/b1,push=true,oci-mediatypes=true`,
      imports: [`type=registry,ref=${R}/cache/global/node20`],
      export: `type=registry,ref=${R}/cache/global/node20,mode=max,image-manifest=true,oci-mediatypes=true`,
      grants: [
        { repo: 'builds/b1', actions: ['pull', 'push'] },
        { repo: 'cache/global/node20', actions: ['pull', 'push'] },
      ],
    },
  },
  {
    name: 'admin, key, http',
    input: { admin: true, globalKey: 'node20', insecure: true },
    want: {
      output: `type=image,name=${R}/builds/b1,push=true,oci-mediatypes=true,registry.insecure=true`,
      imports: [`type=registry,ref=${R}/cache/global/node20,registry.insecure=true`],
      export: `type=registry,ref=${R}/cache/global/node20,mode=max,image-manifest=true,oci-mediatypes=true,registry.insecure=true`,
      grants: [
        { repo: 'builds/b1', actions: ['pull', 'push'] },
        { repo: 'cache/global/node20', actions: ['pull', 'push'] },
      ],
    },
  },
  {
    name: 'admin, no key, https',
    input: { admin: true, globalKey: null, insecure: false },
    want: {
      output: `type=image,name=${R}/builds/b1,push=true,oci-mediatypes=true`,
      imports: [],
      export: null,
      grants: [{ repo: 'builds/b1', actions: ['pull', 'push'] }],
    },
  },
  {
    name: 'admin, no key, http',
    input: { admin: true, insecure: true },
    want: {
      output: `type=image,name=${R}/builds/b1,push=true,oci-mediatypes=true,registry.insecure=true`,
      imports: [],
      export: null,
      grants: [{ repo: 'builds/b1', actions: ['pull', 'push'] }],
    },
  },
];

describe('planBuild', () => {
  for (const row of table) {
    it(row.name, () => {
      const plan = planBuild({ ...base, ...row.input });
      assert.equal(plan.output, row.want.output);
      assert.deepEqual(plan.imports, row.want.imports);
      assert.equal(plan.export, row.want.export);
      assert.deepEqual(plan.grants, row.want.grants);
      assert.equal(plan.imageName, `${R}/builds/b1`);
    });
  }

  it('gives the bare refs behind the options, in the same order', () => {
    const plan = planBuild({ ...base, admin: false, globalKey: 'node20', insecure: true });
    assert.deepEqual(plan.importRefs, [`${R}/cache/global/node20`, `${R}/cache/tenant-abc`]);
    assert.equal(plan.exportRef, `${R}/cache/tenant-abc`);
    const admin = planBuild({ ...base, admin: true, globalKey: null, insecure: false });
    assert.deepEqual(admin.importRefs, []);
    assert.equal(admin.exportRef, null);
  });

  it('normalizes the global key and the registry', () => {
    const plan = planBuild({ ...base, registry: ' Kiln.Example:443/ ', admin: true, globalKey: '  Node20 ', insecure: false });
    assert.equal(plan.export, 'type=registry,ref=kiln.example:443/cache/global/node20,mode=max,image-manifest=true,oci-mediatypes=true');
  });

  it('an admin build ignores the caller\'s tenant scope', () => {
    const plan = planBuild({ ...base, admin: true, globalKey: 'golang', insecure: false });
    assert.ok(plan.grants.every((g) => !g.repo.includes('tenant-abc')));
  });

  it('a tenant build never writes the global cache', () => {
    for (const globalKey of ['node20', null]) {
      const plan = planBuild({ ...base, admin: false, globalKey, insecure: false });
      assert.ok(!plan.exportRef?.includes('/cache/global'));
      const pushable = plan.grants.filter((g) => g.actions.includes('push')).map((g) => g.repo);
      assert.deepEqual(pushable, ['builds/b1', 'cache/tenant-abc']);
    }
  });

  const rejected: Array<{ name: string; input: Partial<PlanInput>; message: RegExp }> = [
    { name: 'tenant build without scope', input: { tenantScope: null }, message: /needs the cache scope/ },
    { name: 'tenant scope "global"', input: { tenantScope: 'global' }, message: /reserved for the global cache/ },
    { name: 'scope with a slash (another tenant\'s path)', input: { tenantScope: 'tenant-abc/../x' }, message: /only letters, digits and "-"/ },
    { name: 'key too short', input: { globalKey: 'go' }, message: /3 to 64 characters/ },
    { name: 'key too long', input: { globalKey: 'a'.repeat(65) }, message: /3 to 64 characters/ },
    { name: 'key with underscore', input: { globalKey: 'node_20' }, message: /only letters, digits and "-"/ },
    { name: 'key with a path', input: { globalKey: '../tenant-x' }, message: /only letters, digits and "-"/ },
    { name: 'key ending in -', input: { globalKey: 'node-' }, message: /start and end with a letter or digit/ },
    { name: 'registry with scheme', input: { registry: 'http://127.0.0.1:5000' }, message: /without a scheme/ },
    { name: 'registry with path', input: { registry: '127.0.0.1:5000/x' }, message: /not host\[:port\]/ },
    { name: 'build id with slash', input: { buildId: 'a/b' }, message: /one repository path component/ },
  ];
  for (const row of rejected) {
    it(`rejects ${row.name} with a clear message`, () => {
      assert.throws(
        () => planBuild({ ...base, admin: false, globalKey: 'node20', insecure: false, ...row.input }),
        (err: unknown) => err instanceof BuildError && err.kind === 'invalid-input' && row.message.test(err.message),
      );
    });
  }
});

describe('normalizeCacheName', () => {
  const ok: Array<[string, string]> = [
    ['node20', 'node20'],
    ['NODE20', 'node20'],
    [' py-3-12 ', 'py-3-12'],
    ['abc', 'abc'],
    ['a'.repeat(64), 'a'.repeat(64)],
  ];
  for (const [input, want] of ok) {
    it(`"${input}" → "${want}"`, () => assert.equal(normalizeCacheName(input, 'global cache key'), want));
  }
  for (const bad of ['ab', '', 'a b c', 'a.b.c', 'ümlaut', '-abc']) {
    it(`rejects "${bad}"`, () => assert.throws(() => normalizeCacheName(bad, 'cache scope'), /cache scope/));
  }
});

describe('baseImageGrants', () => {
  it('grants pull on base images hosted in this registry, once each, nothing for others', () => {
    const digest = 'sha256:' + 'ab'.repeat(32);
    assert.deepEqual(
      baseImageGrants(R, [
        `${R}/library/base`,
        `${R}/library/base:latest`,
        `${R}/acme/node:20@${digest}`,
        `${R}/acme/tools@${digest}`,
        'docker.io/library/node:20',
        'node:20',
        '10.0.0.1:8084/other/registry',
      ]),
      [
        { repo: 'library/base', actions: ['pull'] },
        { repo: 'acme/node', actions: ['pull'] },
        { repo: 'acme/tools', actions: ['pull'] },
      ],
    );
  });
});
