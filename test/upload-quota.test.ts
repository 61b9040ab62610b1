// Upload sessions are bounded: per tenant and in all, open at once and
// streaming at once (429 with Retry-After, naming the setting); a session
// costs no file and no memory until it receives data, and is removed soon if
// it never does.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { readdir, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { parseDigest } from '../src/oci/digest.js';
import { DataDir } from '../src/store/data-dir.js';
import { FsBlobStore } from '../src/store/fs/blob-store.js';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { expectError, randomBlob, waitFor } from './helpers/registry.js';

const servers: TestKiln[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

async function kilnWith(env: Record<string, string>): Promise<TestKiln> {
  const s = await startKiln({ env });
  servers.push(s);
  return s;
}

async function open(s: TestKiln, repo: string): Promise<Response> {
  return fetch(`${s.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
}

async function metric(s: TestKiln, line: RegExp): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const m = line.exec(text);
  assert.ok(m, `no metric matching ${line} in /metrics`);
  return Number(m[1]);
}

async function expectTooMany(res: Response, setting: string): Promise<void> {
  const error = await expectError(res, { status: 429, code: 'TOO_MANY_REQUESTS' });
  assert.match(error.message, new RegExp(setting));
  assert.match(res.headers.get('retry-after') ?? '', /^\d+$/);
}

describe('open upload sessions', () => {
  it('are capped per tenant and in all; a cancelled session frees its slot', async () => {
    const s = await kilnWith({ KILN_MAX_UPLOAD_SESSIONS_PER_TENANT: '5', KILN_MAX_UPLOAD_SESSIONS: '8' });
    const acme: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await open(s, 'acme/app');
      assert.equal(res.status, 202);
      acme.push(res.headers.get('location')!);
    }
    await expectTooMany(await open(s, 'acme/other'), 'KILN_MAX_UPLOAD_SESSIONS_PER_TENANT');
    // Monolithic uploads open a session too.
    const b = randomBlob(10);
    await expectTooMany(await fetch(`${s.url}/v2/acme/app/blobs/uploads/?digest=${b.digest}`, { method: 'POST', body: b.bytes }), 'KILN_MAX_UPLOAD_SESSIONS_PER_TENANT');
    // Another tenant (with auth off: another namespace) has its own quota, up to the total.
    for (let i = 0; i < 3; i++) assert.equal((await open(s, 'umbrella/app')).status, 202);
    await expectTooMany(await open(s, 'umbrella/app'), 'KILN_MAX_UPLOAD_SESSIONS');

    assert.equal((await fetch(new URL(acme[0]!, s.url), { method: 'DELETE' })).status, 204);
    assert.equal((await open(s, 'acme/app')).status, 202);

    assert.equal(await metric(s, /^kiln_limit\{setting="KILN_MAX_UPLOAD_SESSIONS_PER_TENANT"\} (\d+)$/m), 5);
    assert.ok((await metric(s, /^kiln_limit_hits_total\{setting="KILN_MAX_UPLOAD_SESSIONS_PER_TENANT"\} (\d+)$/m)) >= 2);
    assert.equal(await metric(s, /^kiln_upload_sessions_open (\d+)$/m), 8);
  });

  it('by default, a tenant opening sessions without end is stopped at 1,000', async () => {
    const s = await kilnWith({});
    const statuses = new Map<number, number>();
    for (let i = 0; i < 1001; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, 1001 - i) }, () => open(s, 'flood/app')));
      for (const res of batch) {
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        await res.arrayBuffer();
      }
    }
    assert.deepEqual(Object.fromEntries(statuses), { 202: 1000, 429: 1 });
    assert.equal((await open(s, 'other/app')).status, 202);
  });

  it('a session that never received a byte expires after the short TTL; a used one stays', async () => {
    const s = await kilnWith({ KILN_UPLOAD_EMPTY_TTL_SECONDS: '1' });
    const empty = new URL((await open(s, 'ttl/app')).headers.get('location')!, s.url);
    const used = new URL((await open(s, 'ttl/app')).headers.get('location')!, s.url);
    assert.equal((await fetch(used, { method: 'PATCH', body: Buffer.from('x') })).status, 202);
    await waitFor(async () => (await fetch(empty)).status === 404, 30_000, 'the unused session to expire');
    assert.equal((await fetch(used)).status, 204);
  });
});

describe('concurrent uploads', () => {
  it('are capped per tenant: a third body while two stream is 429 with the upload URL; it goes through after', async () => {
    const s = await kilnWith({ KILN_MAX_CONCURRENT_UPLOADS_PER_TENANT: '2' });
    const sessions = await Promise.all([0, 1, 2].map(async () => new URL((await open(s, 'busy/app')).headers.get('location')!, s.url)));
    // Two PATCHes that have sent their headers and a first byte, and stay open.
    const streaming = sessions.slice(0, 2).map((url) => {
      const req = request(url, { method: 'PATCH', headers: { 'content-type': 'application/octet-stream' } });
      const answered = new Promise<number>((resolve, reject) => {
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
      });
      req.write('a');
      return { req, answered };
    });
    await waitFor(async () => (await metric(s, /^kiln_uploads_in_flight (\d+)$/m)) === 2, 10_000, 'two uploads in flight');
    const third = await fetch(sessions[2]!, { method: 'PATCH', body: Buffer.from('b') });
    await expectTooMany(third, 'KILN_MAX_CONCURRENT_UPLOADS_PER_TENANT');
    assert.equal(new URL(third.headers.get('location')!, s.url).pathname, sessions[2]!.pathname);
    // Another tenant is not held up by this one.
    const other = new URL((await open(s, 'calm/app')).headers.get('location')!, s.url);
    assert.equal((await fetch(other, { method: 'PATCH', body: Buffer.from('c') })).status, 202);

    for (const { req } of streaming) req.end('a');
    assert.deepEqual(await Promise.all(streaming.map((x) => x.answered)), [202, 202]);
    assert.equal((await fetch(sessions[2]!, { method: 'PATCH', body: Buffer.from('b') })).status, 202);
  });
});

describe('the running hash of an upload', () => {
  it('is held only while the upload is in use, and rebuilt from disk after', async () => {
    const dir = await tempDir('kiln-hash-idle-');
    try {
      const dirs = new DataDir(dir);
      await dirs.ensure();
      const blobs = new FsBlobStore(dirs, { durable: false, hashIdleMs: 50 });
      await blobs.init();
      for (let i = 0; i < 200; i++) await blobs.createUpload(`s${i}`);
      assert.equal(blobs.hashesHeld, 0, 'sessions without data hold no hash');
      assert.equal((await readdir(dirs.uploadsRoot)).length, 200);
      const b = randomBlob(3000);
      for (let i = 0; i < 10; i++) await blobs.appendUpload(`s${i}`, Readable.from([b.bytes.subarray(0, 1000)]));
      assert.equal(blobs.hashesHeld, 10);
      await waitFor(() => blobs.hashesHeld === 0, 10_000, 'idle hashes to be dropped');
      // The next chunk and the commit still see every byte.
      await blobs.appendUpload('s0', Readable.from([b.bytes.subarray(1000)]), { expectedOffset: 1000 });
      const committed = await blobs.commitUpload('s0', parseDigest(b.digest));
      assert.deepEqual(committed, { digest: b.digest, size: 3000 });
      // An upload that never got a byte commits as the empty blob.
      const empty = randomBlob(0);
      assert.deepEqual(await blobs.commitUpload('s100', parseDigest(empty.digest)), { digest: empty.digest, size: 0 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
