// The contract between the build service and the tools that build images, and
// the rule that picks the tool. A backend runs one build per call, each in the
// request's own work dir, so the queue can run several at once.
import { invalidInput } from './errors.js';
import type { BuildPlan } from './plan.js';

export type BuilderName = 'buildkit' | 'buildah';

export interface CacheUse {
  /** Dockerfile steps that change the filesystem (RUN, COPY, ADD, WORKDIR): the ones BuildKit lists. */
  totalSteps: number;
  /** Of those, the steps the builder took from a cache instead of running them. */
  cachedSteps: number;
}

export type BuildPhase = 'building' | 'pushing';

/** A base image handed to the builder from Kiln's own store instead of being pulled from the registry. */
export interface LocalBaseImage {
  /** The FROM ref it stands for, as the Dockerfile spells it. */
  ref: string;
  /** An OCI image layout holding it (its last path component a lowercase name), and its `org.opencontainers.image.ref.name` there. */
  layoutDir: string;
  layoutName: string;
}

export interface BuildRequest {
  /** Absolute path of the extracted source tree. */
  contextDir: string;
  /** Absolute path of the Dockerfile; may lie outside `contextDir`. */
  dockerfilePath: string;
  plan: BuildPlan;
  buildArgs: Record<string, string>;
  /** `os/arch[/variant]`; the builder's own platform when absent. */
  platform?: string;
  /** Holds `config.json` with the build's registry credentials (written by the caller, 0600). */
  dockerConfigDir: string;
  /** Private, empty-at-start scratch directory of this build; the caller deletes it afterwards. */
  workDir: string;
  /** Receives the builder's output line by line, without line endings. */
  log: (line: string) => void;
  /**
   * FROM images that live in this registry. A backend that can load local
   * images (buildah) takes them from the layout; one that cannot (buildkit)
   * pulls the refs with the build's credentials (the build token may pull them).
   */
  baseImages?: LocalBaseImage[];
  /** Told when the build moves from building to pushing the image. */
  onPhase?: (phase: BuildPhase) => void;
  /** Aborting kills the builder and its children; the build then rejects with a `cancelled` BuildError. */
  signal: AbortSignal;
}

export interface BuildResult {
  /** `R/builds/<id>`, pushed with tag `latest`. */
  imageName: string;
  /** Digest of the pushed manifest. */
  digest: string;
  cache: CacheUse;
}

export interface BuilderBackend {
  readonly name: BuilderName;
  /** Whether the backend takes `BuildRequest.baseImages` from their layout; otherwise it pulls the FROM refs itself. */
  readonly loadsLocalBaseImages: boolean;
  /** The builder's version as it reports it, for provenance. */
  version(): Promise<string>;
  build(request: BuildRequest): Promise<BuildResult>;
}

export interface BuilderEnvironment {
  /** KILN_BUILDER: "buildkit", "buildah", or unset/empty/"auto" for the automatic choice. */
  requested: string | undefined;
  /** BUILDKIT_HOST, when set. */
  buildkitHost: string | undefined;
  /** Whether `buildctl` is on PATH. */
  hasBuildctl: boolean;
}

/**
 * Which builder to use. An explicit choice wins (buildkit without a host runs
 * buildctl-daemonless.sh); auto uses BuildKit only when a daemon is both named
 * and reachable through buildctl, because buildah needs neither.
 */
export function selectBuilder(env: BuilderEnvironment): BuilderName {
  const requested = (env.requested ?? '').trim().toLowerCase();
  if (requested === 'buildkit' || requested === 'buildah') return requested;
  if (requested !== '' && requested !== 'auto') {
    throw new Error(`KILN_BUILDER="${env.requested}" is not a builder; use buildkit, buildah or auto`);
  }
  const hasHost = (env.buildkitHost ?? '').trim() !== '';
  return env.hasBuildctl && hasHost ? 'buildkit' : 'buildah';
}

const BUILD_ARG_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PLATFORM = /^[a-z0-9_]+\/[a-z0-9_]+(?:\/[a-z0-9_.]+)?$/;

/** Checks build args and platform before they reach a builder's command line. */
export function checkBuildOptions(buildArgs: Record<string, string>, platform: string | undefined): void {
  for (const [name, value] of Object.entries(buildArgs)) {
    if (!BUILD_ARG_NAME.test(name)) {
      throw invalidInput(`build arg name "${name}" must be letters, digits and "_", not starting with a digit`);
    }
    if (typeof value !== 'string') throw invalidInput(`build arg "${name}" must have a string value`);
  }
  if (platform !== undefined && !PLATFORM.test(platform)) {
    throw invalidInput(`platform "${platform}" must look like os/arch or os/arch/variant, e.g. linux/amd64`);
  }
}
