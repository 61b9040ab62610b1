// Base images a build takes FROM this registry. The service resolves them
// (for provenance and for the caller's right to pull them) and, for a backend
// that loads local images (buildah), hands them to the builder as an OCI
// layout written from Kiln's own store, so the builder pulls nothing for them.
// A backend that pulls FROM images itself (BuildKit) uses the build token,
// which may pull exactly these repos (its `pullRepos`).
import { createWriteStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { formatPlatform, parsePlatformSpec, type PlatformSpec } from '../oci/classify.js';
import { parseDigest, tryParseDigest } from '../oci/digest.js';
import { parseManifest, type Descriptor, type Manifest } from '../oci/manifest.js';
import { BuildError, invalidInput } from './errors.js';
import { baseImageGrants } from './plan.js';

/** What the builds module reads from the registry (the server wires RegistryService in). */
export interface RegistryReader {
  /** The manifest that `repo` holds under `reference` (a tag or a digest); null when there is none. */
  manifest(repo: string, reference: string): Promise<{ digest: string; mediaType: string; bytes: Buffer } | null>;
  openBlob(digest: string): Promise<Readable | null>;
}

export interface KilnBaseRef {
  /** The FROM ref as the Dockerfile spells it (after build-arg expansion). */
  ref: string;
  repo: string;
  /** Tag or digest. */
  reference: string;
}

/** The FROM refs that name this registry, split into repo and tag or digest; others are left out. Pure. */
export function kilnBaseRefs(registry: string, refs: readonly string[]): KilnBaseRef[] {
  const found: KilnBaseRef[] = [];
  for (const ref of refs) {
    const grant = baseImageGrants(registry, [ref])[0];
    if (grant === undefined) continue;
    const at = ref.indexOf('@');
    let reference: string;
    if (at !== -1) {
      const digest = tryParseDigest(ref.slice(at + 1));
      if (digest === null) throw invalidInput(`FROM ${ref}: "${ref.slice(at + 1)}" is not a digest`);
      reference = digest.digest;
    } else {
      const lastSegment = ref.slice(ref.lastIndexOf('/') + 1);
      const colon = lastSegment.indexOf(':');
      reference = colon === -1 ? 'latest' : lastSegment.slice(colon + 1);
    }
    found.push({ ref, repo: grant.repo, reference });
  }
  return found;
}

/** The platform a build targets when it names none: the host's, in OCI spelling. */
export function hostPlatform(arch: string = process.arch): string {
  const ociArch: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return `linux/${ociArch[arch] ?? arch}`;
}

export interface LoadedBaseImage {
  ref: string;
  repo: string;
  /** What the ref resolved to (an index's digest when the ref names an index). */
  digest: string;
  /** The single-platform image manifest written into the layout. */
  imageDigest: string;
  /** The name of the image inside the layout (`org.opencontainers.image.ref.name`). */
  layoutName: string;
}

/**
 * Resolves the images `bases` name (an index picks `platform`) and, when
 * `layoutDir` is given, writes them into an OCI image layout there. Fails with
 * a message naming the ref when the registry does not hold it.
 */
export async function resolveBaseImages(
  reader: RegistryReader,
  bases: readonly KilnBaseRef[],
  options: { platform: string; layoutDir: string | null; signal?: AbortSignal },
): Promise<LoadedBaseImage[]> {
  const { layoutDir, platform, signal } = options;
  if (layoutDir !== null) await mkdir(layoutDir, { recursive: true });
  const wanted = parsePlatformSpec(platform);
  const loaded: LoadedBaseImage[] = [];
  const entries: Descriptor[] = [];
  const written = new Set<string>();

  const putBytes = async (layoutDir: string, digest: string, bytes: Buffer) => {
    if (written.has(digest)) return;
    const file = blobFile(layoutDir, digest);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, bytes);
    written.add(digest);
  };
  const copyBlob = async (layoutDir: string, descriptor: Descriptor, ref: string) => {
    if (written.has(descriptor.digest)) return;
    const stream = await reader.openBlob(descriptor.digest);
    if (stream === null) throw new BuildError('build-failed', `FROM ${ref}: blob ${descriptor.digest} is missing from the registry's store`);
    const file = blobFile(layoutDir, descriptor.digest);
    await mkdir(path.dirname(file), { recursive: true });
    await pipeline(stream, createWriteStream(`${file}.partial`), { signal });
    await rename(`${file}.partial`, file);
    written.add(descriptor.digest);
  };

  for (const [i, base] of bases.entries()) {
    signal?.throwIfAborted();
    const top = await reader.manifest(base.repo, base.reference);
    if (top === null) {
      throw invalidInput(`FROM ${base.ref}: ${base.repo}:${base.reference} is not in this registry; push it first`);
    }
    let image = { ...top, manifest: parseManifest(top.bytes, top.mediaType) };
    if (image.manifest.kind === 'index') {
      const child = pickPlatform(image.manifest.manifests, wanted);
      if (child === null) {
        throw invalidInput(`FROM ${base.ref}: the image has no ${formatPlatform(wanted)} variant (it has ${platformsOf(image.manifest)})`);
      }
      const childManifest = await reader.manifest(base.repo, child.digest);
      if (childManifest === null) throw new BuildError('build-failed', `FROM ${base.ref}: manifest ${child.digest} is missing from the registry`);
      image = { ...childManifest, manifest: parseManifest(childManifest.bytes, childManifest.mediaType) };
    }
    const manifest = image.manifest;
    if (manifest.kind !== 'image') throw invalidInput(`FROM ${base.ref}: an index of indexes is not a base image`);
    const layoutName = `base${i}`;
    loaded.push({ ref: base.ref, repo: base.repo, digest: top.digest, imageDigest: image.digest, layoutName });
    if (layoutDir === null) continue;
    for (const descriptor of [manifest.config, ...manifest.layers]) await copyBlob(layoutDir, descriptor, base.ref);
    await putBytes(layoutDir, image.digest, image.bytes);
    entries.push({
      mediaType: image.mediaType,
      digest: image.digest,
      size: image.bytes.length,
      annotations: { 'org.opencontainers.image.ref.name': layoutName },
    });
  }

  if (layoutDir === null) return loaded;
  await writeFile(path.join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    path.join(layoutDir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: entries }),
  );
  return loaded;
}

function blobFile(layoutDir: string, digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return path.join(layoutDir, 'blobs', algorithm, hex);
}

// arm64 images usually omit the variant; absent means v8 there.
const DEFAULT_VARIANT: Readonly<Record<string, string>> = { arm64: 'v8' };

function pickPlatform(children: readonly Descriptor[], wanted: PlatformSpec): Descriptor | null {
  for (const child of children) {
    const p = child.platform;
    if (!p || p.os !== wanted.os || p.architecture !== wanted.architecture) continue;
    if (wanted.variant !== undefined && (p.variant ?? DEFAULT_VARIANT[p.architecture]) !== wanted.variant) continue;
    return child;
  }
  return null;
}

function platformsOf(index: Extract<Manifest, { kind: 'index' }>): string {
  const names = index.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : 'no platform'));
  return names.length === 0 ? 'none' : names.join(', ');
}

