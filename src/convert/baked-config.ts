// config.json beside a baked disk: how to start the image and where it came from. Pure.
import type { ImageConfig, RunConfig } from '../oci/image-config.js';
import type { ImageManifest } from '../oci/manifest.js';

export interface BakedConfig extends RunConfig {
  schemaVersion: 1;
  os: string;
  architecture: string;
  variant?: string;
  configDigest: string;
  /** Layer blob digests, bottom first. */
  layers: string[];
  diffIds: string[];
  disk: { file: string; format: string; sizeBytes: number };
  source?: { repo: string; tag?: string };
}

export function bakedConfig(args: {
  manifest: ImageManifest;
  config: ImageConfig;
  disk: BakedConfig['disk'];
  source?: { repo: string; tag?: string };
}): BakedConfig {
  const { manifest, config, disk, source } = args;
  const doc: BakedConfig = {
    schemaVersion: 1,
    ...config.run,
    os: config.os,
    architecture: config.architecture,
    configDigest: manifest.config.digest,
    layers: manifest.layers.map((l) => l.digest),
    diffIds: config.diffIds,
    disk,
  };
  if (config.variant) doc.variant = config.variant;
  if (source) doc.source = source.tag ? { repo: source.repo, tag: source.tag } : { repo: source.repo };
  return doc;
}
