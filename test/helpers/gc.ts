// Pushing and checking images for the GC and crash tests.
import assert from 'node:assert/strict';
import { OCI_MANIFEST, digestOf, type Blob } from './registry.js';

export interface Pushed {
  repo: string;
  tag: string;
  manifest: Blob;
  blobs: Blob[];
}

export type UploadMode = 'monolithic' | 'post-put' | 'chunked' | 'mount';

/** Uploads one blob; a refused mount falls back to an upload, as clients do. */
export async function uploadBlob(base: string, repo: string, b: Blob, mode: UploadMode, mountFrom?: string): Promise<Response> {
  if (mode === 'monolithic') {
    return fetch(`${base}/v2/${repo}/blobs/uploads/?digest=${b.digest}`, { method: 'POST', body: b.bytes, headers: { 'content-type': 'application/octet-stream' } });
  }
  const start = mode === 'mount' && mountFrom ? `${base}/v2/${repo}/blobs/uploads/?mount=${b.digest}&from=${mountFrom}` : `${base}/v2/${repo}/blobs/uploads/`;
  const post = await fetch(start, { method: 'POST' });
  if (post.status === 201) return post;
  if (post.status !== 202) return post;
  let location = new URL(post.headers.get('location')!, base);
  if (mode === 'chunked' && b.size > 1) {
    const half = Math.floor(b.size / 2);
    const patch = await fetch(location, {
      method: 'PATCH',
      body: b.bytes.subarray(0, half),
      headers: { 'content-type': 'application/octet-stream', 'content-range': `0-${half - 1}` },
    });
    if (patch.status !== 202) return patch;
    location = new URL(patch.headers.get('location')!, base);
    location.searchParams.set('digest', b.digest);
    return fetch(location, { method: 'PUT', body: b.bytes.subarray(half), headers: { 'content-type': 'application/octet-stream' } });
  }
  location.searchParams.set('digest', b.digest);
  return fetch(location, { method: 'PUT', body: b.bytes, headers: { 'content-type': 'application/octet-stream' } });
}

/** Pushes blobs then the manifest; retries the whole push on MANIFEST_BLOB_UNKNOWN. Returns the attempts used. */
export async function pushWithRetry(base: string, repo: string, tag: string, blobs: Blob[], manifest: Blob, modes: UploadMode[], mountFrom: string): Promise<number> {
  for (let attempt = 1; attempt <= 50; attempt++) {
    for (const [i, b] of blobs.entries()) {
      const res = await uploadBlob(base, repo, b, modes[i % modes.length]!, mountFrom);
      assert.equal(res.status, 201, `blob ${b.digest} to ${repo}: ${res.status} ${await res.text()}`);
      await res.arrayBuffer().catch(() => undefined);
    }
    const put = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: manifest.bytes, headers: { 'content-type': OCI_MANIFEST } });
    const text = await put.text();
    if (put.status === 201) return attempt;
    assert.equal(put.status, 400, `manifest ${repo}:${tag}: ${put.status} ${text}`);
    assert.match(text, /MANIFEST_BLOB_UNKNOWN/);
  }
  throw new Error(`push of ${repo}:${tag} kept losing its blobs to the collector`);
}

export async function verifyPulls(base: string, pushes: Iterable<Pushed>): Promise<void> {
  for (const p of pushes) {
    const m = await fetch(`${base}/v2/${p.repo}/manifests/${p.tag}`, { headers: { accept: OCI_MANIFEST } });
    const bytes = Buffer.from(await m.arrayBuffer());
    assert.equal(m.status, 200, `${p.repo}:${p.tag}`);
    assert.ok(bytes.equals(p.manifest.bytes), `${p.repo}:${p.tag} manifest bytes`);
    for (const b of p.blobs) {
      const res = await fetch(`${base}/v2/${p.repo}/blobs/${b.digest}`);
      const got = Buffer.from(await res.arrayBuffer());
      assert.equal(res.status, 200, `${p.repo}:${p.tag} blob ${b.digest}`);
      assert.equal(digestOf(got), b.digest, `${p.repo}:${p.tag} blob ${b.digest} content`);
    }
  }
}

