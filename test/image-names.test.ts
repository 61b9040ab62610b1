// Issue 12, items 4, 5, 6 and the images part of 11, through the server:
// what a tenant sees of a baked image comes from its own names only; names
// follow their tags and manifests (skopeo delete, tag moves, manifest
// deletes) and the collector reclaims an image left without names; a
// manifest is baked when a tag or an index names it, in every client order,
// for the configured platforms only; the listing pages in the database
// through what the caller may see.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { layerTar, makeImage, sha256, type TestImage } from '../src/convert/testing.js';
import { OCI_INDEX, OCI_MANIFEST } from '../src/oci/media-types.js';
import type { ImageNamePage, ListedImageName } from '../src/store/image-store.js';
import type { RepoScope } from '../src/store/types.js';
import { pushBlob } from './helpers/fixtures.js';
import { startKiln, type TestKiln } from './helpers/kiln.js';

interface View {
  digest: string;
  repo: string;
  tag: string | null;
  ref: string;
  status: string;
  error: string | null;
  platform: string | null;
  indexDigest: string | null;
  source?: { repo: string; tag?: string };
  runConfig?: Record<string, unknown> | null;
}

async function getJson<T>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const res = await fetch(url, init);
  return { status: res.status, body: (await res.json()) as T };
}

async function waitReady(base: string, ref: string, headers: Record<string, string> = {}): Promise<View> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { status, body } = await getJson<View>(`${base}/api/v1/images/${ref}`, { headers });
    if (status === 200 && (body.status === 'ready' || body.status === 'failed')) return body;
    if (Date.now() > deadline) throw new Error(`bake of ${ref} did not finish: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function image(marker: string): Promise<TestImage> {
  return makeImage([{ tar: await layerTar([{ name: 'marker.txt', content: `${marker}\n` }]), compression: 'gzip' }], { Cmd: ['/marker'] });
}

async function pushBlobs(base: string, repo: string, img: TestImage): Promise<void> {
  for (const [digest, bytes] of img.blobs) assert.equal((await pushBlob(base, repo, digest, bytes)).status, 201);
}

async function putManifest(base: string, repo: string, reference: string, bytes: Buffer, contentType: string): Promise<string> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${reference}`, { method: 'PUT', body: bytes, headers: { 'content-type': contentType } });
  assert.equal(res.status, 201, await res.text());
  return res.headers.get('docker-content-digest')!;
}

function indexOf(children: [TestImage, string][]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: children.map(([img, architecture]) => ({
        mediaType: OCI_MANIFEST,
        digest: digestOfManifest(img),
        size: img.manifestBytes.length,
        platform: { os: 'linux', architecture },
      })),
    }),
  );
}

function digestOfManifest(img: TestImage): string {
  return sha256(img.manifestBytes);
}

/** A multi-platform push as docker, podman and buildx do it: blobs, each child by digest, then the index by tag. */
async function pushMultiArch(base: string, repo: string, tag: string, children: [TestImage, string][]): Promise<string> {
  for (const [img] of children) {
    await pushBlobs(base, repo, img);
    await putManifest(base, repo, digestOfManifest(img), img.manifestBytes, OCI_MANIFEST);
  }
  return putManifest(base, repo, tag, indexOf(children), OCI_INDEX);
}

async function listAll(base: string, headers: Record<string, string> = {}, limit?: number): Promise<{ views: View[]; pages: number }> {
  const views: View[] = [];
  let pages = 0;
  for (let next: string | null = `/api/v1/images${limit ? `?limit=${limit}` : ''}`; next !== null; pages++) {
    const { status, body }: { status: number; body: { images: View[]; next: string | null } } = await getJson(`${base}${next}`, { headers });
    assert.equal(status, 200, JSON.stringify(body));
    views.push(...body.images);
    next = body.next ?? null;
  }
  return { views, pages };
}

const bakeJob = (k: TestKiln, digest: string) => k.kiln.jobs.store.get(`bake:${digest}`);

