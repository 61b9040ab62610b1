// `buildctl build` against one daemon, with the cache plan's options passed
// verbatim.
//
// Credentials: buildctl reads `$DOCKER_CONFIG/config.json` on the client side
// and answers the daemon's auth requests from it, so the build token never
// reaches the daemon's disk, let alone a RUN step (which sees no host path).
// Build secrets go to buildctl in its environment (`--secret id=…,env=…`) and
// from there only into `RUN --mount=type=secret` mounts: never a file, never
// an argument a `ps` would show. buildctl gets a clean environment: nothing of
// the server's own leaks into it. No `--allow` is ever passed, so a Dockerfile
// cannot get `network.host` or `security.insecure`.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { CacheUse } from '../build-options.js';
import type { BuildPlan } from '../plan.js';
import { commandFailed, runCommand } from '../process.js';
import { BuildkitProgressTracker, imageDigestFromMetadata } from './progress.js';

export interface BuildctlInput {
  contextDir: string;
  dockerfilePath: string;
  plan: BuildPlan;
  buildArgs: Record<string, string>;
  platform?: string;
  metadataFile: string;
  /** Build secret ids, in the order of their values in the environment. */
  secretIds: readonly string[];
}

/** The environment variable holding the value of the build's `index`-th secret. */
export function secretEnvName(index: number): string {
  return `KILN_BUILD_SECRET_${index}`;
}

/** The arguments after `buildctl --addr …`, starting with `build`. Pure. */
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
  input.secretIds.forEach((id, i) => args.push('--secret', `id=${id},env=${secretEnvName(i)}`));
  args.push('--output', input.plan.output);
  for (const source of input.plan.imports) args.push('--import-cache', source);
  if (input.plan.export !== null) args.push('--export-cache', input.plan.export);
  args.push('--metadata-file', input.metadataFile);
  return args;
}

/** `buildctl github.com/moby/buildkit v0.20.2 97437fdd…` → `v0.20.2`. */
export function parseBuildctlVersion(output: string): string {
  const match = /\bv\d+\.\d+\.\d+\S*/.exec(output);
  return match ? match[0] : output.trim();
}

export interface BuildctlRun {
  buildctl: string;
  /** The daemon, `unix://…` or `tcp://…`. */
  addr: string;
  input: Omit<BuildctlInput, 'secretIds'>;
  /** Build secrets, id → value. */
  secrets: Readonly<Record<string, string>>;
  /** Holds config.json with the build's registry credentials. */
  dockerConfigDir: string;
  signal: AbortSignal;
  onLine: (line: string) => void;
  /** Called once when BuildKit starts exporting the image. */
  onPushing: () => void;
}

export async function runBuildctl(run: BuildctlRun): Promise<{ digest: string; cache: CacheUse }> {
  const secretIds = Object.keys(run.secrets);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', DOCKER_CONFIG: run.dockerConfigDir };
  secretIds.forEach((id, i) => (env[secretEnvName(i)] = run.secrets[id]));
  const args = ['--addr', run.addr, ...buildctlBuildArguments({ ...run.input, secretIds })];
  const tracker = new BuildkitProgressTracker();
  let pushing = false;
  const outcome = await runCommand({
    command: run.buildctl,
    args,
    env,
    signal: run.signal,
    onLine: (line) => {
      tracker.feed(line);
      if (!pushing && BuildkitProgressTracker.isExportLine(line)) {
        pushing = true;
        run.onPushing();
      }
      run.onLine(line);
    },
  });
  if (outcome.exitCode !== 0) throw commandFailed('buildctl build', outcome);
  return { digest: imageDigestFromMetadata(await readFile(run.input.metadataFile, 'utf8')), cache: tracker.summary() };
}
