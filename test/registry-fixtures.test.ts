// Pushes every BuildKit v0.20.2 fixture (both cache forms, the re-export, the
// base and the built image) the way BuildKit does and pulls each back
// unchanged, with the headers BuildKit expects (compared against what
// docker-registry 2.8.2 answered, recorded in headers/).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fixtureBlobs, fixtureManifests, pushFixture, type FixtureManifest } from './helpers/fixtures.js';
import { buildkitFixtures, startKiln, type TestKiln } from './helpers/kiln.js';
import { RegistryClient, expectError } from './helpers/registry.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const CACHE_CONFIG = 'application/vnd.buildkit.cacheconfig.v0';
/** The Accept BuildKit sends to resolve a ref (import, base image). */
const WIDE_ACCEPT = `${DOCKER_MANIFEST}, ${DOCKER_LIST}, ${OCI_MANIFEST}, ${OCI_INDEX}, */*`;
/** The Accept the fixtures were fetched with (README). */
const CURL_ACCEPT = `${OCI_INDEX}, ${OCI_MANIFEST}, ${DOCKER_LIST}, ${DOCKER_MANIFEST}`;

let server: TestKiln;
let reg: RegistryClient;
let fixtures: FixtureManifest[];
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const fixtureBytes = (file: string) => readFile(path.join(buildkitFixtures, file));

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}
async function referenced(f: FixtureManifest): Promise<Descriptor[]> {
  const doc = JSON.parse((await fixtureBytes(f.file)).toString()) as { config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[] };
  return doc.manifests ?? [doc.config!, ...doc.layers!];
}

before(async () => {
  server = await startKiln();
  reg = new RegistryClient(server.url);
  fixtures = await fixtureManifests();
  assert.equal(fixtures.length, 5);
});
after(async () => {
  await server?.close();
});

