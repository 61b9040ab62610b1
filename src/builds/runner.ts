// Running one build, start to pushed image, with nothing of the service's
// bookkeeping: the unit a worker process can take over. It gets everything in
// the spec (the source archive, the plan, the credentials, the secrets, a
// private scratch dir) and reports through the hooks; it reads no database
// and calls no Kiln service.
//
//   run(spec, { signal, log, note, progress }) → { digest, cache, … }
//
// Steps: unpack the source into the scratch dir (the safe extractor, with
// limits), pick the Dockerfile, check its FROM images in this registry are
// among those the build was allowed at submission, hash the lockfiles, write
// the credentials for buildctl, and build with BuildKit. Every line it reports
// and every error it throws is first scrubbed of the token and the secrets.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { kilnBaseRefs } from './base-images.js';
import { checkBuildOptions, checkSecrets, type BuildPhase, type CacheUse } from './build-options.js';
import type { BuildkitEngine } from './buildkit/engine.js';
import { writeDockerConfig, type RegistryCredentials } from './credentials.js';
import { baseImagesOf } from './dockerfile.js';
import { BuildError } from './errors.js';
import type { BuildPlan } from './plan.js';
import { findLockfiles, type LockfileHash } from './provenance.js';
import { Scrubber } from './scrub.js';
import { extractSource, resolveDockerfile, type SourceLimits } from './source.js';

export interface BuildSpec {
  id: string;
  /** The uploaded source (tar or tar.gz). */
  sourceFile: string;
  /** Dockerfile text from the request; null: the source's own. */
  dockerfile: string | null;
  plan: BuildPlan;
  buildArgs: Record<string, string>;
  platform: string | null;
  /** For the registry (the build token); null: anonymous. */
  credentials: RegistryCredentials | null;
  /** Build secrets, id → value: for `RUN --mount=type=secret` only. */
  secrets: Record<string, string>;
  /** Repos of this registry the Dockerfile may build FROM (checked at submission). */
  allowedBaseRepos: readonly string[];
  /** Private, empty scratch dir; the caller removes it afterwards. */
  workDir: string;
  sourceLimits: SourceLimits;
}

export interface RunHooks {
  /** Cancel or timeout: the builder stops, the daemon goes, the run rejects with a `cancelled` BuildError. */
  signal: AbortSignal;
  /** A line of the builder's output. */
  log(line: string): void;
  /** One of Kiln's own lines (`==> …`). */
  note(line: string): void;
  progress(phase: BuildPhase): void;
}

export interface BuildOutcome {
  /** Digest of the pushed image manifest (`plan.imageName`, tag `latest`). */
  digest: string;
  cache: CacheUse;
  builder: { name: 'buildkit'; version: string };
  dockerfileSha256: string;
  /** FROM refs of the Dockerfile, in order (for provenance). */
  baseImageRefs: string[];
  lockfiles: LockfileHash[];
}

export interface BuildRunner {
  readonly name: 'buildkit';
  version(): Promise<string>;
  run(spec: BuildSpec, hooks: RunHooks): Promise<BuildOutcome>;
}

export class BuildkitRunner implements BuildRunner {
  readonly name = 'buildkit' as const;

  constructor(private readonly engine: BuildkitEngine) {}

  version(): Promise<string> {
    return this.engine.version();
  }

  async run(spec: BuildSpec, hooks: RunHooks): Promise<BuildOutcome> {
    const scrubber = new Scrubber();
    if (spec.credentials !== null) scrubber.add(spec.credentials.password);
    for (const value of Object.values(spec.secrets)) scrubber.add(value);
    try {
      return await this.steps(spec, {
        signal: hooks.signal,
        log: (line) => hooks.log(scrubber.scrub(line)),
        note: (line) => hooks.note(scrubber.scrub(line)),
        progress: hooks.progress,
      });
    } catch (err) {
      if (err instanceof BuildError) throw new BuildError(err.kind, scrubber.scrub(err.message), { cause: err.cause });
      throw new BuildError('build-failed', scrubber.scrub(err instanceof Error ? err.message : String(err)), { cause: err });
    }
  }

  private async steps(spec: BuildSpec, hooks: RunHooks): Promise<BuildOutcome> {
    checkBuildOptions(spec.buildArgs, spec.platform ?? undefined);
    checkSecrets(spec.secrets);
    const contextDir = path.join(spec.workDir, 'context');
    await mkdir(contextDir, { recursive: true });
    await extractSource(createReadStream(spec.sourceFile), contextDir, spec.sourceLimits);
    hooks.signal.throwIfAborted();
    const dockerfilePath = await resolveDockerfile({ contextDir, workDir: spec.workDir, dockerfileText: spec.dockerfile });
    const dockerfileText = await readFile(dockerfilePath, 'utf8');
    const baseImageRefs = baseImagesOf(dockerfileText, spec.buildArgs);
    const unchecked = kilnBaseRefs(spec.plan.registry, baseImageRefs).find((base) => !spec.allowedBaseRepos.includes(base.repo));
    if (unchecked !== undefined) {
      throw new BuildError('denied', `FROM ${unchecked.ref}: ${unchecked.repo} was not checked when the build was submitted; submit it again`);
    }
    const lockfiles = await findLockfiles(contextDir);
    const dockerConfigDir = await writeDockerConfig(path.join(spec.workDir, 'docker'), spec.plan.registry, spec.credentials);
    const version = await this.engine.version().catch(() => 'unknown');
    hooks.progress('building');
    const built = await this.engine.build({
      workDir: spec.workDir,
      input: { contextDir, dockerfilePath, plan: spec.plan, buildArgs: spec.buildArgs, platform: spec.platform ?? undefined },
      secrets: spec.secrets,
      dockerConfigDir,
      signal: hooks.signal,
      onLine: hooks.log,
      onPushing: () => hooks.progress('pushing'),
      note: hooks.note,
    });
    return {
      digest: built.digest,
      cache: built.cache,
      builder: { name: 'buildkit', version },
      dockerfileSha256: `sha256:${createHash('sha256').update(dockerfileText).digest('hex')}`,
      baseImageRefs,
      lockfiles,
    };
  }
}
