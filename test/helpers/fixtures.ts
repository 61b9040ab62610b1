// Pushes the BuildKit v0.20.2 fixtures the way BuildKit does: a monolithic
// POST + PUT per blob, then the manifest's exact bytes.
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { buildkitFixtures } from './paths.js';

export interface FixtureManifest {
  file: string;
  digest: string;
  contentType: string;
  repo: string;
  tag: string;
}

export async function fixtureManifests(): Promise<FixtureManifest[]> {
  const text = await readFile(path.join(buildkitFixtures, 'manifest-digests.txt'), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const [file, digest, contentType, ref] = line.trim().split(/\s+/) as [string, string, string, string];
      const colon = ref.lastIndexOf(':');
      return { file, digest, contentType, repo: ref.slice(0, colon), tag: ref.slice(colon + 1) };
    });
}

export async function fixtureBlobs(): Promise<{ digest: string; bytes: Buffer }[]> {
  const dir = path.join(buildkitFixtures, 'blobs', 'sha256');
  const names = (await readdir(dir)).sort();
  return Promise.all(names.map(async (hex) => ({ digest: `sha256:${hex}`, bytes: await readFile(path.join(dir, hex)) })));
}

/** Uploads one blob with POST + PUT; returns the PUT response. */
export async function pushBlob(base: string, repo: string, digest: string, bytes: Buffer, headers: Record<string, string> = {}): Promise<Response> {
  const post = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers });
  if (post.status !== 202) throw new Error(`POST upload for ${repo}: ${post.status} ${await post.text()}`);
  const location = new URL(post.headers.get('location')!, base);
  location.searchParams.set('digest', digest);
  return fetch(location, { method: 'PUT', body: bytes, headers: { ...headers, 'content-type': 'application/octet-stream' } });
}

/** Pushes every fixture blob and then the fixture's manifest; returns the manifest PUT response. */
export async function pushFixture(base: string, fixture: FixtureManifest, repo = fixture.repo, headers: Record<string, string> = {}): Promise<Response> {
  for (const blob of await fixtureBlobs()) {
    const res = await pushBlob(base, repo, blob.digest, blob.bytes, headers);
    if (res.status !== 201) throw new Error(`blob ${blob.digest} to ${repo}: ${res.status} ${await res.text()}`);
  }
  const body = await readFile(path.join(buildkitFixtures, fixture.file));
  return fetch(`${base}/v2/${repo}/manifests/${fixture.tag}`, { method: 'PUT', body, headers: { ...headers, 'content-type': fixture.contentType } });
}
