// What a pushed manifest is, and so whether Kiln bakes it (DESIGN "Classification").
// Pure: a parsed manifest and the repository name in, a tagged result out.
import type { Descriptor, ImageManifest, IndexManifest, Manifest, Platform } from './manifest.js';
import {
  ATTESTATION_MANIFEST,
  BUILDKIT_CACHE_CONFIG,
  DOCKER_REFERENCE_TYPE_ANNOTATION,
  IMAGE_MANIFEST_TYPES,
  RUNNABLE_CONFIG_TYPES,
} from './media-types.js';

/** A platform to bake from multi-platform indexes, e.g. `linux/amd64` or `linux/arm64/v8`. */
export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ClassifyOptions {
  /** Platforms baked from an index, in order of preference. Default: linux/amd64. */
  platforms?: readonly PlatformSpec[];
}

export const DEFAULT_PLATFORMS: readonly PlatformSpec[] = [{ os: 'linux', architecture: 'amd64' }];

export type Classification =
  | { kind: 'runnable-image'; configMediaType: string }
  | {
      kind: 'multi-platform-image';
      mediaType: string;
      /** Children to bake: the first match for each configured platform, in that order. */
      toBake: Descriptor[];
      /** Every runnable platform the index offers (attestations excluded). */
      available: Platform[];
    }
  | { kind: 'build-cache'; form: 'image-manifest' | 'index'; mediaType: string }
  | { kind: 'build-cache-location'; repo: string; mediaType: string; typeOf: TypeOf }
  | { kind: 'artifact'; mediaType: string; typeOf: TypeOf; artifactType?: string };

/** Whether `mediaType` in a result is an image's config type or an index's own type. */
export type TypeOf = 'config' | 'index';

export type NotRunnable = Extract<Classification, { kind: 'build-cache' | 'build-cache-location' | 'artifact' }>;

export function classify(manifest: Manifest, repo: string, options: ClassifyOptions = {}): Classification {
  const platforms = options.platforms ?? DEFAULT_PLATFORMS;
  // Content that says "cache" wins, so its message names the cacheconfig type.
  if (manifest.kind === 'image' && manifest.config.mediaType === BUILDKIT_CACHE_CONFIG) {
    return { kind: 'build-cache', form: 'image-manifest', mediaType: BUILDKIT_CACHE_CONFIG };
  }
  if (manifest.kind === 'index' && manifest.manifests.some((d) => d.mediaType === BUILDKIT_CACHE_CONFIG)) {
    return { kind: 'build-cache', form: 'index', mediaType: BUILDKIT_CACHE_CONFIG };
  }
  if (manifest.artifactType !== undefined) {
    return { kind: 'artifact', ...describedType(manifest), artifactType: manifest.artifactType };
  }
  if (isCacheLocation(repo)) {
    return { kind: 'build-cache-location', repo, ...describedType(manifest) };
  }
  return manifest.kind === 'image' ? classifyImage(manifest) : classifyIndex(manifest, platforms);
}

function classifyImage(manifest: ImageManifest): Classification {
  const configType = manifest.config.mediaType;
  if (IMAGE_MANIFEST_TYPES.has(manifest.mediaType) && RUNNABLE_CONFIG_TYPES.has(configType)) {
    return { kind: 'runnable-image', configMediaType: configType };
  }
  return { kind: 'artifact', ...describedType(manifest) };
}

function classifyIndex(index: IndexManifest, platforms: readonly PlatformSpec[]): Classification {
  const candidates = index.manifests.filter((d) => IMAGE_MANIFEST_TYPES.has(d.mediaType) && !isAttestation(d));
  if (candidates.length === 0) return { kind: 'artifact', ...describedType(index) };
  const toBake: Descriptor[] = [];
  for (const wanted of platforms) {
    const match = candidates.find((d) => d.platform !== undefined && platformMatches(d.platform, wanted));
    if (match && !toBake.includes(match)) toBake.push(match);
  }
  const available = candidates.flatMap((d) => (d.platform ? [d.platform] : []));
  return { kind: 'multi-platform-image', mediaType: index.mediaType, toBake, available };
}

/** BuildKit attestation entries: annotated, or with the placeholder platform unknown/unknown. */
export function isAttestation(descriptor: Descriptor): boolean {
  if (descriptor.annotations?.[DOCKER_REFERENCE_TYPE_ANNOTATION] === ATTESTATION_MANIFEST) return true;
  return descriptor.platform?.os === 'unknown' && descriptor.platform.architecture === 'unknown';
}

/**
 * True when the repository's first path component, after an optional registry
 * host (a component with `.` or `:`, or `localhost`), is `cache`.
 */
export function isCacheLocation(repo: string): boolean {
  const parts = repo.split('/');
  if (parts.length > 1 && isRegistryHost(parts[0])) parts.shift();
  return parts[0] === 'cache';
}

function isRegistryHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

/** The media type a message should name: the config type of an image, the index type of an index. */
function describedType(manifest: Manifest): { mediaType: string; typeOf: TypeOf } {
  return manifest.kind === 'image'
    ? { mediaType: manifest.config.mediaType, typeOf: 'config' }
    : { mediaType: manifest.mediaType, typeOf: 'index' };
}

// arm64 images usually omit the variant; an absent variant means v8 there.
const DEFAULT_VARIANT: Readonly<Record<string, string>> = { arm64: 'v8' };

function platformMatches(offered: Platform, wanted: PlatformSpec): boolean {
  if (offered.os !== wanted.os || offered.architecture !== wanted.architecture) return false;
  if (wanted.variant === undefined) return true;
  const variant = offered.variant ?? DEFAULT_VARIANT[offered.architecture];
  return variant === wanted.variant;
}

/** Parses `os/arch[/variant]`, e.g. `linux/arm64/v8`; throws on any other shape. */
export function parsePlatformSpec(text: string): PlatformSpec {
  const parts = text.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
    throw new Error(`"${text}" is not a platform; expected os/arch or os/arch/variant such as linux/amd64`);
  }
  const [os, architecture, variant] = parts;
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

export function formatPlatform(p: PlatformSpec | Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

export function isNotRunnable(c: Classification): c is NotRunnable {
  return c.kind === 'build-cache' || c.kind === 'build-cache-location' || c.kind === 'artifact';
}

/** The error a user gets when asking to bake something that is not a runnable image. Names the media type. */
export function notRunnableMessage(c: NotRunnable): string {
  switch (c.kind) {
    case 'build-cache':
      return c.form === 'image-manifest'
        ? `not a runnable image: config media type ${c.mediaType} (BuildKit cache)`
        : `not a runnable image: index entry media type ${c.mediaType} (BuildKit cache, legacy index form)`;
    case 'build-cache-location':
      return `not a runnable image: ${c.typeOf} media type ${c.mediaType} in ${c.repo}, a build cache location (repositories under cache/ are never baked)`;
    case 'artifact':
      return c.artifactType !== undefined
        ? `not a runnable image: ${c.typeOf} media type ${c.mediaType} (artifact of type ${c.artifactType})`
        : `not a runnable image: ${c.typeOf} media type ${c.mediaType} (artifact)`;
  }
}

/** The error for an index that holds none of the configured platforms. */
export function noPlatformMessage(c: Extract<Classification, { kind: 'multi-platform-image' }>, platforms: readonly PlatformSpec[] = DEFAULT_PLATFORMS): string {
  const offered = c.available.length > 0 ? c.available.map(formatPlatform).join(', ') : 'none';
  return `index has no image for ${platforms.map(formatPlatform).join(', ')} (it offers: ${offered})`;
}
