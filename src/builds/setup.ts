// Builds the build service from the server's parts. The registry and image
// services are taken by shape (what the builds module reads of them), so this
// module depends on neither.
import type { Readable } from 'node:stream';
import type { AuthMode, BuildTokenRequest, SignedToken } from '../auth/index.js';
import type { DataDir } from '../store/data-dir.js';
import type { BuildStore } from '../store/build-store.js';
import type { BuildFiles } from '../store/fs/build-files.js';
import type { RegistryReader } from './base-images.js';
import { createBuilderBackend } from './builder-factory.js';
import type { BuildsConfig } from './config.js';
import { BuildService, type DiskSource, type DiskStatus } from './service.js';

/** What the build service reads of the registry. */
export interface RegistryShape {
  readManifest(repo: string, reference: string): Promise<{ record: { digest: string; mediaType: string }; bytes: Buffer }>;
  blobs: { open(digest: string): Promise<Readable | null> };
}

/** The bake of `repo@digest` as the image service shows it; null when it has none. */
export type DiskLookup = (repo: string, digest: string) => Promise<{ status: DiskStatus; diskSize: number | null; error: string | null } | null>;

export interface BuildSetup {
  config: BuildsConfig;
  store: BuildStore;
  files: BuildFiles;
  dirs: DataDir;
  registry: RegistryShape;
  diskOf: DiskLookup;
  auth: {
    mode: AuthMode;
    tokens: { issueBuildToken(request: BuildTokenRequest): Promise<SignedToken>; revoke(jti: string): Promise<unknown> };
  };
  log: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

export async function createBuildService(setup: BuildSetup): Promise<BuildService> {
  const backend = await createBuilderBackend({
    PATH: process.env.PATH,
    KILN_BUILDER: setup.config.builder,
    BUILDKIT_HOST: setup.config.buildkitHost,
  });
  const registry: RegistryReader = {
    manifest: async (repo, reference) => {
      try {
        const { record, bytes } = await setup.registry.readManifest(repo, reference);
        return { digest: record.digest, mediaType: record.mediaType, bytes };
      } catch {
        return null;
      }
    },
    openBlob: (digest) => setup.registry.blobs.open(digest),
  };
  const disks: DiskSource = {
    diskOf: async (repo, digest) => {
      const view = await setup.diskOf(repo, digest);
      return view === null ? null : { status: view.status, size: view.diskSize, error: view.error };
    },
  };
  const tokens = setup.auth.mode === 'token' ? { issue: setup.auth.tokens.issueBuildToken, revoke: setup.auth.tokens.revoke } : null;
  setup.log.info({ builder: backend.name, maxConcurrent: setup.config.maxConcurrent }, 'builds enabled');
  const service = new BuildService({
    store: setup.store,
    files: setup.files,
    scratchRoot: setup.dirs.scratchRoot,
    backend,
    registry,
    disks,
    tokens,
    config: setup.config,
    log: setup.log,
  });
  await service.recover();
  return service;
}
