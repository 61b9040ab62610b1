// Small fetch-based registry client for tests: uploads, manifests and the
// assertions every error response must pass.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
/** A config type that is neither runnable nor a cache: tests use it to keep the bake queue out of HTTP tests. */
export const TEST_CONFIG = 'application/vnd.kiln.test.config.v1+json';

export type Alg = 'sha256' | 'sha512';

export function digestOf(data: Uint8Array | string, alg: Alg = 'sha256'): string {
  return `${alg}:${createHash(alg).update(data).digest('hex')}`;
}

export interface Blob {
  bytes: Buffer;
  digest: string;
  size: number;
}

export function blob(bytes: Buffer | string, alg: Alg = 'sha256'): Blob {
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
  return { bytes: b, digest: digestOf(b, alg), size: b.length };
}

export function randomBlob(size: number, alg: Alg = 'sha256'): Blob {
  return blob(randomBytes(size), alg);
}

export function descriptor(b: Blob, mediaType: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { mediaType, digest: b.digest, size: b.size, ...extra };
}

/** Serialises a manifest document; the bytes are what gets pushed and must come back. */
export function manifestBlob(doc: unknown, alg: Alg = 'sha256'): Blob {
  return blob(Buffer.from(JSON.stringify(doc)), alg);
}

export class RegistryClient {
  constructor(readonly base: string) {}

  url(p: string): string {
    return new URL(p, this.base).toString();
  }

  fetch(p: string, init: RequestInit = {}): Promise<Response> {
    return fetch(this.url(p), init);
  }

  /** Monolithic upload: POST ?digest= with the body. */
  async pushBlobMonolithic(repo: string, b: Blob): Promise<Response> {
    return this.fetch(`/v2/${repo}/blobs/uploads/?digest=${b.digest}`, {
      method: 'POST',
      body: b.bytes,
      headers: { 'content-type': 'application/octet-stream' },
    });
  }

