// /v2/_catalog pages in the database through what the caller may see: one
// tenant's thousands of repositories are never read to list another's.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { tenantScope } from '../src/auth/tenant.js';
import type { Page, RepoScope } from '../src/store/types.js';
import { startKiln, type TestKiln } from './helpers/kiln.js';

let server: TestKiln;
let keyBig: string;
let keySmall: string;
let keyAdmin: string;
/** Names the metadata store handed to the registry since the last reset. */
let namesRead = 0;

const BIG = 3000;
// library/base: a public repo (KILN_PUBLIC_REPOS' default), listed for every tenant.
const SMALL = ['small/a', 'small/b', 'small/c', `cache/${tenantScope('small')}`, 'cache/global/node', 'library/base'];

before(async () => {
  // KILN_FSYNC=false: thousands of link transactions to seed, without waiting for the disk each time.
  server = await startKiln({ env: { KILN_AUTH: 'token', KILN_FSYNC: 'false' } });
  const meta = server.kiln.registry.meta;
  const digest = `sha256:${'ab'.repeat(32)}`;
  for (let i = 0; i < BIG; i++) await meta.linkBlob(`big/r${String(i).padStart(5, '0')}`, digest, 1);
  for (const repo of [...SMALL, 'other/x', `cache/${tenantScope('big')}`]) await meta.linkBlob(repo, digest, 1);
  const original = meta.listRepos.bind(meta);
  meta.listRepos = async (page: Page, scope?: RepoScope) => {
    const names = await original(page, scope);
    namesRead += names.length;
    return names;
  };
  const tokens = server.kiln.auth.tokens;
  keyBig = (await tokens.createApiKey({ tenant: 'big', ttlSeconds: 600 })).token;
  keySmall = (await tokens.createApiKey({ tenant: 'small', ttlSeconds: 600 })).token;
  keyAdmin = (await tokens.createApiKey({ admin: true, ttlSeconds: 600 })).token;
});
after(() => server?.close());

async function catalog(key: string, query = ''): Promise<{ repositories: string[]; link: string | null }> {
  const res = await fetch(`${server.url}/v2/_catalog${query}`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200, await res.clone().text());
  return { ...((await res.json()) as { repositories: string[] }), link: res.headers.get('link') };
}

describe('catalog paging by visibility', () => {
  it("a tenant's listing reads its own repositories, not another tenant's thousands", async () => {
    namesRead = 0;
    const { repositories } = await catalog(keySmall);
    assert.deepEqual(repositories, [...SMALL].sort());
    assert.ok(namesRead <= SMALL.length, `read ${namesRead} names from the store to list ${SMALL.length}`);
  });

  it('pages of a big tenant read about a page each and walk every repository once', async () => {
    namesRead = 0;
    const first = await catalog(keyBig, '?n=100');
    assert.equal(first.repositories.length, 100);
    assert.ok(namesRead <= 600, `read ${namesRead} names for a page of 100`);
    let seen = first.repositories.length;
    let next = first.link;
    while (next) {
      const url = /<([^>]+)>/.exec(next)![1]!;
      const page = await catalog(keyBig, url.slice(url.indexOf('?')));
      seen += page.repositories.length;
      next = page.link;
    }
    // big/*, its cache, the global cache and the public repo.
    assert.equal(seen, BIG + 3);
  });

  it('an admin sees everything', async () => {
    const { repositories } = await catalog(keyAdmin, '?n=10000');
    assert.equal(repositories.length, BIG + SMALL.length + 2);
  });
});
