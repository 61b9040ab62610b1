// Pushes an image from disk to a registry over /v2, skipping blobs it holds.
import { Readable, Transform } from 'node:stream';
import type { ApiClient } from './api-client.js';
import { KilnApiError } from './api-client.js';
import type { BlobToPush, PushSource } from './image-source.js';

export interface PushProgress {
  total: number;
  onBytes(n: number): void;
}

export async function pushImage(client: ApiClient, repo: string, tag: string, source: PushSource, progress?: PushProgress): Promise<string> {
  for (const blob of source.blobs) await pushBlob(client, repo, blob, progress);
  let last = '';
  for (const [i, manifest] of source.manifests.entries()) {
    const reference = i === source.manifests.length - 1 ? tag : manifest.digest;
    const res = await client.request(`/v2/${repo}/manifests/${reference}`, {
      method: 'PUT',
      body: manifest.bytes,
      headers: { 'content-type': manifest.mediaType },
    });
    if (res.status !== 201) throw new KilnApiError(res.status, `manifest ${manifest.digest}: ${await res.text()}`);
    last = res.headers.get('docker-content-digest') ?? manifest.digest;
  }
  return last;
}

async function pushBlob(client: ApiClient, repo: string, blob: BlobToPush, progress?: PushProgress): Promise<void> {
  const head = await client.request(`/v2/${repo}/blobs/${blob.digest}`, { method: 'HEAD' });
  if (head.status === 200) {
    progress?.onBytes(blob.size);
    return;
  }
  const post = await client.request(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (post.status !== 202) throw new KilnApiError(post.status, `starting upload of ${blob.digest}: ${await post.text()}`);
  const location = new URL(post.headers.get('location') ?? '', client.base);
  location.searchParams.set('digest', blob.digest);
  const counted = blob.open().pipe(
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        progress?.onBytes(chunk.length);
        done(null, chunk);
      },
    }),
  );
  const res = await client.request(location.toString(), {
    method: 'PUT',
    body: Readable.toWeb(counted) as ReadableStream,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
    duplex: 'half',
  } as RequestInit);
  if (res.status !== 201) throw new KilnApiError(res.status, `uploading ${blob.digest}: ${await res.text()}`);
}
