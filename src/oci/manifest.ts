// Parsing and validation of manifests and indexes. Pure: bytes in, a typed
// description out, or a ManifestError that says what is wrong.
import { parseDigest, DigestError } from './digest.js';
import {
  DOCKER_LIST,
  DOCKER_MANIFEST,
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  IMAGE_MANIFEST_TYPES,
  INDEX_TYPES,
  OCI_INDEX,
  OCI_MANIFEST,
  baseMediaType,
  isMediaType,
} from './media-types.js';

/** Largest manifest accepted (the distribution spec recommends at least 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  artifactType?: string;
  platform?: Platform;
}

interface ManifestCommon {
  /** The media type the manifest was stored and is served as. */
  mediaType: string;
  artifactType?: string;
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageManifest extends ManifestCommon {
  kind: 'image';
  config: Descriptor;
  layers: Descriptor[];
}

export interface IndexManifest extends ManifestCommon {
  kind: 'index';
  manifests: Descriptor[];
}

export type Manifest = ImageManifest | IndexManifest;

export class ManifestError extends Error {
  constructor(
    message: string,
    /** Which spec error fits: an unparseable or ill-formed manifest, or a bad digest inside it. */
    readonly code: 'MANIFEST_INVALID' | 'DIGEST_INVALID' | 'UNSUPPORTED' = 'MANIFEST_INVALID',
  ) {
    super(message);
    this.name = 'ManifestError';
  }
}

// Content types clients send when they do not name the manifest type.
const GENERIC_TYPES = new Set(['', 'application/json', 'application/octet-stream', 'text/plain']);

/**
 * Parses manifest bytes pushed with the given Content-Type.
 *
 * The media type is taken from the body's `mediaType` field or, when the body
 * has none (umoci writes none), from the Content-Type; the two must agree when
 * both are given. Any other media type is accepted only as an artifact: the
 * shape of an OCI image manifest plus an `artifactType`.
 */
export function parseManifest(bytes: Uint8Array, contentType?: string): Manifest {
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new ManifestError(`manifest is ${bytes.length} bytes; the limit is ${MAX_MANIFEST_BYTES}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (err) {
    throw new ManifestError(`manifest is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw new ManifestError('manifest must be a JSON object');

  const declared = baseMediaType(contentType);
  const bodyType = doc.mediaType;
  if (bodyType !== undefined && typeof bodyType !== 'string') throw new ManifestError('"mediaType" must be a string');
  if (bodyType && !GENERIC_TYPES.has(declared) && bodyType !== declared) {
    throw new ManifestError(`Content-Type ${declared} does not match the manifest's mediaType ${bodyType}`);
  }
  if (declared === DOCKER_SCHEMA1 || declared === DOCKER_SCHEMA1_SIGNED || doc.schemaVersion === 1) {
    throw new ManifestError('Docker schema 1 manifests are not supported; push with a client that writes schema 2 or OCI', 'UNSUPPORTED');
  }
  if (doc.schemaVersion !== 2) throw new ManifestError('"schemaVersion" must be 2');

  let mediaType = bodyType || (GENERIC_TYPES.has(declared) ? '' : declared);
  if (!mediaType) mediaType = Array.isArray(doc.manifests) ? OCI_INDEX : OCI_MANIFEST;
  requireMediaType(mediaType, 'the manifest media type');

  const common: ManifestCommon = { mediaType };
  if (doc.artifactType !== undefined) {
    if (typeof doc.artifactType !== 'string' || !doc.artifactType) throw new ManifestError('"artifactType" must be a non-empty string');
    requireMediaType(doc.artifactType, '"artifactType"');
    common.artifactType = doc.artifactType;
  }
  if (doc.subject !== undefined) common.subject = parseDescriptor(doc.subject, 'subject');
  if (doc.annotations !== undefined) common.annotations = parseAnnotations(doc.annotations, 'annotations');

  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw new ManifestError('an index must have a "manifests" array');
    const manifests = doc.manifests.map((d, i) => parseDescriptor(d, `manifests[${i}]`));
    if (mediaType === DOCKER_LIST && common.subject) throw new ManifestError('a Docker manifest list cannot have a subject');
    return { kind: 'index', ...common, manifests };
  }

  if (!isObject(doc.config)) {
    throw new ManifestError(`media type ${mediaType} is not a known manifest type and the body is not an image manifest (no "config")`);
  }
  if (!IMAGE_MANIFEST_TYPES.has(mediaType) && !common.artifactType) {
    throw new ManifestError(
      `media type ${mediaType} is not an OCI or Docker manifest type; an artifact with its own media type must set "artifactType"`,
    );
  }
  const config = parseDescriptor(doc.config, 'config');
  const rawLayers = doc.layers ?? [];
  if (!Array.isArray(rawLayers)) throw new ManifestError('"layers" must be an array');
  const layers = rawLayers.map((d, i) => parseDescriptor(d, `layers[${i}]`));
  if (mediaType === DOCKER_MANIFEST && layers.length === 0) {
    throw new ManifestError('a Docker schema 2 manifest must have at least one layer');
  }
  return { kind: 'image', ...common, config, layers };
}

