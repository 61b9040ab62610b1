// `kiln push`, `kiln images`, `kiln images inspect` and `kiln bake` against a real server.
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import { layerTar, makeImage, sha256, writeOciLayout } from '../src/convert/testing.js';
import { runKilnCli } from './helpers/cli.js';
import { fixtureManifests, pushFixture } from './helpers/fixtures.js';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';

/** A `docker save` archive of the legacy form: manifest.json, a config file and an uncompressed layer tar. */
async function dockerArchive(file: string, layer: Buffer, config: Buffer): Promise<void> {
  const pack = tar.pack();
  const add = (name: string, data: Buffer) => new Promise<void>((resolve, reject) => pack.entry({ name }, data, (err) => (err ? reject(err) : resolve())));
  const configName = `${sha256(config).slice(7)}.json`;
  await add(configName, config);
  await add('abc/layer.tar', layer);
  await add('manifest.json', Buffer.from(JSON.stringify([{ Config: configName, RepoTags: ['x:1'], Layers: ['abc/layer.tar'] }])));
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  await writeFile(file, Buffer.concat(chunks));
}

describe('image CLI', () => {
  let k: TestKiln;
  let scratch: string;
  const cli = (...args: string[]) => runKilnCli([...args, '--url', k.url]);
  before(async () => {
    k = await startKiln();
    scratch = await tempDir();
  });
  after(async () => {
    await k.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it('pushes an OCI layout, bakes it with a progress bar, lists and inspects it', async () => {
    const image = makeImage([{ tar: await layerTar([{ name: 'etc/hello', content: 'from the cli\n' }]), compression: 'gzip' }], { Cmd: ['/bin/hello'] });
    const layout = path.join(scratch, 'layout');
    await writeOciLayout(layout, image, 'v1');

    const push = await cli('push', layout, 'acme/cli:v1');
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stdout, new RegExp(`pushed acme/cli:v1@${sha256(image.manifestBytes)}`));

    const bake = await cli('bake', 'acme/cli:v1');
    assert.equal(bake.code, 0, bake.stderr);
    assert.match(bake.stdout, /acme\/cli:v1 ready: .* disk at \/api\/v1\/images\/sha256:/);

    const list = await cli('images');
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^REF\s+DIGEST\s+STATUS/m);
    assert.match(list.stdout, /acme\/cli:v1\s+sha256:\S+\s+ready\s+100%/);

    const inspect = await cli('images', 'inspect', 'acme/cli:v1');
    assert.equal(inspect.code, 0, inspect.stderr);
    const detail = JSON.parse(inspect.stdout) as { status: string; runConfig: { cmd: string[] } };
    assert.equal(detail.status, 'ready');
    assert.deepEqual(detail.runConfig.cmd, ['/bin/hello']);

    // A second push of the same image skips every blob and still succeeds.
    const again = await cli('push', layout, 'acme/cli:v2');
    assert.equal(again.code, 0, again.stderr);
  });

  it('pushes a docker-archive', async () => {
    const layer = await layerTar([{ name: 'srv/app', content: 'docker archive\n' }]);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/srv/app'] }, rootfs: { type: 'layers', diff_ids: [sha256(layer)] } }));
    const archive = path.join(scratch, 'image.tar');
    await dockerArchive(archive, layer, config);
    const push = await cli('push', archive, 'acme/archive:1');
    assert.equal(push.code, 0, push.stderr);
    const bake = await cli('bake', 'acme/archive:1');
    assert.equal(bake.code, 0, bake.stderr);
    const manifest = await fetch(`${k.url}/v2/acme/archive/manifests/1`);
    assert.equal(manifest.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.v2+json');
  });

  it('fails to bake a BuildKit cache, naming its media type', async () => {
    const fixture = (await fixtureManifests()).find((f) => f.file === 'cache-image-manifest.manifest.json')!;
    assert.equal((await pushFixture(k.url, fixture)).status, 201);
    const bake = await cli('bake', 'cache/global/node:latest');
    assert.notEqual(bake.code, 0);
    assert.match(bake.stderr, /not a runnable image: config media type application\/vnd\.buildkit\.cacheconfig\.v0 \(BuildKit cache\)/);
  });

  it('lists every page of images, each repo:tag once, and no deleted tag', async () => {
    // More names than a page holds (100), straight into the store: the CLI must follow `next`.
    const PAGED = 230;
    for (let i = 0; i < PAGED; i++) {
      await k.kiln.stores.images.upsert({ digest: `sha256:${i.toString(16).padStart(64, 'e')}`, repo: `paged/r${String(i).padStart(3, '0')}`, tag: 'v1', indexDigest: null, platform: null });
    }
    // acme/cli:v2 (pushed above) deleted as `skopeo delete` would not do it: by tag.
    assert.equal((await fetch(`${k.url}/v2/acme/cli/manifests/v2`, { method: 'DELETE' })).status, 202);

    const list = await cli('images');
    assert.equal(list.code, 0, list.stderr);
    const refs = list.stdout.trim().split('\n').slice(1).map((line) => line.split(/\s+/)[0]!);
    assert.equal(refs.filter((r) => r.startsWith('paged/')).length, PAGED);
    assert.equal(new Set(refs).size, refs.length, `listed twice: ${refs.filter((r, i) => refs.indexOf(r) !== i).join(', ')}`);
    assert.ok(refs.includes('acme/cli:v1'));
    assert.ok(!refs.includes('acme/cli:v2'), 'a deleted tag is not listed');
    const inspect = await cli('images', 'inspect', 'acme/cli:v2');
    assert.notEqual(inspect.code, 0);
    assert.match(inspect.stderr, /acme\/cli:v2 is not in the registry/);
  });

  it('says where it looked when no server answers', async () => {
    const res = await runKilnCli(['images', '--url', 'http://127.0.0.1:9']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /cannot reach Kiln at http:\/\/127\.0\.0\.1:9/);
  });
});