describe('image names follow the registry, per tenant', () => {
  let k: TestKiln;
  before(async () => {
    k = await startKiln({ env: { KILN_PLATFORMS: 'linux/arm64', KILN_GC_INTERVAL: '0' } });
  });
  after(() => k.close());

  it("shows a tenant only its own source, index and platform, and keeps every tenant's name off the shared disk", async () => {
    const tiny = await image('tiny');
    const amd = await image('tiny amd64');
    const acmeIndex = await pushMultiArch(k.url, 'acme/tiny', 'v1', [[amd, 'amd64'], [tiny, 'arm64']]);
    await pushBlobs(k.url, 'other/tiny', tiny);
    await putManifest(k.url, 'other/tiny', 'v4', tiny.manifestBytes, OCI_MANIFEST);

    const other = await waitReady(k.url, 'other/tiny:v4');
    assert.equal(other.status, 'ready', other.error ?? '');
    assert.equal(other.digest, digestOfManifest(tiny));
    assert.deepEqual(other.source, { repo: 'other/tiny', tag: 'v4' });
    assert.equal(other.indexDigest, null, "acme's index is not other's");
    assert.equal(other.platform, null);
    assert.equal(other.runConfig?.source, undefined, 'the run config names no repo');
    assert.deepEqual(other.runConfig?.cmd, ['/marker']);

    const acme = await waitReady(k.url, 'acme/tiny:v1');
    assert.equal(acme.digest, other.digest, 'one disk for both');
    assert.deepEqual(acme.source, { repo: 'acme/tiny', tag: 'v1' });
    assert.equal(acme.indexDigest, acmeIndex);
    assert.equal(acme.platform, 'linux/arm64');
    assert.equal((await k.kiln.jobs.store.list('bake')).filter((j) => j.key === `bake:${other.digest}`).length, 1);

    const onDisk = await readFile(path.join(k.kiln.dirs.imageDir(other.digest), 'config.json'), 'utf8');
    assert.doesNotMatch(onDisk, /acme|other|"v1"|"v4"/, 'config.json beside the shared disk names no tenant');

    // Through the index digest: acme's name, since only acme's index names it.
    const byIndex = await getJson<View>(`${k.url}/api/v1/images/${acmeIndex}`);
    assert.equal(byIndex.body.repo, 'acme/tiny');
    assert.equal(byIndex.body.platform, 'linux/arm64');
  });

  it('bakes an index the same in every client order, for the configured platform only', async () => {
    // Children by digest first, then the index by tag (docker, podman, buildx, skopeo).
    const [amd1, arm1] = [await image('order1 amd64'), await image('order1 arm64')];
    for (const img of [amd1, arm1]) {
      await pushBlobs(k.url, 'acme/order1', img);
      await putManifest(k.url, 'acme/order1', digestOfManifest(img), img.manifestBytes, OCI_MANIFEST);
      assert.equal(await bakeJob(k, digestOfManifest(img)), null, 'a child pushed by digest waits for its index');
    }
    await putManifest(k.url, 'acme/order1', 'v1', indexOf([[amd1, 'amd64'], [arm1, 'arm64']]), OCI_INDEX);

    // The reverse: the index by digest first (crane, oras), then tagged; children pushed by digest again afterwards.
    const [amd2, arm2] = [await image('order2 amd64'), await image('order2 arm64')];
    for (const img of [amd2, arm2]) {
      await pushBlobs(k.url, 'acme/order2', img);
      await putManifest(k.url, 'acme/order2', digestOfManifest(img), img.manifestBytes, OCI_MANIFEST);
    }
    const index2 = indexOf([[amd2, 'amd64'], [arm2, 'arm64']]);
    const index2Digest = sha256(index2);
    await putManifest(k.url, 'acme/order2', index2Digest, index2, OCI_INDEX);
    await putManifest(k.url, 'acme/order2', 'v1', index2, OCI_INDEX);
    for (const img of [amd2, arm2]) await putManifest(k.url, 'acme/order2', digestOfManifest(img), img.manifestBytes, OCI_MANIFEST);

    for (const [repo, amd, arm] of [['acme/order1', amd1, arm1], ['acme/order2', amd2, arm2]] as const) {
      const view = await waitReady(k.url, `${repo}:v1`);
      assert.equal(view.status, 'ready', view.error ?? '');
      assert.equal(view.digest, digestOfManifest(arm), `${repo}: the arm64 child (KILN_PLATFORMS) is baked`);
      assert.equal(view.platform, 'linux/arm64');
      assert.equal(await bakeJob(k, digestOfManifest(amd)), null, `${repo}: the amd64 child is never baked`);
      const listed = (await listAll(k.url)).views.filter((v) => v.repo === repo);
      assert.deepEqual(listed.map((v) => `${v.ref} ${v.platform}`), [`${repo}:v1 linux/arm64`], `${repo}: listed once, by its tag`);
    }
  });

  it('leaves an image pushed by digest alone until asked, then bakes it on request', async () => {
    const lone = await image('by digest only');
    await pushBlobs(k.url, 'acme/lone', lone);
    const digest = await putManifest(k.url, 'acme/lone', digestOfManifest(lone), lone.manifestBytes, OCI_MANIFEST);
    assert.equal(await bakeJob(k, digest), null);
    const bake = await fetch(`${k.url}/api/v1/images/bake`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ref: `acme/lone@${digest}` }) });
    assert.equal(bake.status, 202);
    const view = await waitReady(k.url, `acme/lone@${digest}`);
    assert.equal(view.status, 'ready', view.error ?? '');
    assert.equal(view.ref, `acme/lone@${digest}`);
  });

  it('drops the names of deleted and moved tags and deleted manifests; the collector then reclaims the disk', async () => {
    const first = await image('names first');
    const second = await image('names second');
    await pushBlobs(k.url, 'acme/names', first);
    await pushBlobs(k.url, 'acme/names', second);
    await pushBlobs(k.url, 'other/names', first);
    const digest = await putManifest(k.url, 'acme/names', 'v1', first.manifestBytes, OCI_MANIFEST);
    await putManifest(k.url, 'acme/names', 'v2', first.manifestBytes, OCI_MANIFEST);
    await putManifest(k.url, 'acme/names', 'keep', first.manifestBytes, OCI_MANIFEST);
    await putManifest(k.url, 'other/names', 'v1', first.manifestBytes, OCI_MANIFEST);
    assert.equal((await waitReady(k.url, 'acme/names:v1')).status, 'ready');
    const refsOf = async () =>
      (await listAll(k.url)).views
        .filter((v) => v.repo.endsWith('/names'))
        .map((v) => `${v.ref} ${v.digest === digest ? 'first' : 'second'} ${v.status}`)
        .sort();
    assert.deepEqual(await refsOf(), ['acme/names:keep first ready', 'acme/names:v1 first ready', 'acme/names:v2 first ready', 'other/names:v1 first ready']);

    // skopeo delete: resolves the tag and deletes the manifest by digest, which removes every tag of it in that repo.
    await promisify(execFile)('skopeo', ['delete', '--tls-verify=false', `docker://${k.host}/acme/names:v1`]);
    assert.deepEqual(await refsOf(), ['other/names:v1 first ready'], 'no tag of the deleted manifest is listed');
    const gone = await fetch(`${k.url}/api/v1/images/acme/names:v2`);
    assert.equal(gone.status, 404);
    assert.match(((await gone.json()) as { error: { message: string } }).error.message, /not in the registry/);

    // A tag deleted by name, and a tag moved to another image.
    await putManifest(k.url, 'acme/names', 'v1', first.manifestBytes, OCI_MANIFEST);
    await putManifest(k.url, 'acme/names', 'v2', first.manifestBytes, OCI_MANIFEST);
    assert.equal((await fetch(`${k.url}/v2/acme/names/manifests/v2`, { method: 'DELETE' })).status, 202);
    await putManifest(k.url, 'acme/names', 'v1', second.manifestBytes, OCI_MANIFEST);
    await waitReady(k.url, 'acme/names:v1');
    assert.deepEqual(await refsOf(), ['acme/names:v1 second ready', 'other/names:v1 first ready']);

    // The last name of the first image goes: the collector takes its disk (grace 0, as `kiln gc --grace 0s`).
    assert.equal((await fetch(`${k.url}/v2/other/names/manifests/v1`, { method: 'DELETE' })).status, 202);
    assert.deepEqual(await refsOf(), ['acme/names:v1 second ready']);
    const report = await k.kiln.gc.run({ graceMs: 0, trigger: 'test' });
    assert.ok(report.items.disks.includes(digest), JSON.stringify(report.items.disks));
    assert.ok(!existsSync(k.kiln.dirs.imageDir(digest)));
    assert.equal(await bakeJob(k, digest), null, 'its finished bake goes too, so a later push bakes again');
    assert.ok(existsSync(k.kiln.dirs.imageDir(digestOfManifest(second))), 'a named image keeps its disk');
  });

  it('keeps a digest name while its manifest is in the repo: when the collector takes an untagged index, its names and disk go', async () => {
    const arm = await image('untagged index arm64');
    await pushBlobs(k.url, 'acme/untagged', arm);
    await putManifest(k.url, 'acme/untagged', digestOfManifest(arm), arm.manifestBytes, OCI_MANIFEST);
    const index = indexOf([[arm, 'arm64']]);
    const indexDigest = await putManifest(k.url, 'acme/untagged', sha256(index), index, OCI_INDEX);
    const view = await waitReady(k.url, `acme/untagged@${indexDigest}`);
    assert.equal(view.status, 'ready', view.error ?? '');
    assert.equal(view.ref, `acme/untagged@${digestOfManifest(arm)}`);
    assert.equal(view.indexDigest, indexDigest);

    const report = await k.kiln.gc.run({ graceMs: 0, trigger: 'test' });
    assert.ok(report.items.manifests.includes(`acme/untagged@${indexDigest}`), JSON.stringify(report.items.manifests));
    assert.equal((await fetch(`${k.url}/api/v1/images/acme/untagged@${indexDigest}`)).status, 404);
    assert.deepEqual((await listAll(k.url)).views.filter((v) => v.repo === 'acme/untagged'), []);
    // Nameless now: the next run reclaims the disk (this one decided before the names went, on PostgreSQL).
    await k.kiln.gc.run({ graceMs: 0, trigger: 'test' });
    assert.ok(!existsSync(k.kiln.dirs.imageDir(digestOfManifest(arm))));
  });

  it('the collector drops names whose tag went by a way the image service did not see (names from before the upgrade)', async () => {
    const img = await image('stale names');
    await pushBlobs(k.url, 'acme/stale', img);
    const digest = await putManifest(k.url, 'acme/stale', 'v1', img.manifestBytes, OCI_MANIFEST);
    assert.equal((await waitReady(k.url, 'acme/stale:v1')).status, 'ready');
    // As an older Kiln left them: names of tags long deleted, and of a manifest that is not in the repo.
    const store = k.kiln.stores.images;
    await store.upsert({ digest, repo: 'acme/stale', tag: 'deleted-long-ago', indexDigest: null, platform: null });
    await store.upsert({ digest, repo: 'acme/stale-too', tag: null, indexDigest: null, platform: null });
    const refs = async () => (await listAll(k.url)).views.filter((v) => v.repo.startsWith('acme/stale')).map((v) => v.ref);
    assert.deepEqual(await refs(), ['acme/stale:deleted-long-ago', 'acme/stale:v1', `acme/stale-too@${digest}`]);
    await k.kiln.gc.run({ trigger: 'test' });
    assert.deepEqual(await refs(), ['acme/stale:v1']);
    assert.ok(existsSync(k.kiln.dirs.imageDir(digest)));
  });
});

