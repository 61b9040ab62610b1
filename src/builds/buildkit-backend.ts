// BuildKit backend: `buildctl build` with the cache plan's options passed
// verbatim, against BUILDKIT_HOST or, when no host is set, a private daemon
// started per build by `buildctl-daemonless.sh`.
//
// Credentials: buildctl reads `$DOCKER_CONFIG/config.json` on the client side
// and answers the daemon's auth requests from it, so the build token never
// reaches the daemon's disk. FROM images in this registry are pulled with that
// token too, under auth as without: it carries pull (only) on the repos of the
// build's FROM images that the submitter was checked to be allowed to pull
// (`pullRepos` of issueBuildToken), besides its own repos and caches. Plain-HTTP registries: `registry.insecure=true` in
// the plan covers the output and the caches; pulling the FROM image over HTTP
// needs the daemon's own config. A daemonless build gets a buildkitd.toml that
// marks the registry `http = true`; a remote BUILDKIT_HOST must be configured
// that way by whoever runs it.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { checkBuildOptions, type BuilderBackend, type BuildRequest, type BuildResult } from './backend.js';
import { BuildkitProgressTracker, imageDigestFromMetadata } from './buildkit-output.js';
import { invalidInput } from './errors.js';
import type { BuildPlan } from './plan.js';
import { captureCommand, commandFailed, runCommand } from './process.js';

export interface BuildkitOptions {
  /** BUILDKIT_HOST (e.g. `tcp://buildkitd:1234`); absent → buildctl-daemonless.sh. */
  host?: string;
  buildctl?: string;
  daemonlessScript?: string;
}

export interface BuildctlInput {
  contextDir: string;
  dockerfilePath: string;
  plan: BuildPlan;
  buildArgs: Record<string, string>;
  platform?: string;
  metadataFile: string;
}

/** The arguments after `buildctl [--addr …]`, starting with `build`. Pure. */
export function buildctlBuildArguments(input: BuildctlInput): string[] {
  const args = [
    'build',
    '--progress=plain',
    '--frontend', 'dockerfile.v0',
    '--local', `context=${input.contextDir}`,
    '--local', `dockerfile=${path.dirname(input.dockerfilePath)}`,
    '--opt', `filename=${path.basename(input.dockerfilePath)}`,
  ];
  if (input.platform !== undefined) args.push('--opt', `platform=${input.platform}`);
  for (const [name, value] of Object.entries(input.buildArgs)) args.push('--opt', `build-arg:${name}=${value}`);
  args.push('--output', input.plan.output);
  for (const source of input.plan.imports) args.push('--import-cache', source);
  if (input.plan.export !== null) args.push('--export-cache', input.plan.export);
  args.push('--metadata-file', input.metadataFile);
  return args;
}

/** buildkitd.toml for a private daemon: lets it pull base images from a plain-HTTP registry. Pure. */
export function daemonlessBuildkitdConfig(plan: BuildPlan): string {
  if (!plan.insecure) return '';
  return `[registry.${JSON.stringify(plan.registry)}]\n  http = true\n  insecure = true\n`;
}

/** `buildctl github.com/moby/buildkit v0.20.2 97437fdd…` → `v0.20.2`. */
export function parseBuildctlVersion(output: string): string {
  const match = /\bv\d+\.\d+\.\d+\S*/.exec(output);
  return match ? match[0] : output.trim();
}

export class BuildkitBackend implements BuilderBackend {
  readonly name = 'buildkit' as const;
  // BuildKit could take them as named oci-layout contexts, but buildctl-daemonless
  // fails on those (moby/buildkit#7018); it pulls FROM images through the registry
  // with the build token, whose `pullRepos` grant covers them.
  readonly loadsLocalBaseImages = false;
  private readonly buildctl: string;
  private readonly daemonlessScript: string;
  // As root, buildctl-daemonless.sh always listens on /run/buildkit/buildkitd.sock,
  // so two daemonless builds at once would meet on one socket: run them one at a time.
  private daemonlessQueue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: BuildkitOptions = {}) {
    this.buildctl = options.buildctl ?? 'buildctl';
    this.daemonlessScript = options.daemonlessScript ?? 'buildctl-daemonless.sh';
  }

  async version(): Promise<string> {
    return parseBuildctlVersion(await captureCommand(this.buildctl, ['--version']));
  }

  build(request: BuildRequest): Promise<BuildResult> {
    if (this.options.host) return this.run(request, this.options.host);
    const turn = this.daemonlessQueue.then(() => this.run(request, null));
    this.daemonlessQueue = turn.catch(() => undefined);
    return turn;
  }

  private async run(request: BuildRequest, host: string | null): Promise<BuildResult> {
    checkBuildOptions(request.buildArgs, request.platform);
    const metadataFile = path.join(request.workDir, 'buildkit-metadata.json');
    const args = buildctlBuildArguments({ ...request, metadataFile });
    const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: request.dockerConfigDir };
    let command = this.buildctl;
    if (host !== null) {
      args.unshift('--addr', host);
    } else {
      command = this.daemonlessScript;
      env.BUILDKITD_FLAGS = await this.privateDaemonFlags(request);
    }

    const tracker = new BuildkitProgressTracker();
    let pushing = false;
    request.onPhase?.('building');
    const outcome = await runCommand({
      command,
      args,
      env,
      signal: request.signal,
      onLine: (line) => {
        tracker.feed(line);
        if (!pushing && BuildkitProgressTracker.isExportLine(line)) {
          pushing = true;
          request.onPhase?.('pushing');
        }
        request.log(line);
      },
    });
    if (outcome.exitCode !== 0) throw commandFailed('buildctl build', outcome);
    const digest = imageDigestFromMetadata(await readFile(metadataFile, 'utf8'));
    return { imageName: request.plan.imageName, digest, cache: tracker.summary() };
  }

  /** A state dir and config of the build's own for the daemon the script starts. */
  private async privateDaemonFlags(request: BuildRequest): Promise<string> {
    // The script splits BUILDKITD_FLAGS on whitespace.
    if (/\s/.test(request.workDir)) throw invalidInput(`build work dir "${request.workDir}" must not contain whitespace`);
    const flags = [`--root=${path.join(request.workDir, 'buildkitd')}`];
    const config = daemonlessBuildkitdConfig(request.plan);
    if (config !== '') {
      const configFile = path.join(request.workDir, 'buildkitd.toml');
      await writeFile(configFile, config);
      flags.push(`--config=${configFile}`);
    }
    return flags.join(' ');
  }
}
