// An OCI layout holding the BuildKit fixtures' base image (busybox, one layer)
// under the tag v1, for pushes by real clients.
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildkitFixtures } from './paths.js';

export const BASE_IMAGE = {
  manifestFile: path.join(buildkitFixtures, 'base-image.manifest.json'),
  manifestDigest: 'sha256:7b982622cc02f0e9bf5923c3a1282310d6708ef9eb22425df8e4b574f8d50d37',
  configHex: 'f2f2a57b8d19d8ad7a29eb116ac0c4d58f41f8ea917dba8f462012488ec240e4',
  layerHex: 'e8d7956ac6786951069dea96651f4c11f0d636038d495c693c50c90cf9bc64f4',
  blobsDir: path.join(buildkitFixtures, 'blobs', 'sha256'),
};

export async function writeBaseImageLayout(layout: string): Promise<void> {
  await mkdir(path.join(layout, 'blobs', 'sha256'), { recursive: true });
  await writeFile(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const manifest = await readFile(BASE_IMAGE.manifestFile);
  await writeFile(path.join(layout, 'blobs', 'sha256', BASE_IMAGE.manifestDigest.slice(7)), manifest);
  for (const hex of [BASE_IMAGE.configHex, BASE_IMAGE.layerHex]) {
    await copyFile(path.join(BASE_IMAGE.blobsDir, hex), path.join(layout, 'blobs', 'sha256', hex));
  }
  await writeFile(
    path.join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: BASE_IMAGE.manifestDigest,
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': 'v1' },
        },
      ],
    }),
  );
}
