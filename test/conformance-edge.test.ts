// The two requests the OCI distribution-spec conformance suite failed on, and
// the mount it skipped, done the way the suite does them (conformance/api.go:
// BlobPatchChunked with OutOfOrderChunks and PutLastChunk; BlobMount without
// a source repository).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer } from './helpers/auth.js';
import { startKiln, type TestKiln } from './helpers/kiln.js';
import { RegistryClient, randomBlob, type Alg, type Blob } from './helpers/registry.js';

let server: TestKiln;
let reg: RegistryClient;
before(async () => {
  server = await startKiln();
  reg = new RegistryClient(server.url);
});
after(() => server?.close());

/** PATCH or PUT one chunk with Content-Range, as the suite does. */
function sendChunk(location: URL, method: 'PATCH' | 'PUT', b: Blob, start: number, end: number): Promise<Response> {
  return fetch(location, {
    method,
    body: b.bytes.subarray(start, end + 1),
    headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${end}`, 'content-length': String(end - start + 1) },
  });
}

describe('chunked upload: an out-of-order chunk sent with the final PUT', () => {
  for (const alg of ['sha256', 'sha512'] as Alg[]) {
    it(`${alg}: is 416, leaves the session as it was, and the upload then completes`, async () => {
      const b = randomBlob(3 * 1024 + 7, alg);
      const chunk = Math.floor(b.size / 3) + 1;
      const post = await reg.fetch('/v2/conf/chunks/blobs/uploads/', { method: 'POST', headers: { 'content-length': '0' } });
      assert.equal(post.status, 202);
      let location = new URL(post.headers.get('location')!, server.url);

      // First chunk in order.
      const first = await sendChunk(location, 'PATCH', b, 0, chunk - 1);
      assert.equal(first.status, 202, await first.text());
      location = new URL(first.headers.get('location')!, server.url);

      // The last chunk, skipping the middle one, sent with the final PUT.
      const final = new URL(location);
      final.searchParams.set('digest', b.digest);
      const early = await sendChunk(final, 'PUT', b, 2 * chunk, b.size - 1);
      assert.equal(early.status, 416, await early.text());
      assert.ok(early.headers.get('location'), 'a 416 on an upload says where the session is');

      // The session is intact: GET says what it holds; the rest goes in order.
      const status = await fetch(location);
      assert.equal(status.status, 204);
      assert.equal(status.headers.get('range'), `0-${chunk - 1}`);
      const middle = await sendChunk(location, 'PATCH', b, chunk, 2 * chunk - 1);
      assert.equal(middle.status, 202, await middle.text());
      location = new URL(middle.headers.get('location')!, server.url);
      location.searchParams.set('digest', b.digest);
      const done = await sendChunk(location, 'PUT', b, 2 * chunk, b.size - 1);
      assert.equal(done.status, 201, await done.text());
      assert.ok((await reg.getBlob('conf/chunks', b.digest)).bytes.equals(b.bytes));
    });
  }

  it('an out-of-order PATCH is 416 too, with the upload URL', async () => {
    const b = randomBlob(2048);
    const post = await reg.fetch('/v2/conf/patch/blobs/uploads/', { method: 'POST' });
    const location = new URL(post.headers.get('location')!, server.url);
    const ahead = await sendChunk(location, 'PATCH', b, 1024, 2047);
    assert.equal(ahead.status, 416);
    assert.equal(ahead.headers.get('range'), '0-0');
    assert.ok(ahead.headers.get('location'));
  });
});

describe('POST ?mount=<digest> without from', () => {
  it('mounts a blob some repository holds (auth off: the caller may read them all)', async () => {
    const b = randomBlob(300);
    await reg.mustPushBlob('conf/source', b);
    const res = await reg.fetch(`/v2/conf/anywhere/blobs/uploads/?mount=${b.digest}`, { method: 'POST' });
    assert.equal(res.status, 201, await res.text());
    assert.equal(res.headers.get('docker-content-digest'), b.digest);
    assert.equal(new URL(res.headers.get('location')!, server.url).pathname, `/v2/conf/anywhere/blobs/${b.digest}`);
    assert.ok((await reg.getBlob('conf/anywhere', b.digest)).bytes.equals(b.bytes));
  });

  it('with auth on, mounts only from a repository the caller may pull; otherwise the client uploads', async () => {
    const auth = await startKiln({ env: { KILN_AUTH: 'token' } });
    try {
      const tokens = auth.kiln.auth.tokens;
      const acme = bearer((await tokens.createApiKey({ tenant: 'acme', ttlSeconds: 600 })).token);
      const umbrella = bearer((await tokens.createApiKey({ tenant: 'umbrella', ttlSeconds: 600 })).token);
      const b = randomBlob(500);
      const post = (repo: string, authorization: string, query: string) =>
        fetch(`${auth.url}/v2/${repo}/blobs/uploads/?${query}`, { method: 'POST', headers: { authorization } });
      const pushed = await fetch(`${auth.url}/v2/acme/base/blobs/uploads/?digest=${b.digest}`, { method: 'POST', body: b.bytes, headers: { authorization: acme } });
      assert.equal(pushed.status, 201, await pushed.text());
      // umbrella may not read acme/base: no mount, an upload session instead (and nothing leaks).
      const foreign = await post('umbrella/app', umbrella, `mount=${b.digest}`);
      assert.equal(foreign.status, 202);
      const probe = await fetch(`${auth.url}/v2/umbrella/app/blobs/${b.digest}`, { method: 'HEAD', headers: { authorization: umbrella } });
      assert.equal(probe.status, 404);
      // acme may: mounted.
      const own = await post('acme/app', acme, `mount=${b.digest}`);
      assert.equal(own.status, 201, await own.text());
    } finally {
      await auth.close();
    }
  });
});
