// Two `kiln serve` processes on one PostgreSQL database and one data
// directory: a bake queued through the one that runs no workers is run by a
// worker of the other, and both report it ready.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { layerTar, makeImage } from '../src/convert/testing.js';
import { OCI_MANIFEST } from '../src/oci/media-types.js';
import { pushBlob } from './helpers/fixtures.js';
import { spawnKiln, tempDir, type SpawnedKiln } from './helpers/kiln.js';
import { startPostgres, type TestPostgres } from './helpers/postgres.js';

describe('bakes across two kiln serve processes on one PostgreSQL', () => {
  let pg: TestPostgres;
  let dataDir: string;
  let apiOnly: SpawnedKiln;
  let withWorker: SpawnedKiln;

  before(async () => {
    pg = await startPostgres();
    const url = await pg.database();
    dataDir = await tempDir('kiln-two-bake-');
    const env = { KILN_DATABASE_URL: url, KILN_GC_INTERVAL: '0', KILN_FSYNC: 'false' };
    apiOnly = await spawnKiln(dataDir, { ...env, KILN_WORKERS: '0' });
    withWorker = await spawnKiln(dataDir, { ...env, KILN_WORKERS: '1' });
  });
  after(async () => {
    await Promise.all([apiOnly?.stop(), withWorker?.stop()]);
    await pg?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('runs a bake queued by one server on a worker of the other', async () => {
    const image = makeImage([{ tar: await layerTar([{ name: 'etc/motd', content: 'two servers\n' }]), compression: 'gzip' }]);
    for (const [digest, bytes] of image.blobs) assert.equal((await pushBlob(apiOnly.url, 'two/bake', digest, bytes)).status, 201);
    const put = await fetch(`${apiOnly.url}/v2/two/bake/manifests/v1`, { method: 'PUT', body: image.manifestBytes, headers: { 'content-type': OCI_MANIFEST } });
    assert.equal(put.status, 201);
    const digest = put.headers.get('docker-content-digest')!;
    const deadline = Date.now() + 60_000;
    let status = '';
    while (Date.now() < deadline) {
      const res = await fetch(`${apiOnly.url}/api/v1/images/two/bake:v1`);
      status = ((await res.json()) as { status: string }).status;
      if (status === 'ready' || status === 'failed') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 'ready');
    const other = (await (await fetch(`${withWorker.url}/api/v1/images/${digest}`)).json()) as { status: string; attempts: number };
    assert.equal(other.status, 'ready');
    assert.equal(other.attempts, 1);
    const disk = await fetch(`${withWorker.url}/api/v1/images/${digest}/disk`);
    assert.equal(disk.status, 200);
    assert.ok(Number(disk.headers.get('content-length')) > 0);
    await disk.arrayBuffer();
  });
});
