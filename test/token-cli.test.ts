// `kiln token create` as a person runs it: it says where it made the key,
// refuses a directory that is not a Kiln data directory (a key signed there is
// one the server rejects), creates one only with --init, and with --url makes
// the key through the running server. Errors are the server's message.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runKilnCli } from './helpers/cli.js';
import { spawnKiln, tempDir, type SpawnedKiln } from './helpers/kiln.js';

let work: string;
let dataDir: string;
let server: SpawnedKiln;
let adminKey: string;

/** Whether the server accepts the key for `repo` (a tag list answers 404 for a repo with nothing in it, 401/403 when refused). */
async function accepted(key: string, repo: string): Promise<boolean> {
  const res = await fetch(`${server.url}/v2/${repo}/tags/list`, { headers: { authorization: `Bearer ${key}` } });
  await res.arrayBuffer();
  return res.status === 200 || res.status === 404;
}

before(async () => {
  work = await tempDir('kiln-token-cli-');
  dataDir = path.join(work, 'server-data');
  // The first admin key, before the server ever ran: --init makes the data directory.
  const first = await runKilnCli(['token', 'create', '--admin', '--data-dir', dataDir, '--init'], { KILN_DATA_DIR: '' });
  assert.equal(first.code, 0, first.stderr);
  adminKey = first.stdout.trim();
  assert.match(first.stderr, new RegExp(`made in data dir ${dataDir} \\(signing key ${path.join(dataDir, 'auth-key.json')}\\)`));
  server = await spawnKiln(dataDir, { KILN_AUTH: 'token' });
});

after(async () => {
  await server?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('kiln token create', () => {
  it('refuses a directory that is not a Kiln data directory, and creates nothing there', async () => {
    const elsewhere = path.join(work, 'not-a-data-dir');
    const res = await runKilnCli(['token', 'create', '--tenant', 'acme', '--data-dir', elsewhere]);
    assert.equal(res.code, 1);
    assert.equal(res.stdout, '');
    assert.match(res.stderr, new RegExp(`${elsewhere} is not a Kiln data directory .*--url .*--init`));
    assert.equal(existsSync(elsewhere), false);
    // Also when the directory comes from KILN_DATA_DIR (or the default ./kiln-data).
    const viaEnv = await runKilnCli(['token', 'create', '--tenant', 'acme'], { KILN_DATA_DIR: elsewhere });
    assert.equal(viaEnv.code, 1);
    assert.match(viaEnv.stderr, /is not a Kiln data directory/);
  });

  it('in the server\'s data directory, makes a key the running server accepts, and says where', async () => {
    const res = await runKilnCli(['token', 'create', '--tenant', 'acme', '--data-dir', dataDir]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, new RegExp(`for tenant acme, .*made in data dir ${dataDir} `));
    assert.equal(await accepted(res.stdout.trim(), 'acme/app'), true);
    assert.equal(await accepted(adminKey, 'anything/app'), true);
  });

  it('with --url, makes the key through the running server (admin key in KILN_TOKEN)', async () => {
    const res = await runKilnCli(['token', 'create', '--tenant', 'umbrella', '--ttl', '1h', '--url', server.url], { KILN_TOKEN: adminKey });
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, new RegExp(`for tenant umbrella, .*made in server ${server.url};`));
    const key = res.stdout.trim();
    assert.equal(await accepted(key, 'umbrella/app'), true);
    assert.equal(await accepted(key, 'acme/app'), false);
    const jti = /API key (\S+) /.exec(res.stderr)![1]!;
    const revoked = await runKilnCli(['token', 'revoke', jti, '--url', server.url], { KILN_TOKEN: adminKey });
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(revoked.stdout, `revoked ${jti}\n`);
    assert.equal(await accepted(key, 'umbrella/app'), false);
  });

  it("prints the server's message, not its JSON, when the server refuses", async () => {
    const tenantKey = (await runKilnCli(['token', 'create', '--tenant', 'acme', '--data-dir', dataDir])).stdout.trim();
    const res = await runKilnCli(['token', 'create', '--tenant', 'acme', '--url', server.url], { KILN_TOKEN: tenantKey });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /only an admin API key may create or revoke API keys/);
    assert.doesNotMatch(res.stderr, /[{}]/);
    const bad = await runKilnCli(['token', 'create', '--tenant', 'cache', '--url', server.url], { KILN_TOKEN: adminKey });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /tenant name "cache" is reserved/);
    assert.doesNotMatch(bad.stderr, /[{}]/);
  });
});