describe('BuildKit fixtures: push as BuildKit does, pull back unchanged', () => {
  it('the fixture blobs hash to their names (sanity)', async () => {
    const blobs = await fixtureBlobs();
    assert.equal(blobs.length, 8);
    for (const b of blobs) assert.equal(sha256(b.bytes), b.digest);
  });

  it('every manifest PUT answers 201 with the expected Docker-Content-Digest', async () => {
    for (const f of fixtures) {
      const res = await pushFixture(server.url, f);
      assert.equal(res.status, 201, `${f.file}: ${await res.text()}`);
      assert.equal(res.headers.get('docker-content-digest'), f.digest, f.file);
      assert.equal(new URL(res.headers.get('location')!, server.url).pathname, `/v2/${f.repo}/manifests/${f.digest}`);
    }
  });

  it('each manifest reads back byte-identical by tag and by digest, with its Content-Type (BuildKit sends the exact type)', async () => {
    for (const f of fixtures) {
      const want = await fixtureBytes(f.file);
      assert.equal(sha256(want), f.digest);
      for (const [ref, accept] of [
        [f.tag, WIDE_ACCEPT],
        [f.digest, `${f.contentType}, */*`],
        [f.tag, CURL_ACCEPT],
      ] as const) {
        const { res, bytes } = await reg.getManifest(f.repo, ref, accept);
        assert.equal(res.status, 200, `${f.repo}:${ref}`);
        assert.ok(bytes.equals(want), `${f.file} by ${ref} differs`);
        assert.equal(res.headers.get('content-type'), f.contentType);
        assert.equal(res.headers.get('docker-content-digest'), f.digest);
        assert.equal(res.headers.get('content-length'), String(want.length));
      }
    }
  });

  it('HEAD by tag with the manifest\'s own type (BuildKit\'s skip check) gives the digest', async () => {
    for (const f of fixtures) {
      const res = await reg.fetch(`/v2/${f.repo}/manifests/${f.tag}`, { method: 'HEAD', headers: { accept: `${f.contentType}, */*` } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('docker-content-digest'), f.digest);
      assert.equal(res.headers.get('content-type'), f.contentType);
    }
  });

  it('every referenced blob (the cacheconfig included) reads back with its digest', async () => {
    for (const f of fixtures) {
      for (const d of await referenced(f)) {
        const accept = d.mediaType === CACHE_CONFIG ? `${CACHE_CONFIG}, */*` : `${d.mediaType}, */*`;
        const { res, bytes } = await reg.getBlob(f.repo, d.digest, { accept });
        assert.equal(res.status, 200, `${f.repo} ${d.digest}`);
        assert.equal(res.headers.get('content-type'), 'application/octet-stream');
        assert.equal(res.headers.get('docker-content-digest'), d.digest);
        assert.equal(bytes.length, d.size);
        assert.equal(sha256(bytes), d.digest);
      }
    }
  });

  it('response headers match docker-registry 2.8.2\'s (headers/*.txt)', async () => {
    const files = (await readdir(path.join(buildkitFixtures, 'headers'))).filter((f) => /-(manifest|blob)\.txt$/.test(f));
    assert.equal(files.length, 15);
    for (const file of files) {
      const recorded = parseHeaders(await readFile(path.join(buildkitFixtures, 'headers', file), 'utf8'));
      const prefix = file.split('.')[0]!;
      const f = fixtures.find((x) => x.file.split('.')[0] === prefix);
      assert.ok(f, file);
      const m = /^(.*)\.(GET|HEAD)-(manifest|blob)\.txt$/.exec(file)!;
      const [, subject, method, kind] = m as unknown as [string, string, 'GET' | 'HEAD', 'manifest' | 'blob'];
      let res: Response;
      if (kind === 'manifest') {
        assert.equal(`${subject}.json`, f.file);
        res = await reg.fetch(`/v2/${f.repo}/manifests/${f.tag}`, { method, headers: { accept: CURL_ACCEPT } });
      } else {
        const digest = sha256(await fixtureBytes(subject!));
        res = await reg.fetch(`/v2/${f.repo}/blobs/${digest}`, { method });
      }
      assert.equal(res.status, recorded.status, file);
      for (const [name, value] of recorded.headers) {
        if (name === 'date' || name === 'connection' || name === 'x-content-type-options') continue;
        assert.equal(res.headers.get(name), value, `${file}: ${name}`);
      }
      await res.arrayBuffer();
    }
  });
});

describe('content negotiation (headers/content-negotiation.txt)', () => {
  const table: { ref: string; accept: string; status: number; contentType: string; digest: string }[] = [];
  before(async () => {
    const text = await readFile(path.join(buildkitFixtures, 'headers', 'content-negotiation.txt'), 'utf8');
    for (const line of text.trim().split('\n').slice(1)) {
      const m = /^(\S+)\s+(.+?)\s+-> (\d+) (.+?) (\S+)$/.exec(line.trim());
      assert.ok(m, line);
      table.push({ ref: m[1]!, accept: m[2]!, status: Number(m[3]), contentType: m[4]!, digest: m[5]! });
    }
    assert.equal(table.length, 21);
  });

  const acceptHeader = (accept: string): string | undefined =>
    accept === 'NONE' ? undefined : accept === '(all four types)' ? CURL_ACCEPT : accept;

  it('where docker-registry answers 200, Kiln answers the same type and digest', async () => {
    for (const row of table.filter((r) => r.status === 200)) {
      const [repo, tag] = row.ref.split(':') as [string, string];
      const { res } = await reg.getManifest(repo, tag, acceptHeader(row.accept));
      assert.equal(res.status, 200, `${row.ref} ${row.accept}`);
      assert.equal(res.headers.get('content-type'), row.contentType);
      assert.equal(res.headers.get('docker-content-digest'), row.digest);
    }
  });

  it('Kiln deliberately serves the stored type whatever the Accept (*/*, none, other types) where docker-registry 2.8.2 answers 404', async () => {
    const rows = table.filter((r) => r.status === 404);
    assert.ok(rows.length > 0);
    for (const row of rows) {
      const [repo, tag] = row.ref.split(':') as [string, string];
      const f = fixtures.find((x) => x.repo === repo)!;
      const { res, bytes } = await reg.getManifest(repo, tag, acceptHeader(row.accept));
      assert.equal(res.status, 200, `${row.ref} ${row.accept}`);
      assert.equal(res.headers.get('content-type'), f.contentType);
      assert.equal(res.headers.get('docker-content-digest'), f.digest);
      assert.ok(bytes.equals(await fixtureBytes(f.file)));
    }
  });
});

describe('every Accept BuildKit sent for a manifest (http/buildkit-requests.jsonl)', () => {
  it('answers each fixture with its stored type and digest (exact-type Accepts name the type; Kiln ignores the rest)', async () => {
    const seen = new Set<string>();
    for (const line of (await readFile(path.join(buildkitFixtures, 'http', 'buildkit-requests.jsonl'), 'utf8')).trim().split('\n')) {
      const entry = JSON.parse(line) as { method?: string; url?: string; reqHeaders?: { accept?: string } };
      if (entry.url?.includes('/manifests/') && (entry.method === 'GET' || entry.method === 'HEAD')) seen.add(`${entry.method} ${entry.reqHeaders?.accept ?? ''}`);
    }
    assert.ok(seen.size >= 4, [...seen].join('\n'));
    for (const key of seen) {
      const [method, ...rest] = key.split(' ');
      const accept = rest.join(' ');
      for (const f of fixtures) {
        // Kiln answers with the stored type whatever the Accept lists (a documented choice; see content negotiation above).
        const res = await reg.fetch(`/v2/${f.repo}/manifests/${f.digest}`, { method, headers: { accept } });
        assert.equal(res.status, 200, `${method} ${f.repo} with ${accept}`);
        assert.equal(res.headers.get('content-type'), f.contentType);
        assert.equal(res.headers.get('docker-content-digest'), f.digest);
        if (method === 'GET') assert.equal(sha256(Buffer.from(await res.arrayBuffer())), f.digest);
      }
    }
  });
});

describe('BuildKit request sequences', () => {
  it('export: HEAD blob 404 → POST → one PUT → HEAD manifest 404 → PUT manifest; a second export skips everything', async () => {
    const f = fixtures.find((x) => x.file === 'cache-image-manifest.manifest.json')!;
    const repo = 'cache/seq/export';
    const descs = await referenced(f);
    const blobs = new Map((await fixtureBlobs()).map((b) => [b.digest, b.bytes]));
    for (const d of descs) {
      const head = await reg.fetch(`/v2/${repo}/blobs/${d.digest}`, { method: 'HEAD', headers: { accept: `${d.mediaType}, */*` } });
      assert.equal(head.status, 404);
      const post = await reg.fetch(`/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
      assert.equal(post.status, 202);
      const loc = new URL(post.headers.get('location')!, server.url);
      loc.searchParams.append('digest', d.digest);
      const put = await fetch(loc, { method: 'PUT', body: blobs.get(d.digest)!, headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(put.status, 201);
      assert.equal(put.headers.get('docker-content-digest'), d.digest);
      assert.ok(put.headers.get('location'));
    }
    await expectError(await reg.fetch(`/v2/${repo}/manifests/latest`, { method: 'HEAD', headers: { accept: `${OCI_MANIFEST}, */*` } }), { status: 404, code: 'MANIFEST_UNKNOWN' }, 'HEAD');
    const put = await reg.putManifest(repo, 'latest', await fixtureBytes(f.file), OCI_MANIFEST);
    assert.equal(put.status, 201);
    assert.equal(put.headers.get('docker-content-digest'), f.digest);
    // Second export: every HEAD says 200, nothing is uploaded.
    for (const d of descs) assert.equal((await reg.fetch(`/v2/${repo}/blobs/${d.digest}`, { method: 'HEAD' })).status, 200);
    const again = await reg.fetch(`/v2/${repo}/manifests/latest`, { method: 'HEAD', headers: { accept: `${OCI_MANIFEST}, */*` } });
    assert.equal(again.headers.get('docker-content-digest'), f.digest);
  });

  it('import: HEAD by tag (wide Accept) → GET by digest → GET cacheconfig; a missing cache is a 404', async () => {
    for (const f of fixtures.filter((x) => x.repo.startsWith('cache/'))) {
      const head = await reg.fetch(`/v2/${f.repo}/manifests/${f.tag}`, { method: 'HEAD', headers: { accept: WIDE_ACCEPT } });
      assert.equal(head.status, 200);
      const type = head.headers.get('content-type')!;
      const digest = head.headers.get('docker-content-digest')!;
      const { res, bytes } = await reg.getManifest(f.repo, digest, `${type}, */*`);
      assert.equal(res.status, 200);
      const doc = JSON.parse(bytes.toString()) as { config?: Descriptor; manifests?: Descriptor[] };
      const cacheConfig = doc.config ?? doc.manifests!.find((m) => m.mediaType === CACHE_CONFIG)!;
      assert.equal(cacheConfig.mediaType, CACHE_CONFIG);
      const cfg = await reg.getBlob(f.repo, cacheConfig.digest, { accept: `${CACHE_CONFIG}, */*` });
      assert.equal(cfg.res.status, 200);
      assert.equal(sha256(cfg.bytes), cacheConfig.digest);
    }
    const missing = await reg.fetch('/v2/cache/proxy/missing/manifests/latest', { method: 'HEAD', headers: { accept: WIDE_ACCEPT } });
    assert.equal(missing.status, 404);
  });

  it('pushing a hit image mounts its layers from the cache repos (201), as builds 3 and 4 did', async () => {
    const blobs = new Map((await fixtureBlobs()).map((b) => [b.digest, b.bytes]));
    const built = fixtures.find((x) => x.file === 'built-image.manifest.json')!;
    const builtDescs = await referenced(built);
    for (const cacheFile of ['cache-image-manifest.manifest.json', 'cache-index.index.json']) {
      // A cache repo holding exactly what the cache references (its layers and the cacheconfig).
      const cache = fixtures.find((x) => x.file === cacheFile)!;
      const from = `cache/mount-src/${cacheFile.split('.')[0]}`;
      for (const d of await referenced(cache)) await reg.mustPushBlob(from, { bytes: blobs.get(d.digest)!, digest: d.digest, size: d.size });
      assert.equal((await reg.putManifest(from, 'latest', await fixtureBytes(cache.file), cache.contentType)).status, 201);

      const target = `builds/mounted-${cacheFile.split('.')[0]}`;
      for (const d of builtDescs.slice(1)) {
        assert.equal((await reg.fetch(`/v2/${target}/blobs/${d.digest}`, { method: 'HEAD' })).status, 404);
        const res = await reg.fetch(`/v2/${target}/blobs/uploads/?mount=${d.digest}&from=${from}`, { method: 'POST' });
        assert.equal(res.status, 201, `${d.digest} from ${from}`);
        assert.equal(res.headers.get('docker-content-digest'), d.digest);
        assert.ok(res.headers.get('location'));
      }
      // The image config is not in the cache repo: that mount falls back to an upload session.
      const config = builtDescs[0]!;
      const cfg = await reg.fetch(`/v2/${target}/blobs/uploads/?mount=${config.digest}&from=${from}`, { method: 'POST' });
      assert.equal(cfg.status, 202);
      const loc = new URL(cfg.headers.get('location')!, server.url);
      loc.searchParams.set('digest', config.digest);
      assert.equal((await fetch(loc, { method: 'PUT', body: blobs.get(config.digest)! })).status, 201);
      const put = await reg.putManifest(target, 'latest', await fixtureBytes(built.file), OCI_MANIFEST);
      assert.equal(put.status, 201);
      assert.equal(put.headers.get('docker-content-digest'), built.digest);
      const { bytes } = await reg.getManifest(target, 'latest');
      assert.ok(bytes.equals(await fixtureBytes(built.file)));
    }
  });

  it('with only the referenced blobs (minimal/<repo>) every manifest goes in; before its blobs it is MANIFEST_BLOB_UNKNOWN', async () => {
    const blobs = new Map((await fixtureBlobs()).map((b) => [b.digest, b.bytes]));
    for (const f of fixtures) {
      const repo = `minimal/${f.repo}`;
      const body = await fixtureBytes(f.file);
      await expectError(await reg.putManifest(repo, f.tag, body, f.contentType), { status: 400, code: 'MANIFEST_BLOB_UNKNOWN' });
      for (const d of await referenced(f)) await reg.mustPushBlob(repo, { bytes: blobs.get(d.digest)!, digest: d.digest, size: d.size });
      const res = await reg.putManifest(repo, f.tag, body, f.contentType);
      assert.equal(res.status, 201, `${f.file}: ${await res.clone().text()}`);
      assert.equal(res.headers.get('docker-content-digest'), f.digest);
      const { bytes } = await reg.getManifest(repo, f.digest);
      assert.ok(bytes.equals(body));
    }
  });
});

function parseHeaders(text: string): { status: number; headers: [string, string][] } {
  const lines = text.replace(/\r/g, '').split('\n').filter(Boolean);
  const status = Number(/^HTTP\/\S+ (\d+)/.exec(lines[0]!)![1]);
  const headers = lines.slice(1).map((l): [string, string] => {
    const i = l.indexOf(':');
    return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
  });
  return { status, headers };
}
