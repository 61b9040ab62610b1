// Builds the build service from the server's parts. The registry and image
// services are taken by shape (what the builds module reads of them), so this
// module depends on neither.
import type { AuthMode, BuildTokenRequest, SignedToken } from '../auth/index.js';
import type { BuildStore } from '../store/build-store.js';
import type { DataDir } from '../store/data-dir.js';
import type { BuildFiles } from '../store/build-files.js';
import type { RegistryReader } from './base-images.js';
import { BuildkitEngine } from './buildkit/engine.js';
import { locateBuildkit } from './buildkit/locate.js';
import type { BuildsConfig } from './config.js';
import { BuildkitRunner, type BuildRunner } from './runner.js';
import { BuildService, type DiskSource, type DiskStatus } from './service.js';

/** What the build service reads of the registry. */
export interface RegistryShape {
  readManifest(repo: string, reference: string): Promise<{ record: { digest: string; mediaType: string }; bytes: Buffer }>;
}

/** The bake of `repo@digest` as the image service shows it; null when it has none. */
export type DiskLookup = (repo: string, digest: string) => Promise<{ status: DiskStatus; diskSize: number | null; error: string | null } | null>;

interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug?(obj: object, msg?: string): void;
}

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
  log: Logger;
  /** Other processes share the store and data directory (Stores.shared). */
  shared?: boolean;
  /** A build holder's lease (KILN_JOB_LEASE). */
  leaseMs?: number;
}

/** The BuildKit runner this host can offer, or why there is none. */
export async function createBuildRunner(config: BuildsConfig, log: Logger): Promise<{ runner: BuildRunner } | { unavailable: string }> {
  const located = await locateBuildkit({ dir: config.buildkitDir, usesPool: config.buildkitPool.length > 0, cniBinDir: config.cniBinDir });
  if ('problem' in located) return { unavailable: located.problem };
  const engine = new BuildkitEngine({
    tools: located.tools,
    pool: config.buildkitPool,
    cniBinDir: located.cniBinDir,
    subnet: config.buildSubnet,
    startTimeoutMs: config.daemonStartTimeoutMs,
    onDaemonLog: (line) => log.debug?.({ buildkitd: line }, 'buildkitd'),
  });
  await engine.recover();
  return { runner: new BuildkitRunner(engine) };
}

export async function createBuildService(setup: BuildSetup): Promise<BuildService> {
  const builder = await createBuildRunner(setup.config, setup.log);
  const registry: RegistryReader = {
    manifest: async (repo, reference) => {
      try {
        const { record, bytes } = await setup.registry.readManifest(repo, reference);
        return { digest: record.digest, mediaType: record.mediaType, bytes };
      } catch {
        return null;
      }
    },
  };
  const disks: DiskSource = {
    diskOf: async (repo, digest) => {
      const view = await setup.diskOf(repo, digest);
      return view === null ? null : { status: view.status, size: view.diskSize, error: view.error };
    },
  };
  const tokens = setup.auth.mode === 'token' ? { issue: setup.auth.tokens.issueBuildToken, revoke: setup.auth.tokens.revoke } : null;
  if ('unavailable' in builder) setup.log.warn({ reason: builder.unavailable }, 'builds are not available');
  else setup.log.info({ builder: builder.runner.name, pool: setup.config.buildkitPool, maxConcurrent: setup.config.maxConcurrent }, 'builds enabled');
  const service = new BuildService({
    store: setup.store,
    files: setup.files,
    scratchRoot: setup.dirs.scratchRoot,
    runner: 'runner' in builder ? builder.runner : null,
    unavailable: 'unavailable' in builder ? builder.unavailable : undefined,
    registry,
    disks,
    tokens,
    config: setup.config,
    log: setup.log,
    shared: setup.shared,
    leaseMs: setup.leaseMs,
  });
  await service.recover();
  return service;
}
