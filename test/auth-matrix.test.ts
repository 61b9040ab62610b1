// Issue 4's repository policy, the whole table, over real HTTP: every caller
// kind × repository kind × action is allowed or refused exactly as the table
// says, with each way a client can present credentials (Docker's token flow,
// Basic with the key as password, Basic `base64(token + ":")`, Bearer).
// Catalog and tag lists show only what the caller may pull.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AuthClient, basic, basicTokenAsUser, bearer, expectRefusal, type ClientAuth } from './helpers/auth.js';
import { startKiln, type TestKiln } from './helpers/kiln.js';
import { OCI_LAYER_GZIP, OCI_MANIFEST, TEST_CONFIG, blob, descriptor, manifestBlob, randomBlob, type Blob } from './helpers/registry.js';

const T = 'acme';
const U = 'umbrella';
const K = 'node';
const BUILD = 'b1acme';
const OTHER_BUILD = 'b9other';
const ADMIN_BUILD = 'b2admin';

// The issue's scope(T): one-way and stable, computed here independently of the server's code.
const scopeOf = (tenant: string) => 'tenant-' + createHash('sha256').update(tenant).digest('hex').slice(0, 16);

const REPOS = {
  'T/app': `${T}/app`,
  'U/app': `${U}/app`,
  'cache/scope(T)': `cache/${scopeOf(T)}`,
  'cache/scope(U)': `cache/${scopeOf(U)}`,
  'cache/global/K': `cache/global/${K}`,
  'cache/global/other': 'cache/global/other',
  'builds/B': `builds/${BUILD}`,
  'builds/OTHER': `builds/${OTHER_BUILD}`,
  'other/x': 'other/x',
} as const;
type RepoKind = keyof typeof REPOS;

type CallerKind = 'tenant T' | 'tenant U' | 'admin' | 'build B of T' | 'admin build (key K)' | 'anonymous';
type Action = 'pull' | 'push' | 'delete';
const ACTIONS: Action[] = ['pull', 'push', 'delete'];

const ALL = 'pull push delete';
// The table of issue 4, written out cell by cell. builds/B is owned by T.
const TABLE: Record<CallerKind, Record<RepoKind, string>> = {
  'tenant T': {
    'T/app': ALL,
    'U/app': '',
    'cache/scope(T)': 'pull push',
    'cache/scope(U)': '',
    'cache/global/K': 'pull',
    'cache/global/other': 'pull',
    'builds/B': 'pull delete',
    'builds/OTHER': '',
    'other/x': '',
  },
  'tenant U': {
    'T/app': '',
    'U/app': ALL,
    'cache/scope(T)': '',
    'cache/scope(U)': 'pull push',
    'cache/global/K': 'pull',
    'cache/global/other': 'pull',
    'builds/B': '',
    'builds/OTHER': '',
    'other/x': '',
  },
  admin: {
    'T/app': ALL,
    'U/app': ALL,
    'cache/scope(T)': ALL,
    'cache/scope(U)': ALL,
    'cache/global/K': ALL,
    'cache/global/other': ALL,
    'builds/B': ALL,
    'builds/OTHER': ALL,
    'other/x': ALL,
  },
  'build B of T': {
    'T/app': '',
    'U/app': '',
    'cache/scope(T)': 'pull push',
    'cache/scope(U)': '',
    'cache/global/K': 'pull',
    'cache/global/other': 'pull',
    'builds/B': 'pull push',
    'builds/OTHER': '',
    'other/x': '',
  },
  'admin build (key K)': {
    'T/app': '',
    'U/app': '',
    'cache/scope(T)': '',
    'cache/scope(U)': '',
    'cache/global/K': 'pull push',
    'cache/global/other': 'pull',
    'builds/B': '',
    'builds/OTHER': '',
    'other/x': '',
  },
  anonymous: {
    'T/app': '',
    'U/app': '',
    'cache/scope(T)': '',
    'cache/scope(U)': '',
    'cache/global/K': '',
    'cache/global/other': '',
    'builds/B': '',
    'builds/OTHER': '',
    'other/x': '',
  },
};

const allowed = (caller: CallerKind, repo: RepoKind, action: Action) => TABLE[caller][repo].split(' ').includes(action);

type AuthFor = (credential: string | null) => ClientAuth;

const tokenFlow: AuthFor = (c) => (c === null ? { mode: 'token-flow' } : { mode: 'token-flow', username: 'ci', password: c });
const header =
  (form: (c: string) => string): AuthFor =>
  (c) =>
    c === null ? { mode: 'none' } : { mode: 'header', authorization: form(c) };
