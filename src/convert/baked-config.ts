// config.json beside a baked disk: how to start the image. Pure. The disk is
// shared by every repo that names the digest, so nothing here names a repo or
// tag (where an image came from is on each tenant's own name: src/images).
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
}

export function bakedConfig(args: {
  manifest: ImageManifest;
  config: ImageConfig;
  disk: BakedConfig['disk'];
}): BakedConfig {
  const { manifest, config, disk } = args;
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
  return doc;
}
