// HTTP-level tests of the /v2 API (OCI Distribution Spec v1.1) against a real
// in-process server: every endpoint, the error answers, and concurrency.
import assert from 'node:assert/strict';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { storedOf } from './helpers/stored.js';
import {
  DOCKER_CONFIG,
  DOCKER_LAYER_GZIP,
  DOCKER_LIST,
  DOCKER_MANIFEST,
  OCI_EMPTY,
  OCI_INDEX,
  OCI_LAYER_GZIP,
  OCI_MANIFEST,
  RegistryClient,
  TEST_CONFIG,
  blob,
  descriptor,
  digestOf,
  expectError,
  manifestBlob,
  randomBlob,
  rawRequest,
  waitFor,
  type Blob,
} from './helpers/registry.js';

let server: TestKiln;
let reg: RegistryClient;
let base: string;

before(async () => {
  server = await startKiln();
  base = server.url;
  reg = new RegistryClient(base);
});
after(async () => {
  await server?.close();
});

const MISSING = `sha256:${'0'.repeat(64)}`;

// ---- base ----------------------------------------------------------------------

describe('GET /v2/', () => {
  it('answers 200 with Docker-Distribution-API-Version: registry/2.0', async () => {
    for (const p of ['/v2/', '/v2']) {
      const res = await reg.fetch(p);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
      assert.deepEqual(await res.json(), {});
    }
    const head = await reg.fetch('/v2/', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('docker-distribution-api-version'), 'registry/2.0');
  });

  it('unknown endpoints are a 404 JSON error, wrong methods a 405 UNSUPPORTED', async () => {
    await expectError(await reg.fetch('/v2/foo'), { status: 404, code: 'NAME_UNKNOWN' });
    await expectError(await reg.fetch('/v2/foo/bar/baz/unknown'), { status: 404, code: 'NAME_UNKNOWN' });
    const res = await reg.fetch('/v2/foo/tags/list', { method: 'DELETE' });
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
    await expectError(res, { status: 405, code: 'UNSUPPORTED' });
    await expectError(await reg.fetch('/v2/foo/blobs/uploads/', { method: 'GET' }), { status: 405, code: 'UNSUPPORTED' });
    await expectError(await reg.fetch(`/v2/foo/blobs/${MISSING}`, { method: 'PUT', body: 'x' }), { status: 405, code: 'UNSUPPORTED' });
    const options = await reg.fetch('/v2/foo/manifests/latest', { method: 'OPTIONS' });
    assert.equal(options.headers.get('allow'), 'GET, HEAD, PUT, DELETE');
    await expectError(options, { status: 405, code: 'UNSUPPORTED' });
  });

  it('serves /healthz and Prometheus /metrics', async () => {
    assert.equal((await reg.fetch('/healthz')).status, 200);
    const metrics = await reg.fetch('/metrics');
    assert.equal(metrics.status, 200);
    const text = await metrics.text();
    assert.match(text, /kiln_http_requests_total\{[^}]*route="base_get"/);
  });
});

// ---- blobs ---------------------------------------------------------------------

