// buildah backend: `buildah bud` then `buildah push`, runnable here as root
// without a daemon: vfs storage private to the build (nothing shared between
// builds, nothing left behind), chroot isolation, credentials from the
// per-build auth file.
//
// How the cache plan maps onto buildah 1.28 (Debian 12), and what differs from BuildKit:
// - Cache format. buildah's registry cache is not BuildKit's cacheconfig
//   manifest: with `--layers`, `--cache-to REPO` pushes one ordinary image per
//   built step (every instruction, ARG and ENV included), tagged
//   `REPO:<cache key>` (a hash of the parent image and the step), and
//   `--cache-from REPO` pulls `REPO:<key>` for each step before running it.
//   The repos are the plan's own (`cache/global/<key>`, `cache/<scope>`), so
//   Kiln treats these images as build cache by location and never bakes them.
//   BuildKit and buildah caches in one repo do not share hits.
// - Several imports. buildah 1.28 takes one `--cache-from` (given twice, the
//   last one wins; newer releases accept a list). The first import ref is given as
//   `--cache-from`, and the others become registries.conf mirrors of it, which
//   containers/image tries before the ref itself for every pull. So each step
//   is looked up in the tenant cache, then the global one, as BuildKit would;
//   the log names the `--cache-from` ref even when a mirror served the hit.
// - ARG. buildah 1.28 never takes an ARG instruction after FROM from a remote
//   cache (it looks ARG steps up only in local storage, which is empty here),
//   so every step after such an ARG misses and is rebuilt. ARGs before the
//   first FROM are fine. BuildKit has no such gap.
// - What gets exported. `--cache-to` receives only the steps this build ran;
//   hits pulled from the global cache are not copied into the tenant cache
//   (BuildKit mode=max would), which is harmless while the global cache stays.
//   Steps of every stage are exported, as with mode=max.
// - Plain HTTP: `--tls-verify=false` on bud (base image, cache pull and push)
//   and push, and `insecure = true` on the mirrors.
// - Cache hits are read from `--> Using cache` lines, the digest from `push --digestfile`.
// - Base images in Kiln (request.baseImages) are loaded from the OCI layout the
//   service wrote (`buildah pull oci:…`, then tagged with the FROM ref) and bud
//   runs with `--pull=false` (pull only what is missing), so they are never
//   fetched over the network; the image ID, and so every cache key, is the
//   same as after a registry pull.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tryParseDigest } from '../oci/digest.js';
import { checkBuildOptions, type BuilderBackend, type BuildRequest, type BuildResult, type LocalBaseImage } from './backend.js';
import { BuildahStepTracker } from './buildah-output.js';
import { BuildError } from './errors.js';
import type { BuildPlan } from './plan.js';
import { captureCommand, commandFailed, runCommand } from './process.js';

export interface BuildahLayout {
  /** containers-storage graph root (vfs). */
  root: string;
  runroot: string;
  /** TMPDIR for buildah's large temporary files. */
  tmpDir: string;
  digestFile: string;
  /** Written only when the plan has more than one import ref. */
  registriesConf: string;
}

/** Where a build's buildah state lives inside its work dir. Pure. */
export function buildahLayout(workDir: string): BuildahLayout {
  const storage = path.join(workDir, 'buildah');
  return {
    root: path.join(storage, 'root'),
    runroot: path.join(storage, 'runroot'),
    tmpDir: path.join(storage, 'tmp'),
    digestFile: path.join(workDir, 'image-digest'),
    registriesConf: path.join(workDir, 'registries.conf'),
  };
}

function storageArguments(layout: BuildahLayout): string[] {
  return ['--storage-driver', 'vfs', '--root', layout.root, '--runroot', layout.runroot];
}

function tlsArguments(plan: BuildPlan): string[] {
  return plan.insecure ? ['--tls-verify=false'] : [];
}

export interface BudInput {
  contextDir: string;
  dockerfilePath: string;
  plan: BuildPlan;
  buildArgs: Record<string, string>;
  platform?: string;
  layout: BuildahLayout;
  /** Base images were loaded into storage beforehand: pull only images that are missing. */
  preloadedBaseImages?: boolean;
}

/** `buildah … bud …`: the whole command line after `buildah`. Pure. */
export function buildahBudArguments(input: BudInput): string[] {
  const { plan } = input;
  const cacheFrom = plan.importRefs[0] ?? null;
  const usesCache = cacheFrom !== null || plan.exportRef !== null;
  const args = [
    ...storageArguments(input.layout),
    'bud',
    '--isolation', 'chroot',
    ...tlsArguments(plan),
    '--format', 'oci',
    '--file', input.dockerfilePath,
    '--tag', plan.imageName,
    // Per-step images only pay off when a registry cache is read or written.
    `--layers=${usesCache}`,
  ];
  // "false" means pull-if-missing in buildah 1.28; the default ("true") would ask the registry for newer versions.
  if (input.preloadedBaseImages) args.push('--pull=false');
  if (cacheFrom !== null) args.push('--cache-from', cacheFrom);
  if (plan.exportRef !== null) args.push('--cache-to', plan.exportRef);
  if (input.platform !== undefined) args.push('--platform', input.platform);
  for (const [name, value] of Object.entries(input.buildArgs)) args.push('--build-arg', `${name}=${value}`);
  args.push(input.contextDir);
  return args;
}

/**
 * `buildah … pull …` of a base image from the service's OCI layout; prints the
 * image ID. Run in the layout's parent directory: buildah 1.28 names the pulled
 * image after the layout's path, which must be a valid (lowercase) repository
 * name, and the data dir's path need not be. Pure.
 */
