// skopeo through Kiln's token flow: with a tenant's API key it pushes and
// pulls (the key as --dest-creds/--src-creds password, exchanged at /token);
// without credentials, or with another tenant's key, it is refused.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { BASE_IMAGE, writeBaseImageLayout } from './helpers/layout.js';
import { isolatedContainersEnv } from './helpers/containers.js';

const run = promisify(execFile);
const BLOBS = BASE_IMAGE.blobsDir;
const MANIFEST_FILE = BASE_IMAGE.manifestFile;
const MANIFEST_DIGEST = BASE_IMAGE.manifestDigest;
const LAYER_HEX = BASE_IMAGE.layerHex;

let server: TestKiln;
let work: string;
let layout: string;
let env: NodeJS.ProcessEnv;
let policy: string;
let keyT: string;
let keyU: string;

interface Outcome {
  ok: boolean;
  output: string;
}

async function skopeo(...args: string[]): Promise<Outcome> {
  try {
    const { stdout, stderr } = await run('skopeo', ['--policy', policy, ...args], { env, cwd: work, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
    return { ok: true, output: stdout + stderr };
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    return { ok: false, output: `${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}` };
  }
}

function mustSucceed(outcome: Outcome, what: string): void {
  assert.ok(outcome.ok, `${what} failed: ${outcome.output}`);
}

function mustBeRefused(outcome: Outcome, what: string, reason: RegExp): void {
  assert.ok(!outcome.ok, `${what} succeeded but must be refused`);
  assert.match(outcome.output, reason, `${what}: ${outcome.output}`);
}

const ref = (repo: string) => `docker://${server.host}/${repo}`;
const push = (repo: string, ...creds: string[]) => skopeo('copy', '--dest-tls-verify=false', ...creds, `oci:${layout}:v1`, ref(repo));
const pull = (repo: string, dest: string, ...creds: string[]) => skopeo('copy', '--src-tls-verify=false', ...creds, ref(repo), `oci:${dest}:v1`);

before(async () => {
  work = await tempDir('kiln-auth-clients-');
  // No stored credentials anywhere skopeo looks: only the flags count.
  ({ env, policy } = await isolatedContainersEnv(work));

  layout = path.join(work, 'layout');
  await writeBaseImageLayout(layout);

  server = await startKiln({ env: { KILN_AUTH: 'token' } });
  keyT = (await server.kiln.auth.tokens.createApiKey({ tenant: 'acme', ttlSeconds: 3600 })).token;
  keyU = (await server.kiln.auth.tokens.createApiKey({ tenant: 'umbrella', ttlSeconds: 3600 })).token;
});

after(async () => {
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

async function pulledManifestDigest(dest: string): Promise<string> {
  const index = JSON.parse(await readFile(path.join(dest, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  assert.equal(index.manifests.length, 1);
  return index.manifests[0]!.digest;
}

describe('skopeo through the token flow', () => {
  it('pushes with --dest-creds and pulls back the same image with --src-creds', async () => {
    mustSucceed(await push('acme/app', '--dest-creds', `ci:${keyT}`), 'push with the tenant key');
    const dest = path.join(work, 'pulled');
    mustSucceed(await pull('acme/app', dest, '--src-creds', `ci:${keyT}`), 'pull with the tenant key');
    assert.equal(await pulledManifestDigest(dest), MANIFEST_DIGEST);
    const layer = await readFile(path.join(dest, 'blobs', 'sha256', LAYER_HEX));
    assert.deepEqual(layer, await readFile(path.join(BLOBS, LAYER_HEX)));
    // skopeo inspect goes through the same flow.
    const inspect = await skopeo('inspect', '--raw', '--tls-verify=false', '--creds', `ci:${keyT}`, ref('acme/app'));
    mustSucceed(inspect, 'inspect with the tenant key');
    assert.equal(inspect.output.trim(), (await readFile(MANIFEST_FILE, 'utf8')).trim());
  });

  it('is refused without credentials', async () => {
    // skopeo fetches an anonymous token, which carries nothing: the registry asks it to authenticate, saying why.
    mustBeRefused(await push('acme/noauth'), 'push without credentials', /authentication required: an anonymous caller .* may not pull acme\/noauth/);
    mustBeRefused(await pull('acme/app', path.join(work, 'noauth')), 'pull without credentials', /authentication required: an anonymous caller .* may not pull acme\/app/);
    // Nothing of the refused push reached the registry.
    const admin = await server.kiln.auth.tokens.createApiKey({ admin: true, ttlSeconds: 600 });
    const tags = await fetch(`${server.url}/v2/acme/noauth/tags/list`, { headers: { authorization: `Bearer ${admin.token}` } });
    assert.equal(tags.status, 404, await tags.text());
  });

  it("is refused with another tenant's key", async () => {
    mustBeRefused(await push('acme/app', '--dest-creds', `ci:${keyU}`), 'push into acme with umbrella key', /denied: tenant umbrella may not pull acme\/app/);
    mustBeRefused(await pull('acme/app', path.join(work, 'cross'), '--src-creds', `ci:${keyU}`), 'pull acme with umbrella key', /denied: tenant umbrella may not pull acme\/app/);
    // The same key works on its own tenant's repository.
    mustSucceed(await push('umbrella/app', '--dest-creds', `ci:${keyU}`), 'push into umbrella with umbrella key');
  });

  it('is refused with a key that is not one', async () => {
    mustBeRefused(await push('acme/app', '--dest-creds', 'ci:letmein'), 'push with a bad password', /unable to retrieve auth token.*not a Kiln token/);
  });
});