const basicPassword = header((c) => basic('whoever', c));
const basicUser = header(basicTokenAsUser);
const bearerKey = header(bearer);

/**
 * How each matrix run turns a caller's credential (null: anonymous) into a
 * client for an action. The direct run gives each action its own form, so
 * every form meets every caller and repo kind.
 */
const MATRIX_MODES: Record<string, (action: Action) => AuthFor> = {
  'token flow (GET /token with Basic, then Bearer)': () => tokenFlow,
  'direct credentials (pull: Basic key as password, push: Basic base64(token + ":"), delete: Bearer key)': (action) =>
    ({ pull: basicPassword, push: basicUser, delete: bearerKey })[action],
};

const LISTING_MODES: Record<string, AuthFor> = {
  'token flow': tokenFlow,
  'Basic with the key as password': basicPassword,
  'Basic base64(token + ":")': basicUser,
  'Bearer key': bearerKey,
};

let server: TestKiln;
let base: string;
let admin: AuthClient;
const credentials = {} as Record<CallerKind, string | null>;
/** What every repo holds under the tag `seed`. */
const seeds = new Map<string, { manifest: Blob; config: Blob; layer: Blob }>();

before(async () => {
  server = await startKiln({ env: { KILN_AUTH: 'token' }, ownerOfBuild: (id) => (id === BUILD ? T : null) });
  base = server.url;
  const { tokens } = server.kiln.auth;
  const inAnHour = new Date(Date.now() + 3600_000);
  credentials['tenant T'] = (await tokens.createApiKey({ tenant: T, ttlSeconds: 3600 })).token;
  credentials['tenant U'] = (await tokens.createApiKey({ tenant: U, ttlSeconds: 3600 })).token;
  credentials.admin = (await tokens.createApiKey({ admin: true, ttlSeconds: 3600 })).token;
  credentials['build B of T'] = (await tokens.issueBuildToken({ buildId: BUILD, tenant: T, admin: false, globalKey: K, expiresAt: inAnHour })).token;
  credentials['admin build (key K)'] = (await tokens.issueBuildToken({ buildId: ADMIN_BUILD, tenant: null, admin: true, globalKey: K, expiresAt: inAnHour })).token;
  credentials.anonymous = null;

  admin = new AuthClient(base, { mode: 'header', authorization: basic('admin', credentials.admin) });
  const layer = randomBlob(256);
  for (const repo of Object.values(REPOS)) {
    const config = blob(JSON.stringify({ seed: repo }));
    await mustPushBlob(admin, repo, config);
    await mustPushBlob(admin, repo, layer);
    const manifest = imageManifest(config, layer);
    const res = await putManifest(admin, repo, 'seed', manifest);
    assert.equal(res.status, 201, `seeding ${repo}: ${res.status} ${await res.text()}`);
    seeds.set(repo, { manifest, config, layer });
  }
});

after(async () => {
  await server?.close();
});

// ---- requests ------------------------------------------------------------------

function imageManifest(config: Blob, layer: Blob): Blob {
  return manifestBlob({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: descriptor(config, TEST_CONFIG),
    layers: [descriptor(layer, OCI_LAYER_GZIP)],
  });
}

