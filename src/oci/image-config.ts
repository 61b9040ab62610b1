// The image config blob (OCI image-spec "Image Configuration", Docker's
// container.image.v1 uses the same fields) reduced to what a microVM host
// needs to start the image, plus Docker → OCI manifest normalization.
import { parseDigest } from './digest.js';
import type { Descriptor, Manifest } from './manifest.js';
import { toOciMediaType } from './media-types.js';

/** Configs are small JSON documents; anything larger is not one. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

export interface RunConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  user: string;
  /** `port/proto` keys of ExposedPorts, sorted, e.g. `8080/tcp`. */
  exposedPorts: string[];
  stopSignal?: string;
  labels: Record<string, string>;
}

export interface ImageConfig {
  os: string;
  architecture: string;
  variant?: string;
  run: RunConfig;
  /** Digests of the uncompressed layers, in order (rootfs.diff_ids). */
  diffIds: string[];
}

export class ImageConfigError extends Error {
  constructor(message: string) {
    super(`invalid image config: ${message}`);
    this.name = 'ImageConfigError';
  }
}

export function parseImageConfig(bytes: Uint8Array): ImageConfig {
  if (bytes.length > MAX_CONFIG_BYTES) throw new ImageConfigError(`${bytes.length} bytes; the limit is ${MAX_CONFIG_BYTES}`);
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (err) {
    throw new ImageConfigError(`not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw new ImageConfigError('must be a JSON object');
  const os = requiredString(doc, 'os');
  const architecture = requiredString(doc, 'architecture');
  const variant = optionalString(doc, 'variant');

  const config = doc.config ?? {};
  if (!isObject(config)) throw new ImageConfigError('"config" must be an object');
  const exposed = config.ExposedPorts ?? {};
  if (!isObject(exposed)) throw new ImageConfigError('"config.ExposedPorts" must be an object');
  const run: RunConfig = {
    entrypoint: stringList(config, 'Entrypoint'),
    cmd: stringList(config, 'Cmd'),
    env: stringList(config, 'Env'),
    workingDir: optionalString(config, 'WorkingDir') ?? '',
    user: optionalString(config, 'User') ?? '',
    exposedPorts: Object.keys(exposed).sort(),
    labels: stringMap(config, 'Labels'),
  };
  const stopSignal = optionalString(config, 'StopSignal');
  if (stopSignal) run.stopSignal = stopSignal;

  const out: ImageConfig = { os, architecture, run, diffIds: parseDiffIds(doc.rootfs) };
  if (variant) out.variant = variant;
  return out;
}

function parseDiffIds(rootfs: unknown): string[] {
  if (!isObject(rootfs)) throw new ImageConfigError('"rootfs" must be an object');
  if (rootfs.type !== 'layers') throw new ImageConfigError('"rootfs.type" must be "layers"');
  const ids = rootfs.diff_ids;
  if (!Array.isArray(ids)) throw new ImageConfigError('"rootfs.diff_ids" must be an array');
  return ids.map((id, i) => {
    if (typeof id !== 'string') throw new ImageConfigError(`rootfs.diff_ids[${i}] must be a string`);
    try {
      return parseDigest(id).digest;
    } catch (err) {
      throw new ImageConfigError(`rootfs.diff_ids[${i}]: ${(err as Error).message}`);
    }
  });
}

/**
 * The same manifest with Docker schema 2 media types replaced by their OCI
 * equivalents, so later code handles one vocabulary. Only the in-memory
 * value changes: the stored bytes and their digest stay as pushed.
 */
export function normalizeManifest<M extends Manifest>(manifest: M): M {
  const mediaType = toOciMediaType(manifest.mediaType);
  if (manifest.kind === 'index') {
    return { ...manifest, mediaType, manifests: manifest.manifests.map(normalizeDescriptor) };
  }
  return {
    ...manifest,
    mediaType,
    config: normalizeDescriptor(manifest.config),
    layers: manifest.layers.map(normalizeDescriptor),
  };
}

function normalizeDescriptor(d: Descriptor): Descriptor {
  return { ...d, mediaType: toOciMediaType(d.mediaType) };
}

function requiredString(doc: Record<string, unknown>, key: string): string {
  const value = doc[key];
  if (typeof value !== 'string' || !value) throw new ImageConfigError(`"${key}" must be a non-empty string`);
  return value;
}

function optionalString(doc: Record<string, unknown>, key: string): string | undefined {
  const value = doc[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new ImageConfigError(`"${key}" must be a string`);
  return value;
}

// Docker writes null for unset lists.
function stringList(doc: Record<string, unknown>, key: string): string[] {
  const value = doc[key];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new ImageConfigError(`"config.${key}" must be an array of strings`);
  }
  return value;
}

function stringMap(doc: Record<string, unknown>, key: string): Record<string, string> {
  const value = doc[key];
  if (value === undefined || value === null) return {};
  if (!isObject(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw new ImageConfigError(`"config.${key}" must be a map of strings`);
  }
  return { ...(value as Record<string, string>) };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
