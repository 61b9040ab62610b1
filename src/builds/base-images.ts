// Base images a build takes FROM this registry. The service resolves them to
// digests (for provenance, and so the garbage collector keeps them while the
// build runs); the builder itself pulls them through the registry with the
// build token, which may pull exactly these repos (its `pullRepos`). Nothing
// reaches the builder from the blob store directly: a blob is only ever read
// through a repo that holds it.
import { formatPlatform, parsePlatformSpec, type PlatformSpec } from '../oci/classify.js';
import { tryParseDigest } from '../oci/digest.js';
import { parseManifest, type Descriptor, type Manifest } from '../oci/manifest.js';
import { BuildError, invalidInput } from './errors.js';
import { baseImageGrants } from './plan.js';

/** What the builds module reads from the registry (the server wires RegistryService in). */
export interface RegistryReader {
  /** The manifest that `repo` holds under `reference` (a tag or a digest); null when there is none. */
  manifest(repo: string, reference: string): Promise<{ digest: string; mediaType: string; bytes: Buffer } | null>;
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

export interface ResolvedBaseImage {
  ref: string;
  repo: string;
  /** What the ref resolved to (an index's digest when the ref names an index). */
  digest: string;
  /** The single-platform image manifest the build will use. */
  imageDigest: string;
}

/**
 * Resolves the images `bases` name (an index picks `platform`). Fails with a
 * message naming the ref when the registry does not hold it.
 */
export async function resolveBaseImages(
  reader: RegistryReader,
  bases: readonly KilnBaseRef[],
  options: { platform: string; signal?: AbortSignal },
): Promise<ResolvedBaseImage[]> {
  const wanted = parsePlatformSpec(options.platform);
  const resolved: ResolvedBaseImage[] = [];
  for (const base of bases) {
    options.signal?.throwIfAborted();
    const top = await reader.manifest(base.repo, base.reference);
    if (top === null) {
      throw invalidInput(`FROM ${base.ref}: ${base.repo}:${base.reference} is not in this registry; push it first`);
    }
    const manifest = parseManifest(top.bytes, top.mediaType);
    let imageDigest = top.digest;
    if (manifest.kind === 'index') {
      const child = pickPlatform(manifest.manifests, wanted);
      if (child === null) {
        throw invalidInput(`FROM ${base.ref}: the image has no ${formatPlatform(wanted)} variant (it has ${platformsOf(manifest)})`);
      }
      const childManifest = await reader.manifest(base.repo, child.digest);
      if (childManifest === null) throw new BuildError('build-failed', `FROM ${base.ref}: manifest ${child.digest} is missing from the registry`);
      if (parseManifest(childManifest.bytes, childManifest.mediaType).kind !== 'image') throw invalidInput(`FROM ${base.ref}: an index of indexes is not a base image`);
      imageDigest = childManifest.digest;
    }
    resolved.push({ ref: base.ref, repo: base.repo, digest: top.digest, imageDigest });
  }
  return resolved;
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