/** POST a session, PUT the bytes: the POST's answer when it is refused, else the PUT's. */
async function pushBlob(client: AuthClient, repo: string, b: Blob): Promise<Response> {
  const post = await client.fetch(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (post.status !== 202) return post;
  await post.arrayBuffer();
  const location = new URL(post.headers.get('location')!, base);
  location.searchParams.set('digest', b.digest);
  return client.fetch(location.pathname + location.search, {
    method: 'PUT',
    body: b.bytes,
    headers: { 'content-type': 'application/octet-stream' },
  });
}

async function mustPushBlob(client: AuthClient, repo: string, b: Blob): Promise<void> {
  const res = await pushBlob(client, repo, b);
  assert.equal(res.status, 201, `blob to ${repo}: ${res.status} ${await res.text()}`);
}

function putManifest(client: AuthClient, repo: string, reference: string, m: Blob): Promise<Response> {
  return client.fetch(`/v2/${repo}/manifests/${reference}`, { method: 'PUT', body: m.bytes, headers: { 'content-type': OCI_MANIFEST } });
}

/** The scope a 401 challenge names for the action (a push also asks for pull). */
const challengeScope = (repo: string, action: Action) => `repository:${repo}:${action === 'push' ? 'pull,push' : action}`;

let counter = 0;

/** Runs one cell; throws with what went wrong. */
async function checkCell(client: AuthClient, caller: CallerKind, mode: ClientAuth['mode'], kind: RepoKind, action: Action): Promise<void> {
  const repo = REPOS[kind];
  const allow = allowed(caller, kind, action);
  // Without any credentials the answer is the challenge; with the token flow's
  // anonymous token, a challenge saying authentication is required; with real
  // credentials the policy's DENIED, or for a HEAD (no body) a challenge
  // carrying the reason.
  const refusal = async (res: Response, method = 'GET') => {
    if (caller === 'anonymous' && mode === 'none') {
      await expectRefusal(res, base, { status: 401, code: 'UNAUTHORIZED', scope: challengeScope(repo, action), error: null }, method);
    } else if (caller === 'anonymous' && method !== 'HEAD') {
      await expectRefusal(res, base, { status: 401, code: 'UNAUTHORIZED', scope: challengeScope(repo, action), error: null, message: /^authentication required: / }, method);
    } else if (caller === 'anonymous') {
      const description = new RegExp(`^authentication required: .* may not \\w+ ${repo}( \\(|$)`);
      await expectRefusal(res, base, { status: 401, code: 'UNAUTHORIZED', error: 'insufficient_scope', description }, method);
    } else if (method === 'HEAD') {
      await expectRefusal(res, base, { status: 401, code: 'UNAUTHORIZED', error: 'insufficient_scope', description: new RegExp(`may not \\w+ ${repo}( \\(|$)`) }, method);
    } else {
      const { message } = await expectRefusal(res, base, { status: 403, code: 'DENIED' }, method);
      assert.ok(message.includes(repo), `message "${message}" does not name ${repo}`);
    }
  };
  const seed = seeds.get(repo)!;

  if (action === 'pull') {
    const manifest = await client.fetch(`/v2/${repo}/manifests/seed`, { headers: { accept: OCI_MANIFEST } });
    const head = await client.fetch(`/v2/${repo}/manifests/seed`, { method: 'HEAD', headers: { accept: OCI_MANIFEST } });
    const config = await client.fetch(`/v2/${repo}/blobs/${seed.config.digest}`);
    if (allow) {
      assert.equal(manifest.status, 200, `GET manifest: ${manifest.status}`);
      assert.deepEqual(Buffer.from(await manifest.arrayBuffer()), seed.manifest.bytes);
      assert.equal(head.status, 200, `HEAD manifest: ${head.status}`);
      assert.equal(head.headers.get('docker-content-digest'), seed.manifest.digest);
      assert.equal(config.status, 200, `GET blob: ${config.status}`);
      assert.deepEqual(Buffer.from(await config.arrayBuffer()), seed.config.bytes);
    } else {
      await refusal(manifest);
      await refusal(head, 'HEAD');
      await refusal(config);
    }
    return;
  }

  if (action === 'push') {
    const config = blob(JSON.stringify({ pushedBy: caller, n: ++counter }));
    const uploaded = await pushBlob(client, repo, config);
    const tag = `pushed-${counter}`;
    const put = await putManifest(client, repo, tag, imageManifest(config, seed.layer));
    if (allow) {
      assert.equal(uploaded.status, 201, `blob upload: ${uploaded.status} ${await uploaded.text()}`);
      assert.equal(put.status, 201, `manifest PUT: ${put.status} ${await put.text()}`);
      const check = await admin.fetch(`/v2/${repo}/manifests/${tag}`, { method: 'HEAD' });
      assert.equal(check.status, 200, 'the pushed tag is not there');
    } else {
      await refusal(uploaded);
      await refusal(put);
      const check = await admin.fetch(`/v2/${repo}/manifests/${tag}`, { method: 'HEAD' });
      assert.equal(check.status, 404, 'a refused push left a tag behind');
    }
    return;
  }

  // delete: a manifest of its own, so other cells keep their content.
  const config = blob(JSON.stringify({ deleteTarget: caller, n: ++counter }));
  await mustPushBlob(admin, repo, config);
  const manifest = imageManifest(config, seed.layer);
  const seeded = await putManifest(admin, repo, manifest.digest, manifest);
  assert.equal(seeded.status, 201, `seeding the delete target: ${seeded.status}`);
  const res = await client.fetch(`/v2/${repo}/manifests/${manifest.digest}`, { method: 'DELETE' });
  const check = await admin.fetch(`/v2/${repo}/manifests/${manifest.digest}`, { method: 'HEAD' });
  if (allow) {
    assert.equal(res.status, 202, `DELETE manifest: ${res.status} ${await res.text()}`);
    assert.equal(check.status, 404, 'the deleted manifest is still there');
  } else {
    await refusal(res, 'DELETE');
    assert.equal(check.status, 200, 'a refused delete removed the manifest');
  }
}

// ---- the matrix -------------------------------------------------------------------

const CALLERS = Object.keys(TABLE) as CallerKind[];

for (const [modeName, authForAction] of Object.entries(MATRIX_MODES)) {
  describe(`policy matrix: ${modeName}`, () => {
    for (const caller of CALLERS) {
      it(`${caller}: every repo kind × pull, push, delete as the table says`, async () => {
        const mismatches: string[] = [];
        for (const kind of Object.keys(REPOS) as RepoKind[]) {
          for (const action of ACTIONS) {
            // A fresh client per cell, so each cell goes through the whole flow (challenge, token, retry).
            const auth = authForAction(action)(credentials[caller]);
            const client = new AuthClient(base, auth);
            try {
              await checkCell(client, caller, auth.mode, kind, action);
            } catch (err) {
              mismatches.push(`${caller} ${action} ${kind} (${REPOS[kind]}), want ${allowed(caller, kind, action) ? 'allowed' : 'refused'}: ${(err as Error).message.split('\n')[0]}`);
            }
            if (auth.mode === 'token-flow') {
              // The flow really ran: one token per cell, asked for the challenge's scope.
              if (client.fetched.length === 0) mismatches.push(`${caller} ${action} ${kind}: no token was fetched`);
            }
          }
        }
        assert.deepEqual(mismatches, []);
      });
    }
  });
}

// ---- listings ---------------------------------------------------------------------

for (const [modeName, authFor] of Object.entries(LISTING_MODES)) {
  describe(`listings: ${modeName}`, () => {
    for (const caller of CALLERS) {
      it(`${caller}: the catalog and tag lists show exactly the repos the caller may pull`, async () => {
        const auth = authFor(credentials[caller]);
        const pullable = (Object.keys(REPOS) as RepoKind[]).filter((k) => allowed(caller, k, 'pull'));
        const catalog = await new AuthClient(base, auth).fetch('/v2/_catalog');
        if (auth.mode === 'none') {
          await expectRefusal(catalog, base, { status: 401, code: 'UNAUTHORIZED', scope: 'registry:catalog:*' });
        } else if (caller === 'anonymous') {
          // The anonymous token of the token flow carries no catalog: log in.
          await expectRefusal(catalog, base, { status: 401, code: 'UNAUTHORIZED', error: null, message: /^authentication required/ });
        } else {
          assert.equal(catalog.status, 200, await catalog.clone().text());
          const { repositories } = (await catalog.json()) as { repositories: string[] };
          assert.deepEqual(repositories, pullable.map((k) => REPOS[k]).sort());
        }
        // Paging walks the same filtered list.
        if (caller !== 'anonymous' && pullable.length > 1) {
          const first = await new AuthClient(base, auth).fetch('/v2/_catalog?n=1');
          assert.equal(first.status, 200);
          assert.deepEqual(((await first.json()) as { repositories: string[] }).repositories, [pullable.map((k) => REPOS[k]).sort()[0]]);
          assert.match(first.headers.get('link') ?? '', /rel="next"/);
        }

        const mismatches: string[] = [];
        for (const kind of Object.keys(REPOS) as RepoKind[]) {
          const repo = REPOS[kind];
          const res = await new AuthClient(base, auth).fetch(`/v2/${repo}/tags/list`);
          try {
            if (allowed(caller, kind, 'pull')) {
              assert.equal(res.status, 200, `${res.status}`);
              const body = (await res.json()) as { name: string; tags: string[] };
              assert.equal(body.name, repo);
              assert.ok(body.tags.includes('seed'), `tags ${body.tags.join(',')}`);
            } else if (auth.mode === 'none') {
              await expectRefusal(res, base, { status: 401, code: 'UNAUTHORIZED', scope: `repository:${repo}:pull` });
            } else if (caller === 'anonymous') {
              await expectRefusal(res, base, { status: 401, code: 'UNAUTHORIZED', error: null, message: /^authentication required/ });
            } else {
              await expectRefusal(res, base, { status: 403, code: 'DENIED' });
            }
          } catch (err) {
            mismatches.push(`tags/list of ${kind} (${repo}): ${(err as Error).message.split('\n')[0]}`);
          }
        }
        assert.deepEqual(mismatches, []);
      });
    }
  });
}