/** Media types are stored and compared as given, so they must be what the spec allows (RFC 6838). */
function requireMediaType(value: string, where: string): void {
  if (!isMediaType(value)) {
    const shown = JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
    throw new ManifestError(`${where} ${shown} is not a media type: it must be type/subtype of letters, digits and !#$&^_.+- (RFC 6838)`);
  }
}

/** Every descriptor a manifest points at, except its subject. */
export function referencedDescriptors(manifest: Manifest): Descriptor[] {
  return manifest.kind === 'index' ? manifest.manifests : [manifest.config, ...manifest.layers];
}

function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw new ManifestError(`${where} must be a descriptor object`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== 'string' || !mediaType) throw new ManifestError(`${where}.mediaType must be a non-empty string`);
  requireMediaType(mediaType, `${where}.mediaType`);
  if (typeof digest !== 'string') throw new ManifestError(`${where}.digest must be a string`);
  try {
    parseDigest(digest);
  } catch (err) {
    throw new ManifestError(`${where}.digest: ${(err as DigestError).message}`, 'DIGEST_INVALID');
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new ManifestError(`${where}.size must be a non-negative integer`);
  }
  const out: Descriptor = { mediaType, digest, size };
  if (value.urls !== undefined) {
    if (!Array.isArray(value.urls) || !value.urls.every((u) => typeof u === 'string')) throw new ManifestError(`${where}.urls must be an array of strings`);
    out.urls = value.urls as string[];
  }
  if (value.annotations !== undefined) out.annotations = parseAnnotations(value.annotations, `${where}.annotations`);
  if (value.artifactType !== undefined) {
    if (typeof value.artifactType !== 'string') throw new ManifestError(`${where}.artifactType must be a string`);
    requireMediaType(value.artifactType, `${where}.artifactType`);
    out.artifactType = value.artifactType;
  }
  if (value.platform !== undefined) out.platform = parsePlatform(value.platform, `${where}.platform`);
  return out;
}

function parsePlatform(value: unknown, where: string): Platform {
  if (!isObject(value)) throw new ManifestError(`${where} must be an object`);
  if (typeof value.architecture !== 'string' || typeof value.os !== 'string') {
    throw new ManifestError(`${where} must have string "architecture" and "os"`);
  }
  const out: Platform = { architecture: value.architecture, os: value.os };
  if (typeof value.variant === 'string') out.variant = value.variant;
  if (typeof value['os.version'] === 'string') out['os.version'] = value['os.version'];
  if (Array.isArray(value['os.features'])) out['os.features'] = value['os.features'].filter((f): f is string => typeof f === 'string');
  return out;
}

function parseAnnotations(value: unknown, where: string): Record<string, string> {
  if (!isObject(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw new ManifestError(`${where} must be a map of strings`);
  }
  return value as Record<string, string>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