describe('blobs: GET, HEAD, Range, DELETE', () => {
  const repo = 'blobs/get';
  const data = randomBlob(10_000);
  before(async () => {
    const res = await reg.pushBlobMonolithic(repo, data);
    assert.equal(res.status, 201);
  });

  it('a blob GET is counted in /metrics, though its body is written past fastify', async () => {
    const scrape = async () => (await reg.fetch('/metrics')).text();
    const bytesSent = (text: string) => Number(/^kiln_http_bytes_sent_total (\d+)/m.exec(text)?.[1] ?? NaN);
    const before = bytesSent(await scrape());
    assert.equal((await reg.getBlob(repo, data.digest)).res.status, 200);
    const after = await scrape();
    assert.ok(bytesSent(after) >= before + data.size, `bytes sent ${before} → ${bytesSent(after)}`);
    assert.match(after, /kiln_http_requests_total\{[^}]*route="blob_get"[^}]*status="200"[^}]*\} [1-9]/);
  });

  it('GET returns the bytes with Content-Length, Docker-Content-Digest and octet-stream', async () => {
    const { res, bytes } = await reg.getBlob(repo, data.digest);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), String(data.size));
    assert.equal(res.headers.get('docker-content-digest'), data.digest);
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    assert.equal(res.headers.get('accept-ranges'), 'bytes');
    assert.ok(bytes.equals(data.bytes));
  });

  it('HEAD has the same headers and no body', async () => {
    const res = await reg.fetch(`/v2/${repo}/blobs/${data.digest}`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), String(data.size));
    assert.equal(res.headers.get('docker-content-digest'), data.digest);
    assert.equal((await res.arrayBuffer()).byteLength, 0);
  });

  // [Range header, expected start, expected end (inclusive)]
  const ranges: [string, number, number][] = [
    ['bytes=0-0', 0, 0],
    ['bytes=100-199', 100, 199],
    ['bytes=9000-', 9000, 9999],
    ['bytes=-10', 9990, 9999],
    ['bytes=-20000', 0, 9999],
    ['bytes=9990-50000', 9990, 9999],
  ];
  for (const [header, start, end] of ranges) {
    it(`Range ${header} → 206 with bytes ${start}-${end}`, async () => {
      const { res, bytes } = await reg.getBlob(repo, data.digest, { range: header });
      assert.equal(res.status, 206);
      assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/${data.size}`);
      assert.equal(res.headers.get('content-length'), String(end - start + 1));
      assert.equal(res.headers.get('docker-content-digest'), data.digest);
      assert.ok(bytes.equals(data.bytes.subarray(start, end + 1)));
    });
  }

  it('HEAD with Range → 206 headers only', async () => {
    const res = await reg.fetch(`/v2/${repo}/blobs/${data.digest}`, { method: 'HEAD', headers: { range: 'bytes=0-9' } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('content-length'), '10');
    assert.equal(res.headers.get('content-range'), `bytes 0-9/${data.size}`);
  });

  for (const header of ['bytes=10000-', 'bytes=20000-30000', 'bytes=50-10', 'bytes=-0', 'bytes=0-1,5-6', 'pages=1-2']) {
    it(`unsatisfiable Range ${header} → 416 with Content-Range bytes */size`, async () => {
      const res = await reg.fetch(`/v2/${repo}/blobs/${data.digest}`, { headers: { range: header } });
      assert.equal(res.headers.get('content-range'), `bytes */${data.size}`);
      await expectError(res, { status: 416, code: ['BLOB_UPLOAD_INVALID', 'RANGE_INVALID', 'SIZE_INVALID'] });
    });
  }

  it('an empty blob is served with Content-Length 0', async () => {
    const empty = blob(Buffer.alloc(0));
    assert.equal((await reg.pushBlobMonolithic(repo, empty)).status, 201);
    const { res, bytes } = await reg.getBlob(repo, empty.digest);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), '0');
    assert.equal(bytes.length, 0);
  });

  it('unknown blobs are 404 BLOB_UNKNOWN; HEAD 404 has no body', async () => {
    await expectError(await reg.fetch(`/v2/${repo}/blobs/${MISSING}`), { status: 404, code: 'BLOB_UNKNOWN' });
    await expectError(await reg.fetch(`/v2/${repo}/blobs/${MISSING}`, { method: 'HEAD' }), { status: 404, code: 'BLOB_UNKNOWN' }, 'HEAD');
  });

  it('a blob is visible only in the repos that hold it', async () => {
    await expectError(await reg.fetch(`/v2/blobs/other/blobs/${data.digest}`), { status: 404, code: 'BLOB_UNKNOWN' });
  });

  it('a blob whose bytes are gone from the store is a clean 404 BLOB_UNKNOWN (GET, Range and HEAD), not a broken 200', async () => {
    const lost = randomBlob(5000);
    assert.equal((await reg.pushBlobMonolithic('blobs/lost', lost)).status, 201);
    await (await storedOf(server)).removeBlobBytes(lost.digest);
    await expectError(await reg.fetch(`/v2/blobs/lost/blobs/${lost.digest}`, { method: 'HEAD' }), { status: 404, code: 'BLOB_UNKNOWN' }, 'HEAD');
    for (const headers of [{}, { range: 'bytes=0-99' }] as Record<string, string>[]) {
      const res = await reg.fetch(`/v2/blobs/lost/blobs/${lost.digest}`, { headers });
      const text = await res.clone().text();
      assert.equal(res.headers.get('content-length'), String(Buffer.byteLength(text)));
      assert.equal(res.headers.get('content-range'), null);
      await expectError(res, { status: 404, code: 'BLOB_UNKNOWN' });
    }
  });

  it('DELETE → 202, then 404; a second DELETE is 404 BLOB_UNKNOWN', async () => {
    const victim = randomBlob(100);
    assert.equal((await reg.pushBlobMonolithic('blobs/del', victim)).status, 201);
    const del = await reg.fetch(`/v2/blobs/del/blobs/${victim.digest}`, { method: 'DELETE' });
    assert.equal(del.status, 202);
    await expectError(await reg.fetch(`/v2/blobs/del/blobs/${victim.digest}`), { status: 404, code: 'BLOB_UNKNOWN' });
    await expectError(await reg.fetch(`/v2/blobs/del/blobs/${victim.digest}`, { method: 'DELETE' }), { status: 404, code: 'BLOB_UNKNOWN' });
  });
});

// ---- uploads -------------------------------------------------------------------

async function startSession(repo: string): Promise<{ location: URL; uuid: string }> {
  const res = await reg.fetch(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  assert.equal(res.status, 202);
  const location = new URL(res.headers.get('location')!, base);
  return { location, uuid: res.headers.get('docker-upload-uuid')! };
}

function withDigest(location: URL, digest: string): URL {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u;
}

/** The upload sessions with anything in the store (files in uploads/, or objects and multipart uploads in the bucket). */
async function uploadFiles(): Promise<string[]> {
  return (await storedOf(server)).uploadIds();
}

/** A request body streamed with chunked transfer encoding (no Content-Length). */
function streamed(parts: Buffer[]): RequestInit {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const p of parts) controller.enqueue(new Uint8Array(p));
      controller.close();
    },
  });
  return { body, duplex: 'half' } as RequestInit;
}

describe('uploads', () => {
  it('POST opens a session: 202, Location, Docker-Upload-UUID, Range 0-0, Content-Length 0', async () => {
    const res = await reg.fetch('/v2/up/session/blobs/uploads/', { method: 'POST' });
    assert.equal(res.status, 202);
    const uuid = res.headers.get('docker-upload-uuid');
    assert.ok(uuid && uuid.length > 0);
    const location = res.headers.get('location')!;
    assert.ok(location.includes(uuid!), location);
    assert.equal(res.headers.get('range'), '0-0');
    assert.equal(res.headers.get('content-length'), '0');
    const status = await fetch(new URL(location, base));
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-0');
    assert.equal(status.headers.get('docker-upload-uuid'), uuid);
    assert.ok(status.headers.get('location'));
  });

  it('monolithic POST ?digest= → 201 with Location and Docker-Content-Digest', async () => {
    const b = randomBlob(3000);
    const res = await reg.pushBlobMonolithic('up/mono', b);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('docker-content-digest'), b.digest);
    assert.equal(new URL(res.headers.get('location')!, base).pathname, `/v2/up/mono/blobs/${b.digest}`);
    assert.ok((await reg.getBlob('up/mono', b.digest)).bytes.equals(b.bytes));
  });

  it('POST + PUT ?digest= with the whole body (BuildKit) → 201', async () => {
    const b = randomBlob(70_000);
    const res = await reg.pushBlob('up/buildkit', b);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('docker-content-digest'), b.digest);
    assert.ok(res.headers.get('location'));
    assert.ok((await reg.getBlob('up/buildkit', b.digest)).bytes.equals(b.bytes));
  });

  it('streamed PATCH (chunked transfer encoding), then PUT without a body', async () => {
    const b = randomBlob(200_000);
    const { location, uuid } = await startSession('up/stream');
    const patch = await fetch(location, { method: 'PATCH', headers: { 'content-type': 'application/octet-stream' }, ...streamed([b.bytes.subarray(0, 70_000), b.bytes.subarray(70_000)]) });
    assert.equal(patch.status, 202);
    assert.equal(patch.headers.get('range'), `0-${b.size - 1}`);
    assert.equal(patch.headers.get('docker-upload-uuid'), uuid);
    const next = new URL(patch.headers.get('location')!, base);
    const put = await fetch(withDigest(next, b.digest), { method: 'PUT' });
    assert.equal(put.status, 201);
    assert.equal(put.headers.get('docker-content-digest'), b.digest);
    assert.ok((await reg.getBlob('up/stream', b.digest)).bytes.equals(b.bytes));
  });

  it('chunked PATCH with Content-Range, status in between, out-of-order chunk → 416, final chunk on PUT', async () => {
    const b = randomBlob(30_000);
    const [c1, c2, c3] = [b.bytes.subarray(0, 10_000), b.bytes.subarray(10_000, 20_000), b.bytes.subarray(20_000)];
    const { location } = await startSession('up/chunks');
    const p1 = await fetch(location, { method: 'PATCH', body: c1, headers: { 'content-range': '0-9999', 'content-type': 'application/octet-stream' } });
    assert.equal(p1.status, 202);
    assert.equal(p1.headers.get('range'), '0-9999');
    let loc = new URL(p1.headers.get('location')!, base);

    const status = await fetch(loc);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-9999');

    // A chunk that skips ahead, and one that repeats what is there, are both out of order.
    const skip = await fetch(loc, { method: 'PATCH', body: c3, headers: { 'content-range': '20000-29999' } });
    assert.equal(skip.headers.get('range'), '0-9999');
    await expectError(skip, { status: 416, code: 'BLOB_UPLOAD_INVALID' });
    const again = await fetch(loc, { method: 'PATCH', body: c1, headers: { 'content-range': '0-9999' } });
    await expectError(again, { status: 416, code: 'BLOB_UPLOAD_INVALID' });

    const p2 = await fetch(loc, { method: 'PATCH', body: c2, headers: { 'content-range': '10000-19999' } });
    assert.equal(p2.status, 202);
    assert.equal(p2.headers.get('range'), '0-19999');
    loc = new URL(p2.headers.get('location')!, base);
    const put = await fetch(withDigest(loc, b.digest), { method: 'PUT', body: c3, headers: { 'content-range': '20000-29999', 'content-type': 'application/octet-stream' } });
    assert.equal(put.status, 201);
    assert.ok((await reg.getBlob('up/chunks', b.digest)).bytes.equals(b.bytes));
  });

  for (const bogus of ['bytes=0-9', 'abc', '10-5', '-5', '0-', '0-9/100', '0x0-0x9']) {
    it(`bogus Content-Range "${bogus}" is refused and the session goes on`, async () => {
      const b = randomBlob(10);
      const { location } = await startSession('up/bogus');
      const bad = await fetch(location, { method: 'PATCH', body: b.bytes, headers: { 'content-range': bogus } });
      await expectError(bad, { status: [400, 416], code: 'BLOB_UPLOAD_INVALID' });
      const status = await fetch(location);
      assert.equal(status.status, 204);
      assert.equal(status.headers.get('range'), '0-0');
      const ok = await fetch(location, { method: 'PATCH', body: b.bytes, headers: { 'content-range': '0-9' } });
      assert.equal(ok.status, 202);
      assert.equal((await fetch(withDigest(location, b.digest), { method: 'PUT' })).status, 201);
    });
  }

  it('Content-Range that disagrees with Content-Length is refused', async () => {
    const { location } = await startSession('up/bogus');
    const res = await fetch(location, { method: 'PATCH', body: Buffer.alloc(10), headers: { 'content-range': '0-19' } });
    await expectError(res, { status: [400, 416], code: ['BLOB_UPLOAD_INVALID', 'SIZE_INVALID'] });
  });

  it('a streamed chunk shorter than its Content-Range is SIZE_INVALID', async () => {
    const { location } = await startSession('up/short');
    const res = await fetch(location, { method: 'PATCH', headers: { 'content-range': '0-99' }, ...streamed([Buffer.alloc(50)]) });
    await expectError(res, { status: [400, 416], code: ['SIZE_INVALID', 'BLOB_UPLOAD_INVALID'] });
  });

  it('PUT without ?digest= is DIGEST_INVALID', async () => {
    const { location } = await startSession('up/nodigest');
    await expectError(await fetch(location, { method: 'PUT', body: 'abc' }), { status: 400, code: 'DIGEST_INVALID' });
  });

  it('wrong digest on PUT: DIGEST_INVALID, nothing visible, session and temp file gone', async () => {
    const b = randomBlob(5000);
    const claimed = randomBlob(5000);
    const { location, uuid } = await startSession('up/wrong');
    await expectError(await fetch(withDigest(location, claimed.digest), { method: 'PUT', body: b.bytes }), { status: 400, code: 'DIGEST_INVALID' });
    for (const d of [b.digest, claimed.digest]) {
      await expectError(await reg.fetch(`/v2/up/wrong/blobs/${d}`, { method: 'HEAD' }), { status: 404, code: 'BLOB_UNKNOWN' }, 'HEAD');
    }
    await expectError(await fetch(location), { status: 404, code: 'BLOB_UPLOAD_UNKNOWN' });
    assert.ok(!(await uploadFiles()).includes(uuid));
  });

  it('wrong digest on monolithic POST: DIGEST_INVALID, nothing visible', async () => {
    const b = randomBlob(5000);
    const claimed = randomBlob(10);
    const before = (await uploadFiles()).length;
    const res = await reg.fetch(`/v2/up/wrong2/blobs/uploads/?digest=${claimed.digest}`, { method: 'POST', body: b.bytes });
    await expectError(res, { status: 400, code: 'DIGEST_INVALID' });
    for (const d of [b.digest, claimed.digest]) {
      await expectError(await reg.fetch(`/v2/up/wrong2/blobs/${d}`), { status: 404, code: ['BLOB_UNKNOWN', 'NAME_UNKNOWN'] });
    }
    assert.equal((await uploadFiles()).length, before);
  });

  it('a truncated body (client gone mid-upload) makes nothing visible and the server keeps serving', async () => {
    const b = randomBlob(256 * 1024);
    const filesBefore = (await uploadFiles()).length;
    // Observe the server finishing with the aborted request (it notices the abort on its own schedule).
    const service = server.kiln.registry;
    const original = service.uploadBlob;
    let settled: Promise<unknown> | undefined;
    service.uploadBlob = function (this: typeof service, ...args: Parameters<typeof original>) {
      const p = original.apply(this, args);
      settled = p.catch(() => undefined);
      return p;
    };
    const none = await rawRequest(base, 'POST', `/v2/up/trunc/blobs/uploads/?digest=${b.digest}`, {
      headers: { 'content-length': b.size, 'content-type': 'application/octet-stream' },
      body: b.bytes,
      truncateAt: 100_000,
    });
    assert.equal(none, null);
    await waitFor(() => settled !== undefined, 5000, 'the server to start the monolithic upload');
    await settled;
    service.uploadBlob = original;
    // The monolithic POST's session was never handed to the client: it must not linger.
    assert.equal((await uploadFiles()).length, filesBefore);
    const { location } = await startSession('up/trunc');
    const none2 = await rawRequest(base, 'PUT', withDigest(location, b.digest).pathname + withDigest(location, b.digest).search, {
      headers: { 'content-length': b.size },
      body: b.bytes,
      truncateAt: 50_000,
    });
    assert.equal(none2, null);
    // The server notices the aborted bodies on its own schedule; the blob must never appear meanwhile.
    for (let i = 0; i < 5; i++) {
      await expectError(await reg.fetch(`/v2/up/trunc/blobs/${b.digest}`, { method: 'HEAD' }), { status: 404, code: 'BLOB_UNKNOWN' }, 'HEAD');
      assert.equal((await reg.fetch('/v2/')).status, 200);
    }
    // The complete upload still works afterwards.
    assert.equal((await reg.pushBlobMonolithic('up/trunc', b)).status, 201);
    assert.ok((await reg.getBlob('up/trunc', b.digest)).bytes.equals(b.bytes));
  });

  it('DELETE cancels a session: 204, then 404 BLOB_UPLOAD_UNKNOWN everywhere', async () => {
    const { location, uuid } = await startSession('up/cancel');
    await fetch(location, { method: 'PATCH', body: Buffer.alloc(100) });
    const del = await fetch(location, { method: 'DELETE' });
    assert.equal(del.status, 204);
    assert.ok(!(await uploadFiles()).includes(uuid));
    await expectError(await fetch(location), { status: 404, code: 'BLOB_UPLOAD_UNKNOWN' });
    await expectError(await fetch(location, { method: 'PATCH', body: 'x' }), { status: 404, code: 'BLOB_UPLOAD_UNKNOWN' });
    await expectError(await fetch(withDigest(location, MISSING), { method: 'PUT' }), { status: 404, code: 'BLOB_UPLOAD_UNKNOWN' });
    await expectError(await fetch(location, { method: 'DELETE' }), { status: 404, code: 'BLOB_UPLOAD_UNKNOWN' });
  });

  it('sessions belong to their repository; unknown ids are BLOB_UPLOAD_UNKNOWN', async () => {
    const { uuid } = await startSession('up/owner');
    await expectError(await reg.fetch(`/v2/up/thief/blobs/uploads/${uuid}`), { status: 404, code: 'BLOB_UPLOAD_UNKNOWN' });
    await expectError(await reg.fetch(`/v2/up/thief/blobs/uploads/${uuid}`, { method: 'PATCH', body: 'x' }), { status: 404, code: 'BLOB_UPLOAD_UNKNOWN' });
    await expectError(await reg.fetch('/v2/up/owner/blobs/uploads/not-a-session'), { status: 404, code: 'BLOB_UPLOAD_UNKNOWN' });
    await expectError(await reg.fetch('/v2/up/owner/blobs/uploads/..'), { status: [400, 404], code: ['BLOB_UPLOAD_UNKNOWN', 'NAME_INVALID', 'NAME_UNKNOWN'] });
  });

  it('cross-repo mount → 201 with Location and Docker-Content-Digest', async () => {
    const b = randomBlob(4096);
    assert.equal((await reg.pushBlobMonolithic('mount/src', b)).status, 201);
    const res = await reg.fetch(`/v2/mount/dst/blobs/uploads/?mount=${b.digest}&from=mount/src`, { method: 'POST' });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('docker-content-digest'), b.digest);
    assert.equal(new URL(res.headers.get('location')!, base).pathname, `/v2/mount/dst/blobs/${b.digest}`);
    assert.ok((await reg.getBlob('mount/dst', b.digest)).bytes.equals(b.bytes));
  });

  it('mount of a blob the source does not hold → 202 upload session (fallback)', async () => {
    const b = randomBlob(100);
    assert.equal((await reg.pushBlobMonolithic('mount/other', b)).status, 201);
    const cases = [
      `mount=${b.digest}&from=mount/empty`, // source has no such blob
      `mount=${MISSING}&from=mount/other`, // digest unknown
      `mount=${b.digest}&from=Mount/BAD`, // invalid source name
      `mount=sha256:nothex&from=mount/other`, // malformed digest
      `mount=${MISSING}`, // no from, and no repository holds it
    ];
    for (const q of cases) {
      const res = await reg.fetch(`/v2/mount/fallback/blobs/uploads/?${q}`, { method: 'POST' });
      assert.equal(res.status, 202, q);
      assert.ok(res.headers.get('location'), q);
      assert.ok(res.headers.get('docker-upload-uuid'), q);
    }
    await expectError(await reg.fetch(`/v2/mount/fallback/blobs/${b.digest}`), { status: 404, code: 'BLOB_UNKNOWN' });
  });

  it('stale sessions and orphan upload files expire; fresh sessions stay', async () => {
    const own = await startKiln();
    try {
      const c = new RegistryClient(own.url);
      const open = async () => {
        const res = await c.fetch('/v2/up/stale/blobs/uploads/', { method: 'POST' });
        return { location: new URL(res.headers.get('location')!, own.url), uuid: res.headers.get('docker-upload-uuid')! };
      };
      const stale = await open();
      assert.equal((await fetch(stale.location, { method: 'PATCH', body: Buffer.alloc(10) })).status, 202);
      const stored = await storedOf(own);
      await stored.plantOrphanUpload('orphan-from-a-crash');
      const cutoff = Date.now() + 1;
      await waitFor(() => Date.now() > cutoff, 1000, 'the clock to pass the cutoff');
      const fresh = await open();

      const removed = await own.kiln.registry.expireUploads({ idleBefore: cutoff, emptyBefore: cutoff });
      assert.equal(removed, 2);
      await expectError(await fetch(stale.location), { status: 404, code: 'BLOB_UPLOAD_UNKNOWN' });
      assert.equal((await fetch(fresh.location)).status, 204);
      assert.deepEqual(await stored.uploadIds(), [fresh.uuid]);
    } finally {
      await own.close();
    }
  });

  it('concurrent uploads of the same blob all succeed and leave one intact copy', async () => {
    const b = randomBlob(1024 * 1024);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => (i % 2 ? reg.pushBlobMonolithic('up/same', b) : reg.pushBlob('up/same', b))),
    );
    for (const r of results) assert.equal(r.status, 201);
    assert.ok((await reg.getBlob('up/same', b.digest)).bytes.equals(b.bytes));
    assert.deepEqual(await (await storedOf(server)).copiesOf(b.digest), [b.digest.slice('sha256:'.length)]);
  });
});

// ---- sha512 --------------------------------------------------------------------

describe('sha512 everywhere', () => {
  const repo = 'algo/sha512';
  const layer = randomBlob(50_000, 'sha512');
  const config = blob(JSON.stringify({ sha512: true }), 'sha512');

  it('monolithic and chunked uploads by sha512; GET/HEAD answer in sha512', async () => {
    const mono = await reg.pushBlobMonolithic(repo, layer);
    assert.equal(mono.status, 201);
    assert.equal(mono.headers.get('docker-content-digest'), layer.digest);
    const { location } = await startSession(repo);
    const patch = await fetch(location, { method: 'PATCH', body: config.bytes, headers: { 'content-range': `0-${config.size - 1}` } });
    assert.equal(patch.status, 202);
    const put = await fetch(withDigest(new URL(patch.headers.get('location')!, base), config.digest), { method: 'PUT' });
    assert.equal(put.status, 201);
    assert.equal(put.headers.get('docker-content-digest'), config.digest);
    for (const b of [layer, config]) {
      const { res, bytes } = await reg.getBlob(repo, b.digest);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('docker-content-digest'), b.digest);
      assert.ok(bytes.equals(b.bytes));
      const head = await reg.fetch(`/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' });
      assert.equal(head.headers.get('docker-content-digest'), b.digest);
    }
    const ranged = await reg.getBlob(repo, layer.digest, { range: 'bytes=-100' });
    assert.equal(ranged.res.status, 206);
    assert.ok(ranged.bytes.equals(layer.bytes.subarray(-100)));
  });

  it('wrong sha512 digest is DIGEST_INVALID', async () => {
    const b = randomBlob(100);
    const claimed = `sha512:${'f'.repeat(128)}`;
    await expectError(await reg.fetch(`/v2/${repo}/blobs/uploads/?digest=${claimed}`, { method: 'POST', body: b.bytes }), { status: 400, code: 'DIGEST_INVALID' });
  });

  it('sha512 mount', async () => {
    const res = await reg.fetch(`/v2/algo/sha512-mounted/blobs/uploads/?mount=${layer.digest}&from=${repo}`, { method: 'POST' });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('docker-content-digest'), layer.digest);
  });

  it('manifest PUT and GET by sha512 digest, referencing sha512 blobs', async () => {
    const m = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(config, TEST_CONFIG), layers: [descriptor(layer, OCI_LAYER_GZIP)] }, 'sha512');
    const put = await reg.putManifest(repo, m.digest, m.bytes, OCI_MANIFEST);
    assert.equal(put.status, 201, await put.clone().text());
    assert.equal(put.headers.get('docker-content-digest'), m.digest);
    assert.equal(new URL(put.headers.get('location')!, base).pathname, `/v2/${repo}/manifests/${m.digest}`);
    const { res, bytes } = await reg.getManifest(repo, m.digest);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-content-digest'), m.digest);
    assert.equal(res.headers.get('content-type'), OCI_MANIFEST);
    assert.ok(bytes.equals(m.bytes));
    const head = await reg.fetch(`/v2/${repo}/manifests/${m.digest}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('docker-content-digest'), m.digest);
    // The same bytes by a wrong sha512 digest are refused.
    await expectError(await reg.putManifest(repo, `sha512:${'e'.repeat(128)}`, m.bytes, OCI_MANIFEST), { status: 400, code: 'DIGEST_INVALID' });
  });
});

// ---- malformed digests ---------------------------------------------------------

describe('malformed digests: 400 DIGEST_INVALID or 404, never 500', () => {
  const bad = [
    'sha256:xyz',
    `sha256:${'A'.repeat(64)}`,
    `sha256:${'a'.repeat(63)}`,
    `sha512:${'a'.repeat(64)}`,
    'sha256:',
    'notadigest',
    `SHA256:${'a'.repeat(64)}`,
    'sha256:..%2F..%2Fkiln.db',
    '%00',
  ];
  const unsupported = ['md5:d41d8cd98f00b204e9800998ecf8427e', `sha384:${'a'.repeat(96)}`];
  before(async () => {
    await reg.pushImage('digests/bad', 'v1');
  });
  const expectBad = async (res: Response, method = 'GET') => {
    await expectError(res, { status: [400, 404], code: ['DIGEST_INVALID', 'BLOB_UNKNOWN', 'MANIFEST_UNKNOWN', 'MANIFEST_INVALID', 'NAME_UNKNOWN', 'UNSUPPORTED'] }, method);
  };
  for (const d of [...bad, ...unsupported]) {
    it(`${d}`, async () => {
      for (const method of ['GET', 'HEAD', 'DELETE']) {
        await expectBad(await reg.fetch(`/v2/digests/bad/blobs/${d}`, { method }), method);
      }
      if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(decodeURIComponent(d))) {
        // Anything that cannot be a tag is a digest reference to a manifest.
        for (const method of ['GET', 'HEAD', 'DELETE']) await expectBad(await reg.fetch(`/v2/digests/bad/manifests/${d}`, { method }), method);
      }
      await expectBad(await reg.fetch(`/v2/digests/bad/referrers/${d}`));
      const post = await reg.fetch(`/v2/digests/bad/blobs/uploads/?digest=${d}`, { method: 'POST', body: 'x' });
      await expectError(post, { status: 400, code: ['DIGEST_INVALID', 'UNSUPPORTED'] });
      const { location } = await startSession('digests/bad');
      const put = await fetch(`${location.toString()}?digest=${d}`, { method: 'PUT', body: 'x' });
      await expectError(put, { status: 400, code: ['DIGEST_INVALID', 'UNSUPPORTED'] });
    });
  }
  it('a manifest PUT by a malformed digest is 400', async () => {
    const m = manifestBlob({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
    await expectError(await reg.putManifest('digests/bad', 'sha256:abc', m.bytes, OCI_INDEX), { status: 400, code: 'DIGEST_INVALID' });
  });
});

// ---- manifests -----------------------------------------------------------------

interface Kind {
  name: string;
  contentType: string;
  build(repo: string): Promise<Blob>;
}

/** Pushes two small images and returns an index of them. */
async function indexOf(repo: string, type: string, childType: string): Promise<Blob> {
  const children = [];
  for (const [i, platform] of [{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux', variant: 'v8' }].entries()) {
    const img = await reg.pushImage(repo, `child-${i}`, { mediaType: childType, configType: childType === DOCKER_MANIFEST ? DOCKER_CONFIG : TEST_CONFIG });
    children.push(descriptor(img.manifest, childType, { platform }));
  }
  return manifestBlob({ schemaVersion: 2, mediaType: type, manifests: children });
}

const kinds: Kind[] = [
  {
    name: 'OCI image manifest',
    contentType: OCI_MANIFEST,
    async build(repo) {
      const config = blob(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, n: repo }));
      const layer = randomBlob(300);
      await reg.mustPushBlob(repo, config);
      await reg.mustPushBlob(repo, layer);
      // Bytes that a re-serialisation would change: spacing, key order, escapes.
      const text = `{\n  "schemaVersion": 2,\n  "mediaType": "${OCI_MANIFEST}",\n  "config": {"size": ${config.size}, "digest": "${config.digest}", "mediaType": "${TEST_CONFIG}"},\n  "layers": [{"mediaType":"${OCI_LAYER_GZIP}","digest":"${layer.digest}","size":${layer.size}}],\n  "annotations": {"note": "caf\\u00e9 ☕"}\n}\n`;
      return blob(Buffer.from(text));
    },
  },
  { name: 'OCI index', contentType: OCI_INDEX, build: (repo) => indexOf(repo, OCI_INDEX, OCI_MANIFEST) },
  {
    name: 'Docker schema 2 manifest',
    contentType: DOCKER_MANIFEST,
    async build(repo) {
      const img = await reg.pushImage(repo, 'docker-src', { mediaType: DOCKER_MANIFEST, configType: DOCKER_CONFIG });
      return manifestBlob({ ...img.doc, annotations: undefined, layers: img.layers.map((l) => descriptor(l, DOCKER_LAYER_GZIP)) });
    },
  },
  { name: 'Docker manifest list', contentType: DOCKER_LIST, build: (repo) => indexOf(repo, DOCKER_LIST, DOCKER_MANIFEST) },
  {
    name: 'artifact with artifactType',
    contentType: OCI_MANIFEST,
    async build(repo) {
      const empty = blob('{}');
      const payload = blob('{"spdxVersion":"SPDX-2.3"}');
      await reg.mustPushBlob(repo, empty);
      await reg.mustPushBlob(repo, payload);
      return manifestBlob({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: 'application/spdx+json',
        config: descriptor(empty, OCI_EMPTY),
        layers: [descriptor(payload, 'application/spdx+json')],
      });
    },
  },
  {
    name: 'artifact with its own manifest media type',
    contentType: 'application/vnd.example.artifact.manifest.v1+json',
    async build(repo) {
      const empty = blob('{}');
      await reg.mustPushBlob(repo, empty);
      return manifestBlob({
        schemaVersion: 2,
        mediaType: 'application/vnd.example.artifact.manifest.v1+json',
        artifactType: 'application/vnd.example.thing',
        config: descriptor(empty, OCI_EMPTY),
        layers: [],
      });
    },
  },
];

describe('manifests: PUT, GET, HEAD by tag and by digest for every kind', () => {
  for (const kind of kinds) {
    for (const by of ['tag', 'digest'] as const) {
      it(`${kind.name}, pushed by ${by}`, async () => {
        const repo = `manifests/${kind.name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${by}`;
        const m = await kind.build(repo);
        const ref = by === 'tag' ? 'v1.0' : m.digest;
        const put = await reg.putManifest(repo, ref, m.bytes, kind.contentType);
        assert.equal(put.status, 201, await put.clone().text());
        assert.equal(put.headers.get('docker-content-digest'), m.digest);
        assert.equal(new URL(put.headers.get('location')!, base).pathname, `/v2/${repo}/manifests/${m.digest}`);
        assert.equal(put.headers.get('oci-subject'), null);

        const refs = by === 'tag' ? ['v1.0', m.digest] : [m.digest];
        for (const r of refs) {
          const { res, bytes } = await reg.getManifest(repo, r, kind.contentType);
          assert.equal(res.status, 200);
          assert.ok(bytes.equals(m.bytes), 'exact bytes back');
          assert.equal(res.headers.get('content-type'), kind.contentType);
          assert.equal(res.headers.get('docker-content-digest'), m.digest);
          assert.equal(res.headers.get('content-length'), String(m.size));
          const head = await reg.fetch(`/v2/${repo}/manifests/${r}`, { method: 'HEAD', headers: { accept: kind.contentType } });
          assert.equal(head.status, 200);
          assert.equal(head.headers.get('content-type'), kind.contentType);
          assert.equal(head.headers.get('docker-content-digest'), m.digest);
          assert.equal(head.headers.get('content-length'), String(m.size));
          assert.equal((await head.arrayBuffer()).byteLength, 0);
        }
        if (by === 'digest') {
          const tags = await (await reg.fetch(`/v2/${repo}/tags/list`)).json();
          assert.ok(!(tags as { tags: string[] }).tags.includes(m.digest));
        }
      });
    }
  }

  it('a pushed manifest is also readable through the blob endpoint', async () => {
    const { manifest } = await reg.pushImage('manifests/asblob', 'latest');
    const { res, bytes } = await reg.getBlob('manifests/asblob', manifest.digest);
    assert.equal(res.status, 200);
    assert.ok(bytes.equals(manifest.bytes));
  });

  it('re-pushing a tag moves it; pushing the same manifest under a second tag keeps both', async () => {
    const repo = 'manifests/retag';
    const a = await reg.pushImage(repo, 'latest');
    await reg.mustPutManifest(repo, 'stable', a.manifest, OCI_MANIFEST);
    const b = await reg.pushImage(repo, 'latest');
    assert.equal((await reg.getManifest(repo, 'latest')).res.headers.get('docker-content-digest'), b.manifest.digest);
    assert.equal((await reg.getManifest(repo, 'stable')).res.headers.get('docker-content-digest'), a.manifest.digest);
    // Idempotent re-push of identical bytes.
    await reg.mustPutManifest(repo, 'stable', a.manifest, OCI_MANIFEST);
  });

  it('Kiln serves the stored type whatever the Accept header says', async () => {
    const { manifest } = await reg.pushImage('manifests/accept', 'latest');
    for (const accept of [undefined, '*/*', DOCKER_MANIFEST, OCI_INDEX, 'text/html']) {
      const { res, bytes } = await reg.getManifest('manifests/accept', 'latest', accept);
      assert.equal(res.status, 200, String(accept));
      assert.equal(res.headers.get('content-type'), OCI_MANIFEST);
      assert.ok(bytes.equals(manifest.bytes));
    }
  });

  it('umoci-style manifest without mediaType is stored with the Content-Type it was pushed with', async () => {
    const repo = 'manifests/umoci';
    const img = await reg.pushImage(repo, 'tmp');
    const m = manifestBlob({ schemaVersion: 2, config: img.doc.config, layers: img.doc.layers });
    await reg.mustPutManifest(repo, 'latest', m, OCI_MANIFEST);
    const { res, bytes } = await reg.getManifest(repo, 'latest');
    assert.equal(res.headers.get('content-type'), OCI_MANIFEST);
    assert.ok(bytes.equals(m.bytes));
  });
});

describe('manifests: references and validation', () => {
  it('missing config, layer or index child → MANIFEST_BLOB_UNKNOWN, nothing stored', async () => {
    const repo = 'refs/missing';
    const config = blob('{"c":1}');
    const layer = randomBlob(100);
    await reg.mustPushBlob(repo, config);
    const noLayer = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(config, TEST_CONFIG), layers: [descriptor(layer, OCI_LAYER_GZIP)] });
    const e = await expectError(await reg.putManifest(repo, 'a', noLayer.bytes, OCI_MANIFEST), { status: 400, code: 'MANIFEST_BLOB_UNKNOWN' });
    assert.match(e.message, new RegExp(layer.digest.slice(7, 20)));
    const noConfig = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(randomBlob(10), TEST_CONFIG), layers: [] });
    await expectError(await reg.putManifest(repo, 'b', noConfig.bytes, OCI_MANIFEST), { status: 400, code: 'MANIFEST_BLOB_UNKNOWN' });
    const noChild = manifestBlob({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [descriptor(randomBlob(10), OCI_MANIFEST)] });
    await expectError(await reg.putManifest(repo, 'c', noChild.bytes, OCI_INDEX), { status: 400, code: 'MANIFEST_BLOB_UNKNOWN' });
    for (const ref of ['a', 'b', 'c', noLayer.digest, noConfig.digest, noChild.digest]) {
      await expectError(await reg.fetch(`/v2/${repo}/manifests/${ref}`), { status: 404, code: 'MANIFEST_UNKNOWN' });
    }
    // Blobs of another repo do not count.
    await reg.mustPushBlob('refs/elsewhere', layer);
    await expectError(await reg.putManifest(repo, 'a', noLayer.bytes, OCI_MANIFEST), { status: 400, code: 'MANIFEST_BLOB_UNKNOWN' });
    // Once the blob is there the same bytes go in.
    await reg.mustPushBlob(repo, layer);
    await reg.mustPutManifest(repo, 'a', noLayer, OCI_MANIFEST);
  });

  it('an index child may be a blob (BuildKit cache index form)', async () => {
    const repo = 'refs/cache-index';
    const layer = randomBlob(200);
    const cacheConfig = blob('{"layers":[],"records":[]}');
    await reg.mustPushBlob(repo, layer);
    await reg.mustPushBlob(repo, cacheConfig);
    const m = manifestBlob({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [descriptor(layer, OCI_LAYER_GZIP), descriptor(cacheConfig, 'application/vnd.buildkit.cacheconfig.v0')],
    });
    await reg.mustPutManifest(repo, 'latest', m, OCI_INDEX);
    assert.ok((await reg.getManifest(repo, 'latest')).bytes.equals(m.bytes));
  });

  it('non-distributable and foreign layers need not be present', async () => {
    const repo = 'refs/nondist';
    const config = blob('{"nd":1}');
    await reg.mustPushBlob(repo, config);
    const oci = manifestBlob({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: descriptor(config, TEST_CONFIG),
      layers: [descriptor(randomBlob(10), 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', { urls: ['https://example.com/a'] })],
    });
    await reg.mustPutManifest(repo, 'oci', oci, OCI_MANIFEST);
    const docker = manifestBlob({
      schemaVersion: 2,
      mediaType: DOCKER_MANIFEST,
      config: descriptor(config, DOCKER_CONFIG),
      layers: [descriptor(randomBlob(10), 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', { urls: ['https://example.com/b'] })],
    });
    await reg.mustPutManifest(repo, 'docker', docker, DOCKER_MANIFEST);
  });

  it('a non-distributable layer naming a blob of another repo is refused (no blob without its repo)', async () => {
    // Another repo (another tenant's) holds a layer; knowing its digest and size must not make it readable here.
    const secret = randomBlob(64);
    await reg.mustPushBlob('refs/owner-of-secret', secret);
    const repo = 'refs/nondist-thief';
    const config = blob('{"thief":1}');
    await reg.mustPushBlob(repo, config);
    for (const mediaType of ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', OCI_LAYER_GZIP]) {
      const m = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(config, TEST_CONFIG), layers: [descriptor(secret, mediaType)] });
      const error = await expectError(await reg.putManifest(repo, 'stolen', m.bytes, OCI_MANIFEST), { status: 400, code: 'MANIFEST_BLOB_UNKNOWN' });
      assert.match(error.message, new RegExp(secret.digest));
    }
    await expectError(await reg.fetch(`/v2/${repo}/blobs/${secret.digest}`), { status: 404, code: 'BLOB_UNKNOWN' });
  });

  it('a descriptor size that disagrees with the blob is refused', async () => {
    const repo = 'refs/size';
    const config = blob('{"s":1}');
    await reg.mustPushBlob(repo, config);
    const m = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { ...descriptor(config, TEST_CONFIG), size: config.size + 1 }, layers: [] });
    await expectError(await reg.putManifest(repo, 'x', m.bytes, OCI_MANIFEST), { status: 400, code: ['MANIFEST_INVALID', 'SIZE_INVALID', 'MANIFEST_BLOB_UNKNOWN'] });
  });

  it('PUT by a digest that does not match the body → DIGEST_INVALID', async () => {
    const repo = 'refs/mismatch';
    const img = await reg.pushImage(repo, 'latest');
    const other = manifestBlob({ ...img.doc, annotations: { x: 'y' } });
    await expectError(await reg.putManifest(repo, img.manifest.digest, other.bytes, OCI_MANIFEST), { status: 400, code: 'DIGEST_INVALID' });
    await expectError(await reg.fetch(`/v2/${repo}/manifests/${other.digest}`), { status: 404, code: 'MANIFEST_UNKNOWN' });
  });

  it('manifests over 4 MiB are refused (with and without Content-Length)', async () => {
    const repo = 'refs/big';
    const img = await reg.pushImage(repo, 'latest');
    const big = Buffer.from(JSON.stringify({ ...img.doc, annotations: { pad: 'x'.repeat(4 * 1024 * 1024) } }));
    await expectError(await reg.putManifest(repo, 'big', big, OCI_MANIFEST), { status: [400, 413], code: ['MANIFEST_INVALID', 'SIZE_INVALID'] });
    await expectError(await reg.fetch(`/v2/${repo}/manifests/big`, { method: 'PUT', headers: { 'content-type': OCI_MANIFEST }, ...streamed([big.subarray(0, 1 << 20), big.subarray(1 << 20)]) }), {
      status: [400, 413],
      code: ['MANIFEST_INVALID', 'SIZE_INVALID'],
    });
    await expectError(await reg.fetch(`/v2/${repo}/manifests/big`), { status: 404, code: 'MANIFEST_UNKNOWN' });
    // Just under the limit is fine.
    const fits = manifestBlob({ ...img.doc, annotations: { pad: 'x'.repeat(4 * 1024 * 1024 - 2048) } });
    assert.ok(fits.size <= 4 * 1024 * 1024);
    await reg.mustPutManifest(repo, 'fits', fits, OCI_MANIFEST);
    assert.ok((await reg.getManifest(repo, 'fits')).bytes.equals(fits.bytes));
  });

  // [name, body, Content-Type, status, code]
  const invalid: [string, () => Buffer, string, number[], string[]][] = [
    ['bad JSON', () => Buffer.from('{"schemaVersion": 2,'), OCI_MANIFEST, [400], ['MANIFEST_INVALID']],
    ['empty body', () => Buffer.alloc(0), OCI_MANIFEST, [400], ['MANIFEST_INVALID']],
    ['Content-Type disagrees with mediaType', () => Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] })), OCI_MANIFEST, [400], ['MANIFEST_INVALID']],
    ['unknown media type', () => Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/x-unknown', config: { mediaType: TEST_CONFIG, digest: MISSING, size: 1 } })), 'application/x-unknown', [400, 415], ['MANIFEST_INVALID', 'UNSUPPORTED']],
    ['Docker schema 1', () => Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [], history: [] })), 'application/vnd.docker.distribution.manifest.v1+prettyjws', [400, 415], ['MANIFEST_INVALID', 'UNSUPPORTED']],
    ['descriptor with malformed digest', () => Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: 'sha256:zz', size: 1 }] })), OCI_INDEX, [400], ['DIGEST_INVALID', 'MANIFEST_INVALID']],
  ];
  for (const [name, body, contentType, status, code] of invalid) {
    it(`${name} → ${code.join('|')}`, async () => {
      await expectError(await reg.putManifest('refs/invalid', 'latest', body(), contentType), { status, code });
    });
  }

  it('invalid tags are refused', async () => {
    const m = manifestBlob({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
    for (const tag of ['-dash', '.dot', 'x'.repeat(129), 'a%20b']) {
      await expectError(await reg.putManifest('refs/tags', tag, m.bytes, OCI_INDEX), { status: 400, code: ['MANIFEST_INVALID', 'TAG_INVALID', 'NAME_INVALID'] });
    }
  });

  it('subject → OCI-Subject header', async () => {
    const repo = 'refs/subject';
    const img = await reg.pushImage(repo, 'latest');
    const empty = blob('{}');
    await reg.mustPushBlob(repo, empty);
    const sig = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/vnd.example.sig', config: descriptor(empty, OCI_EMPTY), layers: [], subject: descriptor(img.manifest, OCI_MANIFEST) });
    const res = await reg.mustPutManifest(repo, sig.digest, sig, OCI_MANIFEST);
    assert.equal(res.headers.get('oci-subject'), img.manifest.digest);
  });

  it('unknown manifests: MANIFEST_UNKNOWN in a known repo, NAME_UNKNOWN otherwise', async () => {
    await reg.pushImage('refs/known', 'latest');
    await expectError(await reg.fetch('/v2/refs/known/manifests/nope'), { status: 404, code: 'MANIFEST_UNKNOWN' });
    await expectError(await reg.fetch(`/v2/refs/known/manifests/${MISSING}`), { status: 404, code: 'MANIFEST_UNKNOWN' });
    await expectError(await reg.fetch('/v2/refs/known/manifests/nope', { method: 'HEAD' }), { status: 404, code: 'MANIFEST_UNKNOWN' }, 'HEAD');
    await expectError(await reg.fetch('/v2/refs/never/manifests/latest'), { status: 404, code: ['NAME_UNKNOWN', 'MANIFEST_UNKNOWN'] });
  });
});

describe('manifests: DELETE', () => {
  it('by digest: 202, then the manifest and its tags are gone', async () => {
    const repo = 'delete/by-digest';
    const { manifest } = await reg.pushImage(repo, 'latest');
    await reg.mustPutManifest(repo, 'other', manifest, OCI_MANIFEST);
    const del = await reg.fetch(`/v2/${repo}/manifests/${manifest.digest}`, { method: 'DELETE' });
    assert.equal(del.status, 202);
    for (const ref of [manifest.digest, 'latest', 'other']) {
      await expectError(await reg.fetch(`/v2/${repo}/manifests/${ref}`), { status: 404, code: 'MANIFEST_UNKNOWN' });
    }
    const tags = (await (await reg.fetch(`/v2/${repo}/tags/list`)).json()) as { tags: string[] };
    assert.deepEqual(tags.tags, []);
    await expectError(await reg.fetch(`/v2/${repo}/manifests/${manifest.digest}`, { method: 'DELETE' }), { status: 404, code: 'MANIFEST_UNKNOWN' });
  });

  it('by tag: 202, the tag is gone, the manifest stays', async () => {
    const repo = 'delete/by-tag';
    const { manifest } = await reg.pushImage(repo, 'latest');
    await reg.mustPutManifest(repo, 'keep', manifest, OCI_MANIFEST);
    const del = await reg.fetch(`/v2/${repo}/manifests/latest`, { method: 'DELETE' });
    assert.equal(del.status, 202);
    await expectError(await reg.fetch(`/v2/${repo}/manifests/latest`), { status: 404, code: 'MANIFEST_UNKNOWN' });
    assert.equal((await reg.getManifest(repo, manifest.digest)).res.status, 200);
    assert.equal((await reg.getManifest(repo, 'keep')).res.status, 200);
    await expectError(await reg.fetch(`/v2/${repo}/manifests/latest`, { method: 'DELETE' }), { status: 404, code: 'MANIFEST_UNKNOWN' });
  });
});

// ---- listings ------------------------------------------------------------------

/** Follows Link headers from `first` and returns every page's items and each page size. */
async function paginate(first: string, key: 'tags' | 'repositories'): Promise<{ items: string[]; pages: number[] }> {
  const items: string[] = [];
  const pages: number[] = [];
  let next: string | null = first;
  while (next) {
    const res = await reg.fetch(next);
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, string[]>;
    items.push(...body[key]!);
    pages.push(body[key]!.length);
    const link = res.headers.get('link');
    next = link ? /^<([^>]+)>;\s*rel="next"$/.exec(link)![1]! : null;
    assert.ok(pages.length < 50, 'pagination does not end');
  }
  return { items, pages };
}

describe('tags/list', () => {
  const repo = 'list/tags';
  const tags = ['v10', 'latest', 'v2', 'A-upper', 'v1', '_under', 'v1.0.0', 'zz'];
  before(async () => {
    const { manifest } = await reg.pushImage(repo, tags[0]!);
    for (const t of tags.slice(1)) await reg.mustPutManifest(repo, t, manifest, OCI_MANIFEST);
  });

  it('lists every tag in order without a Link', async () => {
    const res = await reg.fetch(`/v2/${repo}/tags/list`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /application\/json/);
    assert.equal(res.headers.get('link'), null);
    assert.deepEqual(await res.json(), { name: repo, tags: [...tags].sort() });
  });

  it('n and last page through with Link headers', async () => {
    const res = await reg.fetch(`/v2/${repo}/tags/list?n=3`);
    // Byte order, as the spec's lexical order: 'A-upper' < '_under' < 'latest' < …
    assert.equal(res.headers.get('link'), `</v2/${repo}/tags/list?n=3&last=latest>; rel="next"`);
    const { items, pages } = await paginate(`/v2/${repo}/tags/list?n=3`, 'tags');
    assert.deepEqual(items, [...tags].sort());
    assert.deepEqual(pages, [3, 3, 2]);
    const after = (await (await reg.fetch(`/v2/${repo}/tags/list?last=v10`)).json()) as { tags: string[] };
    assert.deepEqual(after.tags, ['v2', 'zz']);
    const exact = await reg.fetch(`/v2/${repo}/tags/list?n=${tags.length}`);
    assert.equal(exact.headers.get('link'), null);
    assert.equal(((await exact.json()) as { tags: string[] }).tags.length, tags.length);
  });

  it('bad n is 400; unknown repo is NAME_UNKNOWN', async () => {
    await expectError(await reg.fetch(`/v2/${repo}/tags/list?n=abc`), { status: 400, code: ['PAGINATION_NUMBER_INVALID', 'UNSUPPORTED'] });
    await expectError(await reg.fetch(`/v2/${repo}/tags/list?n=-1`), { status: 400, code: ['PAGINATION_NUMBER_INVALID', 'UNSUPPORTED'] });
    await expectError(await reg.fetch('/v2/list/nothing-here/tags/list'), { status: 404, code: 'NAME_UNKNOWN' });
  });
});

describe('_catalog (own server)', () => {
  let own: TestKiln;
  let c: RegistryClient;
  const repos = ['zeta', 'alpha', 'cache/global/node', 'builds/b-1', 'library/base', 'm'];
  before(async () => {
    own = await startKiln();
    c = new RegistryClient(own.url);
    for (const r of repos) await c.pushImage(r, 'latest');
  });
  after(async () => own?.close());

  it('lists every repository in order', async () => {
    const res = await c.fetch('/v2/_catalog');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('link'), null);
    assert.deepEqual(await res.json(), { repositories: [...repos].sort() });
  });

  it('n and last page through with Link headers', async () => {
    const first = await c.fetch('/v2/_catalog?n=2');
    assert.equal(first.headers.get('link'), '</v2/_catalog?n=2&last=builds%2Fb-1>; rel="next"');
    const items: string[] = [];
    let next: string | null = '/v2/_catalog?n=2';
    let pages = 0;
    while (next) {
      const res = await c.fetch(next);
      items.push(...((await res.json()) as { repositories: string[] }).repositories);
      const link = res.headers.get('link');
      next = link ? /^<([^>]+)>/.exec(link)![1]! : null;
      pages++;
    }
    assert.deepEqual(items, [...repos].sort());
    assert.equal(pages, 3);
    const after = (await (await c.fetch('/v2/_catalog?last=library/base')).json()) as { repositories: string[] };
    assert.deepEqual(after.repositories, ['m', 'zeta']);
  });
});

// ---- referrers -----------------------------------------------------------------

describe('referrers', () => {
  const repo = 'refer/app';
  let subject: Blob;
  const artifacts: { m: Blob; artifactType: string; annotations?: Record<string, string> }[] = [];
  before(async () => {
    subject = (await reg.pushImage(repo, 'latest')).manifest;
    const empty = blob('{}');
    const sbomConfig = blob('{"sbom-config":true}');
    await reg.mustPushBlob(repo, empty);
    await reg.mustPushBlob(repo, sbomConfig);
    const defs = [
      { artifactType: 'application/vnd.example.sig', annotations: { 'org.example.signer': 'alice' } },
      { artifactType: 'application/spdx+json' },
      { artifactType: 'application/vnd.example.sig', annotations: { 'org.example.signer': 'bob' } },
    ];
    for (const d of defs) {
      const m = manifestBlob({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: d.artifactType,
        config: descriptor(empty, OCI_EMPTY),
        layers: [],
        subject: descriptor(subject, OCI_MANIFEST),
        ...(d.annotations ? { annotations: d.annotations } : {}),
      });
      await reg.mustPutManifest(repo, m.digest, m, OCI_MANIFEST);
      artifacts.push({ m, ...d });
    }
    // Without artifactType the config media type is the artifact type.
    const m = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(sbomConfig, 'application/vnd.example.sbom.config'), layers: [], subject: descriptor(subject, OCI_MANIFEST) });
    await reg.mustPutManifest(repo, m.digest, m, OCI_MANIFEST);
    artifacts.push({ m, artifactType: 'application/vnd.example.sbom.config' });
  });

  const entry = (a: (typeof artifacts)[number]) => ({
    mediaType: OCI_MANIFEST,
    digest: a.m.digest,
    size: a.m.size,
    artifactType: a.artifactType,
    ...(a.annotations ? { annotations: a.annotations } : {}),
  });
  const sortByDigest = (xs: { digest: string }[]) => [...xs].sort((x, y) => x.digest.localeCompare(y.digest));

  it('lists every referrer as an OCI index', async () => {
    const res = await reg.fetch(`/v2/${repo}/referrers/${subject.digest}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), OCI_INDEX);
    assert.equal(res.headers.get('oci-filters-applied'), null);
    const body = (await res.json()) as { schemaVersion: number; mediaType: string; manifests: { digest: string }[] };
    assert.equal(body.schemaVersion, 2);
    assert.equal(body.mediaType, OCI_INDEX);
    assert.deepEqual(sortByDigest(body.manifests), sortByDigest(artifacts.map(entry)));
  });

  it('filters by artifactType and says so in OCI-Filters-Applied', async () => {
    const res = await reg.fetch(`/v2/${repo}/referrers/${subject.digest}?artifactType=${encodeURIComponent('application/vnd.example.sig')}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('oci-filters-applied'), 'artifactType');
    const body = (await res.json()) as { manifests: { digest: string }[] };
    assert.deepEqual(sortByDigest(body.manifests), sortByDigest(artifacts.filter((a) => a.artifactType === 'application/vnd.example.sig').map(entry)));
    const none = (await (await reg.fetch(`/v2/${repo}/referrers/${subject.digest}?artifactType=application/none`)).json()) as { manifests: unknown[] };
    assert.deepEqual(none.manifests, []);
  });

  it('an empty index when nothing refers to the digest (also for unknown repos)', async () => {
    for (const p of [`/v2/${repo}/referrers/${MISSING}`, `/v2/refer/unknown/referrers/${MISSING}`]) {
      const res = await reg.fetch(p);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), OCI_INDEX);
      assert.deepEqual(await res.json(), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
    }
  });

  it('referrers pushed before their subject are listed; deleted ones disappear', async () => {
    const r = 'refer/early';
    const empty = blob('{}');
    await reg.mustPushBlob(r, empty);
    const ghost = `sha256:${'9'.repeat(64)}`;
    const m = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/x-early', config: descriptor(empty, OCI_EMPTY), layers: [], subject: { mediaType: OCI_MANIFEST, digest: ghost, size: 10 } });
    await reg.mustPutManifest(r, m.digest, m, OCI_MANIFEST);
    let body = (await (await reg.fetch(`/v2/${r}/referrers/${ghost}`)).json()) as { manifests: { digest: string }[] };
    assert.deepEqual(body.manifests.map((x) => x.digest), [m.digest]);
    assert.equal((await reg.fetch(`/v2/${r}/manifests/${m.digest}`, { method: 'DELETE' })).status, 202);
    body = (await (await reg.fetch(`/v2/${r}/referrers/${ghost}`)).json()) as { manifests: { digest: string }[] };
    assert.deepEqual(body.manifests, []);
  });
});

// ---- names ---------------------------------------------------------------------

describe('repository names', () => {
  const invalidPaths = [
    '/v2/a/../b/tags/list',
    '/v2/a/%2e%2e/b/tags/list',
    '/v2/../etc/tags/list',
    '/v2/%2e%2e/%2e%2e/manifests/latest',
    '/v2/UPPER/tags/list',
    '/v2/library/Base/manifests/latest',
    '/v2/a//b/tags/list',
    '/v2/a/./b/blobs/uploads/',
    '/v2/-a/tags/list',
    '/v2/a%00b/tags/list',
    '/v2/%ff/tags/list',
  ];
  for (const p of invalidPaths) {
    it(`${p} → 400 NAME_INVALID`, async () => {
      for (const method of p.endsWith('/uploads/') ? ['POST'] : ['GET']) {
        const res = await rawRequest(base, method, p);
        assert.ok(res);
        assert.equal(res.status, 400, res.body);
        assert.match(String(res.headers['content-type']), /application\/json/);
        const body = JSON.parse(res.body) as { errors: { code: string; message: string }[] };
        assert.equal(body.errors[0]!.code, 'NAME_INVALID');
        assert.ok('detail' in body.errors[0]!);
      }
    });
  }

  it('a push to an invalid name writes nothing', async () => {
    const before = await uploadFiles();
    const res = await rawRequest(base, 'POST', `/v2/x/../../escape/blobs/uploads/?digest=${digestOf('abc')}`, { body: Buffer.from('abc'), headers: { 'content-length': 3 } });
    assert.equal(res!.status, 400);
    assert.deepEqual(await uploadFiles(), before);
  });

  it('nested names (cache/global/node, builds/<id>, deep) push and pull', async () => {
    for (const repo of ['cache/global/node', 'builds/2f8c1e3a-9b7d', 'a/b/c/d/e/f/g', 'x.y/z__w/q--r']) {
      const { manifest } = await reg.pushImage(repo, 'latest');
      const { res, bytes } = await reg.getManifest(repo, 'latest');
      assert.equal(res.status, 200, repo);
      assert.ok(bytes.equals(manifest.bytes));
      assert.deepEqual(await (await reg.fetch(`/v2/${repo}/tags/list`)).json(), { name: repo, tags: ['latest'] });
    }
  });
});

// ---- concurrency and robustness ------------------------------------------------

describe('concurrency', () => {
  it('20 parallel pushes sharing layers all land intact', async () => {
    const shared = [randomBlob(512 * 1024), randomBlob(64 * 1024)];
    const pushes = Array.from({ length: 20 }, async (_, i) => {
      const repo = i % 2 ? `par/shared` : `par/app-${i}`;
      const own = randomBlob(8 * 1024 + i);
      return { repo, tag: `t${i}`, ...(await reg.pushImage(repo, `t${i}`, { layers: [...shared, own] })) };
    });
    const done = await Promise.all(pushes);
    for (const p of done) {
      const { res, bytes } = await reg.getManifest(p.repo, p.tag);
      assert.equal(res.status, 200);
      assert.ok(bytes.equals(p.manifest.bytes));
      for (const l of [...p.layers, p.config]) {
        const got = await reg.getBlob(p.repo, l.digest);
        assert.equal(got.res.status, 200);
        assert.ok(got.bytes.equals(l.bytes), `${p.repo} ${l.digest}`);
      }
    }
    const tags = (await (await reg.fetch('/v2/par/shared/tags/list')).json()) as { tags: string[] };
    assert.equal(tags.tags.length, 10);
  });
});

describe('robustness', () => {
  it('keeps serving after bad input, and every stored blob hashes to its name', async () => {
    const garbage = [
      () => rawRequest(base, 'PUT', '/v2/rob/x/manifests/latest', { body: Buffer.from([0, 1, 2, 255]), headers: { 'content-type': OCI_MANIFEST, 'content-length': 4 } }),
      () => rawRequest(base, 'PATCH', '/v2/rob/x/blobs/uploads/%zz', { body: Buffer.from('x'), headers: { 'content-length': 1 } }),
      () => rawRequest(base, 'GET', `/v2/rob/x/blobs/${'%'.repeat(3)}`),
      () => rawRequest(base, 'GET', '/v2/rob/x/tags/list?n=99999999999999999999999'),
      () => rawRequest(base, 'GET', '/v2/_catalog?n=1e3'),
      () => rawRequest(base, 'GET', `/v2/rob/x/blobs/${MISSING}`, { headers: { range: 'bytes=99999999999999999999-' } }),
      () => rawRequest(base, 'PUT', `/v2/rob/x/manifests/${MISSING}`, { body: Buffer.from('{}'), headers: { 'content-length': 2, 'content-type': 'application/json' } }),
    ];
    for (const g of garbage) {
      const res = await g();
      assert.ok(res === null || (res.status >= 400 && res.status < 500), `${res?.status} ${res?.body}`);
    }
    assert.equal((await reg.fetch('/v2/')).status, 200);
    await reg.pushImage('rob/after', 'latest');
    assert.deepEqual(await (await storedOf(server)).corruptBlobs(), []);
  });

  it('nothing is written beside the data directory', async () => {
    const parent = await tempDir('kiln-outside-');
    const own = await startKiln({ dataDir: path.join(parent, 'data') });
    try {
      const c = new RegistryClient(own.url);
      await c.pushImage('out/side', 'latest');
      for (const p of ['/v2/../../x/blobs/uploads/', '/v2/%2e%2e/%2e%2e/x/blobs/uploads/', '/v2/out/side/blobs/uploads/..%2f..%2f..%2fx']) {
        await rawRequest(own.url, 'POST', p, { body: Buffer.from('abc'), headers: { 'content-length': 3 } });
        await rawRequest(own.url, 'PUT', p, { body: Buffer.from('abc'), headers: { 'content-length': 3 } });
      }
      const { location } = await (async () => {
        const res = await c.fetch('/v2/out/side/blobs/uploads/', { method: 'POST' });
        return { location: new URL(res.headers.get('location')!, own.url) };
      })();
      await fetch(`${location}?digest=${MISSING}`, { method: 'PUT', body: 'wrong' });
      assert.deepEqual(await readdir(parent), ['data']);
    } finally {
      await own.close();
      await rm(parent, { recursive: true, force: true });
    }
  });
});