describe('image listing pages by what the caller may see', () => {
  let k: TestKiln;
  let keys: { big: string; small: string; admin: string };
  let namesRead = 0;
  const BIG = 3000;
  const SMALL = ['small/a', 'small/b', 'small/c'];
  const auth = (key: string) => ({ authorization: `Bearer ${key}` });

  before(async () => {
    k = await startKiln({ env: { KILN_AUTH: 'token', KILN_FSYNC: 'false', KILN_GC_INTERVAL: '0' } });
    const store = k.kiln.stores.images;
    const digest = (i: number) => `sha256:${i.toString(16).padStart(64, '0')}`;
    for (let i = 0; i < BIG; i++) await store.upsert({ digest: digest(i), repo: `big/r${String(i).padStart(5, '0')}`, tag: 'v1', indexDigest: null, platform: null });
    for (const [i, repo] of SMALL.entries()) await store.upsert({ digest: digest(BIG + i), repo, tag: 'v1', indexDigest: null, platform: null });
    // The same image named by two tenants, through an index in one of them.
    await store.upsert({ digest: digest(0), repo: 'small/shared', tag: 'v4', indexDigest: null, platform: null });
    await store.upsert({ digest: digest(1), repo: 'big/r00000', tag: 'multi', indexDigest: digest(99_999), platform: 'linux/arm64' });
    await store.upsert({ digest: digest(1), repo: 'small/shared', tag: 'v5', indexDigest: null, platform: null });
    const original = store.listNames.bind(store);
    store.listNames = async (page: ImageNamePage, scope: RepoScope): Promise<ListedImageName[]> => {
      const names = await original(page, scope);
      namesRead += names.length;
      return names;
    };
    const tokens = k.kiln.auth.tokens;
    keys = {
      big: (await tokens.createApiKey({ tenant: 'big', ttlSeconds: 600 })).token,
      small: (await tokens.createApiKey({ tenant: 'small', ttlSeconds: 600 })).token,
      admin: (await tokens.createApiKey({ admin: true, ttlSeconds: 600 })).token,
    };
  });
  after(() => k.close());

  it("reads a tenant's own names, not another tenant's thousands", async () => {
    namesRead = 0;
    const { views } = await listAll(k.url, auth(keys.small));
    assert.deepEqual(views.map((v) => v.ref), ['small/a:v1', 'small/b:v1', 'small/c:v1', 'small/shared:v4', 'small/shared:v5']);
    assert.ok(namesRead <= 10, `read ${namesRead} names to list 5`);
    const shared = views.find((v) => v.tag === 'v5')!;
    assert.equal(shared.indexDigest, null, "big's index is not small's");
    assert.equal(shared.platform, null);
  });

  it("answers a bare digest through the caller's own name", async () => {
    const digest = `sha256:${(1).toString(16).padStart(64, '0')}`;
    const small = await getJson<View>(`${k.url}/api/v1/images/${digest}`, { headers: auth(keys.small) });
    assert.equal(small.status, 200);
    assert.deepEqual([small.body.repo, small.body.tag, small.body.indexDigest, small.body.platform], ['small/shared', 'v5', null, null]);
    const big = await getJson<View>(`${k.url}/api/v1/images/${digest}`, { headers: auth(keys.big) });
    assert.deepEqual([big.body.repo, big.body.platform], ['big/r00000', 'linux/arm64']);
  });

  it('pages of a big tenant read about a page each and list every name once', async () => {
    namesRead = 0;
    const first = await getJson<{ images: View[]; next: string | null }>(`${k.url}/api/v1/images?limit=100`, { headers: auth(keys.big) });
    assert.equal(first.body.images.length, 100);
    assert.ok(namesRead <= 300, `read ${namesRead} names for a page of 100`);
    const { views, pages } = await listAll(k.url, auth(keys.big), 500);
    assert.equal(views.length, BIG + 1);
    assert.equal(new Set(views.map((v) => v.ref)).size, BIG + 1, 'no name twice');
    assert.equal(pages, Math.ceil((BIG + 1) / 500));
  });

  it('an admin sees every name; a bad limit or cursor is refused', async () => {
    const { views } = await listAll(k.url, auth(keys.admin), 1000);
    assert.equal(views.length, BIG + 1 + SMALL.length + 2);
    const bad = await getJson<{ error: { message: string } }>(`${k.url}/api/v1/images?limit=0`, { headers: auth(keys.admin) });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /limit must be a whole number from 1 to 1000/);
    const cursor = await getJson<{ error: { message: string } }>(`${k.url}/api/v1/images?cursor=nonsense`, { headers: auth(keys.admin) });
    assert.equal(cursor.status, 400);
    assert.match(cursor.body.error.message, /cursor/);
  });
});