export function buildahLoadArguments(image: LocalBaseImage, layout: BuildahLayout): string[] {
  return [...storageArguments(layout), 'pull', '--quiet', `oci:${path.basename(image.layoutDir)}:${image.layoutName}`];
}

/** `buildah … tag …`: names a loaded base image as the Dockerfile's FROM ref. Pure. */
export function buildahTagArguments(imageId: string, ref: string, layout: BuildahLayout): string[] {
  return [...storageArguments(layout), 'tag', imageId, ref];
}

/** `buildah … push …`: pushes the built image as `R/builds/<id>:latest`. Pure. */
export function buildahPushArguments(plan: BuildPlan, layout: BuildahLayout): string[] {
  return [
    ...storageArguments(layout),
    'push',
    ...tlsArguments(plan),
    '--format', 'oci',
    '--digestfile', layout.digestFile,
    plan.imageName,
    `docker://${plan.imageName}:latest`,
  ];
}

/**
 * registries.conf that makes every import ref after the first a mirror of the
 * first (see the top of this file); null when there is at most one. Pure.
 */
export function cacheMirrorsConf(plan: BuildPlan): string | null {
  const [primary, ...mirrors] = plan.importRefs;
  if (primary === undefined || mirrors.length === 0) return null;
  const insecure = plan.insecure ? 'insecure = true\n' : '';
  const lines = [
    `# Build ${plan.buildId}: buildah reads one --cache-from; the other cache imports are its mirrors.`,
    '[[registry]]',
    `prefix = ${JSON.stringify(primary)}`,
    `location = ${JSON.stringify(primary)}`,
    insecure,
  ];
  for (const mirror of mirrors) lines.push('[[registry.mirror]]', `location = ${JSON.stringify(mirror)}`, insecure);
  return lines.join('\n');
}

/** `buildah version 1.28.2 (image-spec …)` → `1.28.2`. */
export function parseBuildahVersion(output: string): string {
  const match = /buildah version (\S+)/.exec(output);
  return match ? match[1]! : output.trim();
}

export class BuildahBackend implements BuilderBackend {
  readonly name = 'buildah' as const;
  readonly loadsLocalBaseImages = true;

  constructor(private readonly buildah = 'buildah') {}

  async version(): Promise<string> {
    return parseBuildahVersion(await captureCommand(this.buildah, ['--version']));
  }

  async build(request: BuildRequest): Promise<BuildResult> {
    checkBuildOptions(request.buildArgs, request.platform);
    const layout = buildahLayout(request.workDir);
    await mkdir(layout.tmpDir, { recursive: true });
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TMPDIR: layout.tmpDir,
      REGISTRY_AUTH_FILE: path.join(request.dockerConfigDir, 'config.json'),
      DOCKER_CONFIG: request.dockerConfigDir,
      // The environment would otherwise override these defaults of bud.
      BUILDAH_ISOLATION: 'chroot',
    };
    delete env.BUILDAH_LAYERS;
    const mirrors = cacheMirrorsConf(request.plan);
    if (mirrors !== null) {
      await writeFile(layout.registriesConf, mirrors);
      env.CONTAINERS_REGISTRIES_CONF = layout.registriesConf;
    }

    try {
      const tracker = new BuildahStepTracker();
      request.onPhase?.('building');
      const baseImages = request.baseImages ?? [];
      for (const image of baseImages) await this.loadBaseImage(image, layout, env, request);
      const bud = await runCommand({
        command: this.buildah,
        args: buildahBudArguments({ ...request, layout, preloadedBaseImages: baseImages.length > 0 }),
        env,
        signal: request.signal,
        onLine: (line) => {
          tracker.feed(line);
          request.log(line);
        },
      });
      if (bud.exitCode !== 0) throw commandFailed('buildah bud', bud);

      request.onPhase?.('pushing');
      const push = await runCommand({
        command: this.buildah,
        args: buildahPushArguments(request.plan, layout),
        env,
        signal: request.signal,
        onLine: request.log,
      });
      if (push.exitCode !== 0) throw commandFailed('buildah push', push);
      return { imageName: request.plan.imageName, digest: await readDigestFile(layout.digestFile), cache: tracker.summary() };
    } finally {
      // vfs keeps a full copy of every layer: free it now, not when the work dir goes.
      await rm(path.dirname(layout.root), { recursive: true, force: true });
    }
  }

  private async loadBaseImage(image: LocalBaseImage, layout: BuildahLayout, env: NodeJS.ProcessEnv, request: BuildRequest): Promise<void> {
    const pull = await runCommand({
      command: this.buildah,
      args: buildahLoadArguments(image, layout),
      cwd: path.dirname(image.layoutDir),
      env,
      signal: request.signal,
      onLine: () => undefined,
    });
    if (pull.exitCode !== 0) throw commandFailed(`loading base image ${image.ref}`, pull);
    const imageId = pull.tail.filter((l) => /^[0-9a-f]{64}$/.test(l.trim())).pop()?.trim();
    if (imageId === undefined) throw new BuildError('build-failed', `loading base image ${image.ref}: buildah printed no image ID`);
    const tag = await runCommand({
      command: this.buildah,
      args: buildahTagArguments(imageId, image.ref, layout),
      env,
      signal: request.signal,
      onLine: request.log,
    });
    if (tag.exitCode !== 0) throw commandFailed(`naming base image ${image.ref}`, tag);
    request.log(`loaded base image ${image.ref} (image ${imageId.slice(0, 12)}) from the registry's store`);
  }
}

async function readDigestFile(file: string): Promise<string> {
  const digest = (await readFile(file, 'utf8')).trim();
  if (tryParseDigest(digest) === null) {
    throw new BuildError('build-failed', `buildah push wrote "${digest.slice(0, 80)}" as the digest, which is not one`);
  }
  return digest;
}