  /** BuildKit's way: POST for a session, then one PUT with the whole body. */
  async pushBlob(repo: string, b: Blob): Promise<Response> {
    const post = await this.fetch(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    assert.equal(post.status, 202, `POST upload to ${repo}: ${post.status} ${await post.text()}`);
    const location = new URL(post.headers.get('location')!, this.base);
    location.searchParams.set('digest', b.digest);
    return fetch(location, { method: 'PUT', body: b.bytes, headers: { 'content-type': 'application/octet-stream' } });
  }

  /** Two PATCH chunks with Content-Range, then PUT ?digest=; answers the first non-202 or the PUT. */
  async pushBlobChunked(repo: string, b: Blob): Promise<Response> {
    const post = await this.fetch(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    if (post.status !== 202) return post;
    let loc = new URL(post.headers.get('location')!, this.base);
    const half = Math.floor(b.size / 2);
    for (const [start, end] of [
      [0, half],
      [half, b.size],
    ] as const) {
      const res = await fetch(loc, { method: 'PATCH', body: b.bytes.subarray(start, end), headers: { 'content-range': `${start}-${end - 1}` } });
      if (res.status !== 202) return res;
      await res.arrayBuffer();
      loc = new URL(res.headers.get('location')!, this.base);
    }
    loc.searchParams.set('digest', b.digest);
    return fetch(loc, { method: 'PUT' });
  }

  async mustPushBlob(repo: string, b: Blob): Promise<void> {
    const res = await this.pushBlob(repo, b);
    assert.equal(res.status, 201, `blob ${b.digest} to ${repo}: ${res.status} ${await res.text()}`);
    assert.equal(res.headers.get('docker-content-digest'), b.digest);
  }

  async putManifest(repo: string, reference: string, body: Buffer, contentType?: string): Promise<Response> {
    const headers: Record<string, string> = {};
    if (contentType) headers['content-type'] = contentType;
    return this.fetch(`/v2/${repo}/manifests/${reference}`, { method: 'PUT', body, headers });
  }

  async mustPutManifest(repo: string, reference: string, m: Blob, contentType?: string): Promise<Response> {
    const res = await this.putManifest(repo, reference, m.bytes, contentType);
    assert.equal(res.status, 201, `manifest ${repo}:${reference}: ${res.status} ${await res.text()}`);
    const digest = reference.includes(':') ? reference : digestOf(m.bytes);
    assert.equal(res.headers.get('docker-content-digest'), digest);
    return res;
  }

  async getManifest(repo: string, reference: string, accept?: string): Promise<{ res: Response; bytes: Buffer }> {
    const res = await this.fetch(`/v2/${repo}/manifests/${reference}`, accept ? { headers: { accept } } : {});
    return { res, bytes: Buffer.from(await res.arrayBuffer()) };
  }

  async getBlob(repo: string, digest: string, headers: Record<string, string> = {}): Promise<{ res: Response; bytes: Buffer }> {
    const res = await this.fetch(`/v2/${repo}/blobs/${digest}`, { headers });
    return { res, bytes: Buffer.from(await res.arrayBuffer()) };
  }

  /** Pushes a small image: its config and layers, then the manifest under `tag`. */
  async pushImage(repo: string, tag: string, opts: { layers?: Blob[]; config?: Blob; configType?: string; mediaType?: string } = {}) {
    const config = opts.config ?? blob(JSON.stringify({ test: repo, tag, n: Math.random() }));
    const layers = opts.layers ?? [randomBlob(512)];
    for (const b of [config, ...layers]) await this.mustPushBlob(repo, b);
    const mediaType = opts.mediaType ?? OCI_MANIFEST;
    const doc = {
      schemaVersion: 2,
      mediaType,
      config: descriptor(config, opts.configType ?? TEST_CONFIG),
      layers: layers.map((l) => descriptor(l, mediaType === DOCKER_MANIFEST ? DOCKER_LAYER_GZIP : OCI_LAYER_GZIP)),
    };
    const manifest = manifestBlob(doc);
    await this.mustPutManifest(repo, tag, manifest, mediaType);
    return { config, layers, manifest, doc };
  }
}

export interface ErrorExpectation {
  status: number | number[];
  code: string | string[];
}

/** Asserts the spec's error shape: JSON `{"errors":[{"code","message","detail"}]}` with the right status and code. */
export async function expectError(res: Response, want: ErrorExpectation, method = 'GET'): Promise<{ code: string; message: string; detail: unknown }> {
  const text = await res.text();
  const statuses = Array.isArray(want.status) ? want.status : [want.status];
  const codes = Array.isArray(want.code) ? want.code : [want.code];
  assert.ok(statuses.includes(res.status), `status ${res.status}, want ${statuses.join('|')}: ${text}`);
  assert.notEqual(res.status, 500);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  if (method === 'HEAD') {
    assert.equal(text, '');
    return { code: '', message: '', detail: undefined };
  }
  let body: { errors?: { code?: unknown; message?: unknown; detail?: unknown }[] };
  try {
    body = JSON.parse(text);
  } catch {
    assert.fail(`error body is not JSON: ${text}`);
  }
  assert.ok(Array.isArray(body.errors) && body.errors.length >= 1, `no errors[]: ${text}`);
  for (const e of body.errors) {
    assert.equal(typeof e.code, 'string', text);
    assert.equal(typeof e.message, 'string', text);
    assert.ok((e.message as string).length > 0, text);
    assert.ok('detail' in e, `error without detail: ${text}`);
  }
  const first = body.errors[0]!;
  assert.ok(codes.includes(first.code as string), `code ${String(first.code)}, want ${codes.join('|')}: ${text}`);
  return first as { code: string; message: string; detail: unknown };
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * A request with an exact, unnormalised path (fetch resolves `..`), an
 * optional body, and optionally a body cut short: `truncateAt` bytes are sent
 * and then the connection is destroyed (resolves with null: no answer).
 */
export function rawRequest(
  base: string,
  method: string,
  rawPath: string,
  opts: { headers?: Record<string, string | number>; body?: Buffer; truncateAt?: number } = {},
): Promise<RawResponse | null> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path: rawPath, headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    if (opts.truncateAt !== undefined) {
      req.on('error', () => resolve(null));
      req.flushHeaders();
      req.write(opts.body!.subarray(0, opts.truncateAt), () => {
        // Give the bytes a moment on the wire only through the write callback; then cut.
        req.destroy();
        resolve(null);
      });
      return;
    }
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Every file under `<dataDir>/blobs/<alg>/<xx>/<hex>` whose content does not hash to its name. */
export async function corruptBlobs(dataDir: string): Promise<string[]> {
  const bad: string[] = [];
  const root = path.join(dataDir, 'blobs');
  for (const alg of await readdir(root).catch(() => [] as string[])) {
    for (const fan of await readdir(path.join(root, alg))) {
      for (const hex of await readdir(path.join(root, alg, fan))) {
        const file = path.join(root, alg, fan, hex);
        if (!(await stat(file)).isFile()) {
          bad.push(`${file} (not a file)`);
          continue;
        }
        const h = createHash(alg);
        for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
        if (h.digest('hex') !== hex || !hex.startsWith(fan)) bad.push(file);
      }
    }
  }
  return bad;
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
