// `kiln gc`, `kiln fsck` and `kiln token` against a deployment on PostgreSQL,
// while its server keeps running (the database coordinates them).
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { runKilnCli } from './helpers/cli.js';
import { spawnKiln, tempDir, type SpawnedKiln } from './helpers/kiln.js';
import { startPostgres, type TestPostgres } from './helpers/postgres.js';
import { OCI_MANIFEST, RegistryClient } from './helpers/registry.js';

describe('the CLI on PostgreSQL', () => {
  let cluster: TestPostgres;
  let url: string;
  let dataDir: string;
  let server: SpawnedKiln;
  let client: RegistryClient;
  before(async () => {
    cluster = await startPostgres();
    url = await cluster.database();
    dataDir = await tempDir('kiln-pg-cli-');
    server = await spawnKiln(dataDir, { KILN_DATABASE_URL: url, KILN_GC_INTERVAL: '0' });
    client = new RegistryClient(server.url);
  });
  after(async () => {
    await server?.stop();
    await cluster?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('kiln gc collects beside the running server, and kiln fsck finds the store sound', async () => {
    const kept = await client.pushImage('cli/app', 'v1');
    const dropped = await client.pushImage('cli/app', 'tmp');
    assert.equal((await client.fetch('/v2/cli/app/manifests/tmp', { method: 'DELETE' })).status, 202);

    const gc = await runKilnCli(['gc', '--data-dir', dataDir, '--database-url', url, '--grace', '0', '--json']);
    assert.equal(gc.code, 0, gc.stderr);
    const report = JSON.parse(gc.stdout) as { deleted: { manifests: number; blobs: number }; items: { manifests: string[] } };
    assert.deepEqual(report.items.manifests, [`cli/app@${dropped.manifest.digest}`]);
    assert.ok(report.deleted.blobs >= 2, 'the dropped image’s own blobs went too');
    assert.ok((await client.getManifest('cli/app', 'v1', OCI_MANIFEST)).bytes.equals(kept.manifest.bytes));
    for (const l of kept.layers) assert.ok((await client.getBlob('cli/app', l.digest)).bytes.equals(l.bytes));
    assert.equal((await client.getManifest('cli/app', dropped.manifest.digest, OCI_MANIFEST)).res.status, 404);

    const fsck = await runKilnCli(['fsck', '--data-dir', dataDir, '--json'], { KILN_DATABASE_URL: url });
    assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
    const checked = JSON.parse(fsck.stdout) as { ok: boolean; checked: { manifests: number; tags: number } };
    assert.equal(checked.ok, true);
    assert.equal(checked.checked.tags, 1);
  });

  it('kiln token records keys in the database', async () => {
    const created = await runKilnCli(['token', '--data-dir', dataDir, '--database-url', url, 'create', '--tenant', 'acme']);
    assert.equal(created.code, 0, created.stderr);
    const jti = /API key (\S+) for/.exec(created.stderr)?.[1];
    assert.ok(jti, created.stderr);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      const { rows } = await db.query<{ tenant: string }>('SELECT tenant FROM api_keys WHERE jti = $1', [jti]);
      assert.deepEqual(rows, [{ tenant: 'acme' }]);
    } finally {
      await db.end();
    }
    const revoked = await runKilnCli(['token', '--data-dir', dataDir, 'revoke', jti], { KILN_DATABASE_URL: url });
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, new RegExp(`revoked ${jti}`));
  });

  it('refuses a database URL that is not PostgreSQL, or one it cannot reach, saying which and without its password', async () => {
    const res = await runKilnCli(['fsck', '--data-dir', dataDir, '--database-url', 'mysql://x']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /must be a postgres:\/\/ \(or postgresql:\/\/\) URL/);
    const down = await runKilnCli(['fsck', '--data-dir', dataDir, '--database-url', 'postgres://kiln:s3cret@127.0.0.1:1/kiln']);
    assert.notEqual(down.code, 0);
    assert.match(down.stderr, /cannot open the PostgreSQL database postgres:\/\/kiln:\*\*\*@127\.0\.0\.1:1\/kiln/);
    assert.doesNotMatch(down.stderr, /s3cret/);
  });
});
