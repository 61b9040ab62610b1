// The build service: takes a source tree, queues it, runs it through the
// builder backend with the cache plan, waits for the pushed image's disk, and
// records everything a caller may ask about.
//
// - Queue: FIFO on submission order, at most KILN_MAX_CONCURRENT_BUILDS builders
//   at once. A build holds its slot while building and pushing; waiting for
//   the bake does not take a slot.
// - Status: queued → building → pushing → baking → ready, or failed (with the
//   reason) or cancelled. A timeout kills the builder and fails the build
//   with "timed out after N s"; it covers building and pushing, not the bake,
//   which other images may share and which the bake queue paces.
// - Restart: queued builds stay queued and run in order. A build that was
//   building or pushing when the server stopped is marked failed with
//   "interrupted by restart" (not re-run: a half-pushed build is not worth
//   guessing about, and the user can submit again; the source is kept). A build
//   that was baking goes on waiting for its disk, as the bake job itself is
//   durable. Uploads that never became builds are removed.
// - Credentials: with auth on, each build gets a build token (issueBuildToken:
//   exactly its own repos and caches, alive until its timeout plus a margin and
//   at least 30 min) written into a Docker config.json in the build's private
//   work dir (0700, file 0600), deleted with it; the token is revoked when the
//   builder is done and scrubbed from every log line. With auth off the
//   builder pushes anonymously.
// - Base images in this registry (FROM <registry>/<repo>): the submitter must be
//   allowed to pull them, checked at submission. The repos so checked are kept
//   with the build (pull-repos.json in its directory) and become the build
//   token's `pullRepos`: pull only, on exactly those repos (never cache/ or
//   builds/ ones, which follow the policy table), so a backend that pulls FROM
//   images itself (BuildKit) can. Buildah takes them from Kiln's own store
//   instead (an OCI layout, see base-images.ts). At run time a FROM repo that
//   was not checked at submission (the registry host changed meanwhile) is refused.
// - Auth off: every caller is an anonymous admin without a tenant, so every
//   build is an admin build: it imports and exports only cache/global/<key>
//   (nothing without a key) and belongs to no tenant.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGzip } from 'node:zlib';
import type { BuildTokenRequest, SignedToken } from '../auth/index.js';
import { tenantScope } from '../auth/tenant.js';
import { TERMINAL_BUILD_STATUSES, type BuildPatch, type BuildRecord, type BuildStatus, type BuildStore } from '../store/build-store.js';
import type { BuildFiles } from '../store/fs/build-files.js';
import { checkBuildOptions, type BuilderBackend } from './backend.js';
import { hostPlatform, kilnBaseRefs, resolveBaseImages, type RegistryReader } from './base-images.js';
import { BuildLog, followLog, type LogFollower } from './build-log.js';
import { registryHostFromAddress, type BuildsConfig } from './config.js';
import { writeDockerConfig } from './credentials.js';
import { baseImagesOf } from './dockerfile.js';
import { BuildError, invalidInput } from './errors.js';
import { normalizeCacheName, planBuild } from './plan.js';
import { buildProvenance, findLockfiles } from './provenance.js';
import { extractSource, resolveDockerfile } from './source.js';

/** Who submits a build, as the authorizer saw them. */
export interface BuildCaller {
  subject: string;
  role: 'admin' | 'tenant';
  /** The tenant the caller acts for; null only for admins without one (and everyone when auth is off). */
  tenant: string | null;
  /** Whether the caller may pull `repo` (for FROM images in this registry). */
  canPull(repo: string): boolean;
}

export interface BuildSubmission {
  caller: BuildCaller;
  dockerfile?: string | null;
  buildArgs?: Record<string, string>;
  globalKey?: string | null;
  admin?: boolean;
  timeoutSeconds?: number | null;
  platform?: string | null;
}

/** An uploaded source archive not yet turned into a build. */
export interface PendingSource {
  id: string;
  sha256: string;
  bytes: number;
}

export type DiskStatus = 'pending' | 'baking' | 'ready' | 'failed';

export interface DiskState {
  status: DiskStatus;
  size: number | null;
  error: string | null;
}

/** The bake of a pushed image, as the image service reports it (wired in by the server). */
export interface DiskSource {
  diskOf(repo: string, digest: string): Promise<DiskState | null>;
}

export interface BuildTokens {
  issue(request: BuildTokenRequest): Promise<SignedToken>;
  revoke(jti: string): Promise<unknown>;
}

interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface BuildServiceDeps {
  store: BuildStore;
  files: BuildFiles;
  /** Private scratch space (the data dir's tmp/, wiped at start). */
  scratchRoot: string;
  backend: BuilderBackend;
  registry: RegistryReader;
  disks: DiskSource;
  /** null when auth is off. */
  tokens: BuildTokens | null;
  config: BuildsConfig;
  log: Logger;
  /** How often the bake is looked at. */
  bakePollMs?: number;
}

/** What the API answers about a build (snake_case, like the request fields). */
export interface BuildView {
  id: string;
  status: BuildStatus;
  error: string | null;
  queue_position: number | null;
  tenant: string | null;
  admin: boolean;
  global_cache_key: string | null;
  platform: string | null;
  build_args: Record<string, string>;
  timeout_seconds: number;
  builder: string | null;
  image: {
    name: string | null;
    tag: 'latest';
    digest: string | null;
    ref: string | null;
    disk: { status: DiskStatus | null; size_bytes: number | null };
  };
  cache: {
    imported: string[];
    exported: string | null;
    use: { total_steps: number; cached_steps: number } | null;
  };
  provenance: unknown;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  durations: { queued_s: number | null; building_s: number | null; pushing_s: number | null; baking_s: number | null; total_s: number | null };
}

type StopReason = 'cancel' | 'timeout' | 'shutdown';

interface ActiveBuild {
  controller: AbortController;
  reason: StopReason | null;
  /** Strings that must never reach the log (the build token). */
  secrets: string[];
  done: Promise<void>;
}

const ACTIVE_STATUSES: readonly BuildStatus[] = ['building', 'pushing'];
/** How long the build token outlives the build's timeout (the push may end just before it). */
const TOKEN_MARGIN_MS = 10 * 60 * 1000;
/** A pushed image that the image service has not heard of by then is an error. */
const BAKE_RECORD_GRACE_MS = 30_000;
const CANCEL_WAIT_MS = 20_000;

export class BuildService {
  private readonly active = new Map<string, ActiveBuild>();
  private readonly logs = new Map<string, BuildLog>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stopController = new AbortController();
  private boundHost: string | null = null;
  private started = false;
  private stopping = false;

  constructor(private readonly deps: BuildServiceDeps) {}

  /** `host:port` builders use for this registry (KILN_REGISTRY_HOST, else the bound address). */
  registryHost(): string {
    const host = this.deps.config.registryHost ?? this.boundHost;
    if (host === null) throw new BuildError('build-failed', 'the registry address is not known yet: the server is not listening');
    return host;
  }

  /**
   * Cleans up after the last process, before the server takes requests: builds
   * it left building or pushing fail, uploads it never turned into builds go.
   */
  async recover(): Promise<void> {
    for (const id of await this.deps.files.ids()) {
      if (this.deps.store.get(id) === null) await rm(this.deps.files.dir(id), { recursive: true, force: true });
    }
    for (const build of this.deps.store.withStatus(ACTIVE_STATUSES)) {
      await this.finish(build.id, 'failed', 'interrupted by restart');
    }
  }

  /**
   * Starts running builds once the server listens at `address` (the default
   * registry host): baking builds are watched again, queued ones start in order.
   */
  start(address: { address: string; port: number } | string | null): void {
    if (this.started) return;
    if (address !== null && typeof address === 'object') this.boundHost = registryHostFromAddress(address);
    this.started = true;
    for (const build of this.deps.store.withStatus(['baking'])) this.track(this.watchBake(build.id));
    this.pump();
  }

  /** Stops the builders (their builds fail at the next start); log followers' streams close with the server. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopController.abort(new Error('server shutting down'));
    for (const run of this.active.values()) this.abort(run, 'shutdown');
    await Promise.allSettled([...this.inFlight]);
    // Followers are not told the build ended (it did not): their streams close with the server.
    this.logs.clear();
  }

  // ---- submission ------------------------------------------------------------

  /** Stores an uploaded archive under a new build id (as sent; hashed on the way). */
  async receiveSource(input: Readable): Promise<PendingSource> {
    const id = newBuildId();
    const file = this.deps.files.partialSource(id);
    await mkdir(path.dirname(file), { recursive: true });
    const hash = createHash('sha256');
    let bytes = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        bytes += chunk.length;
        callback(null, chunk);
      },
    });
    try {
      await pipeline(input, tap, createWriteStream(file, { mode: 0o600 }));
    } catch (err) {
      await this.discard({ id, sha256: '', bytes: 0 });
      throw err;
    }
    return { id, sha256: `sha256:${hash.digest('hex')}`, bytes };
  }

  async discard(pending: PendingSource): Promise<void> {
    await rm(this.deps.files.dir(pending.id), { recursive: true, force: true });
  }

  /**
   * Checks the request (the source, its Dockerfile, the caller's rights) and
   * queues the build. The pending source is discarded when it is refused.
   */
  async submit(pending: PendingSource, request: BuildSubmission): Promise<{ build: BuildRecord; queuePosition: number }> {
    try {
      const checked = await this.check(pending, request);
      await this.keepSource(pending);
      await writeFile(this.deps.files.pullRepos(pending.id), `${JSON.stringify(checked.pullRepos)}\n`, { mode: 0o600 });
      const build = this.deps.store.create({ id: pending.id, ...checked.record, sourceSha256: pending.sha256 });
      const log = await this.logOf(build.id);
      log.write(`==> build ${build.id} queued (${describeBuild(build)})`);
      const queuePosition = this.queuePosition(build.id) ?? 1;
      setImmediate(() => this.pump());
      return { build, queuePosition };
    } catch (err) {
      await this.discard(pending);
      throw err;
    }
  }

  private async check(pending: PendingSource, request: BuildSubmission) {
    const { caller } = request;
    if (pending.bytes === 0) throw invalidInput('the source archive is empty; send a tar or tar.gz of the build context');
    if (request.admin && caller.role !== 'admin') {
      throw new BuildError('denied', 'only admin callers may start admin builds (which fill the global cache); leave admin unset');
    }
    if (caller.role === 'tenant' && caller.tenant === null) throw new BuildError('denied', 'the credential names no tenant to build for');
    // A caller without a tenant (an admin key without one; everyone when auth is off) can only build as admin.
    const admin = request.admin === true || caller.tenant === null;
    const globalKey = request.globalKey?.trim() ? normalizeCacheName(request.globalKey, 'global cache key') : null;
    const buildArgs = request.buildArgs ?? {};
    const platform = request.platform?.trim() || null;
    checkBuildOptions(buildArgs, platform ?? undefined);
    const timeoutSeconds = request.timeoutSeconds ?? this.deps.config.defaultTimeoutSeconds;
    if (!Number.isInteger(timeoutSeconds) || timeoutSeconds <= 0 || timeoutSeconds > this.deps.config.maxTimeoutSeconds) {
      throw invalidInput(`timeout_seconds must be a whole number from 1 to ${this.deps.config.maxTimeoutSeconds}`);
    }
    const registry = this.registryHost();
    // The plan checks names; it is made again when the build runs.
    planBuild({ registry, insecure: this.deps.config.registryInsecure, buildId: pending.id, tenantScope: scopeOf(caller.tenant, admin), globalKey, admin });

    // Unpack once now, so a bad archive or a missing Dockerfile is refused at once.
    const pullRepos: string[] = [];
    const checkDir = await mkdtemp(path.join(this.deps.scratchRoot, `build-check-${pending.id}-`));
    try {
      const contextDir = path.join(checkDir, 'context');
      await mkdir(contextDir);
      await extractSource(createReadStream(this.deps.files.partialSource(pending.id)), contextDir);
      const dockerfilePath = await resolveDockerfile({ contextDir, workDir: checkDir, dockerfileText: request.dockerfile });
      const refs = baseImagesOf(await readFile(dockerfilePath, 'utf8'), buildArgs);
      for (const base of kilnBaseRefs(registry, refs)) {
        if (!caller.canPull(base.repo)) {
          throw new BuildError('denied', `the Dockerfile builds FROM ${base.ref}, and you may not pull ${base.repo}`);
        }
        if (!pullRepos.includes(base.repo)) pullRepos.push(base.repo);
      }
    } finally {
      await rm(checkDir, { recursive: true, force: true });
    }
    return {
      pullRepos,
      record: {
      tenant: caller.tenant,
      requestedBy: caller.subject,
      admin,
      globalKey,
      buildArgs,
      platform,
      timeoutSeconds,
      dockerfile: request.dockerfile?.trim() ? request.dockerfile : null,
      },
    };
  }

  /** Moves the upload into place as source.tar.gz, compressing a plain tar. */
  private async keepSource(pending: PendingSource): Promise<void> {
    const partial = this.deps.files.partialSource(pending.id);
    const target = this.deps.files.source(pending.id);
    const handle = await open(partial, 'r');
    const head = Buffer.alloc(2);
    try {
      await handle.read(head, 0, 2, 0);
    } finally {
      await handle.close();
    }
    if (head[0] === 0x1f && head[1] === 0x8b) {
      await rename(partial, target);
    } else {
      await pipeline(createReadStream(partial), createGzip(), createWriteStream(target, { mode: 0o600 }));
      await rm(partial, { force: true });
    }
  }

  // ---- queries -----------------------------------------------------------------

  get(id: string): BuildRecord | null {
    return this.deps.store.get(id);
  }

  list(): BuildRecord[] {
    return this.deps.store.list();
  }

  /** 1 for the build that starts next; null when the build is not queued. */
  queuePosition(id: string): number | null {
    const index = this.deps.store.withStatus(['queued']).findIndex((b) => b.id === id);
    return index === -1 ? null : index + 1;
  }

  /** Manifests running builds need (their base images), for the garbage collector. */
  gcRoots(): Array<{ repo: string; digest: string }> {
    const roots: Array<{ repo: string; digest: string }> = [];
    for (const build of this.deps.store.withStatus(['building', 'pushing', 'baking'])) {
      for (const base of build.baseImages) roots.push({ repo: base.repo, digest: base.digest });
      if (build.imageDigest !== null) roots.push({ repo: `builds/${build.id}`, digest: build.imageDigest });
    }
    return roots;
  }

  view(build: BuildRecord): BuildView {
    const seconds = (from: number | null, to: number | null) => (from === null || to === null ? null : Math.max(0, to - from) / 1000);
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    const building = build.startedAt;
    const pushing = build.pushingAt;
    const baking = build.bakingAt;
    const end = build.finishedAt;
    return {
      id: build.id,
      status: build.status,
      error: build.error,
      queue_position: build.status === 'queued' ? this.queuePosition(build.id) : null,
      tenant: build.tenant,
      admin: build.admin,
      global_cache_key: build.globalKey,
      platform: build.platform,
      build_args: build.buildArgs,
      timeout_seconds: build.timeoutSeconds,
      builder: build.builder,
      image: {
        name: build.imageName,
        tag: 'latest',
        digest: build.imageDigest,
        ref: build.imageName !== null && build.imageDigest !== null ? `${build.imageName}@${build.imageDigest}` : null,
        disk: { status: build.diskStatus, size_bytes: build.diskSize },
      },
      cache: {
        imported: build.cacheImports,
        exported: build.cacheExport,
        use: build.cacheUse === null ? null : { total_steps: build.cacheUse.totalSteps, cached_steps: build.cacheUse.cachedSteps },
      },
      provenance: build.provenance,
      created_at: new Date(build.createdAt).toISOString(),
      started_at: iso(building),
      finished_at: iso(end),
      durations: {
        queued_s: seconds(build.createdAt, building ?? end),
        building_s: seconds(building, pushing ?? baking ?? end),
        pushing_s: seconds(pushing, baking ?? (pushing !== null ? end : null)),
        baking_s: seconds(baking, end),
        total_s: seconds(build.createdAt, end),
      },
    };
  }

  /**
   * Sends the build's log to `follower`: what is there, then (when the build
   * has not ended) each new line until it ends. Returns a function that stops following.
   */
  async followLog(id: string, follower: LogFollower): Promise<() => void> {
    const build = this.deps.store.get(id);
    if (build === null) throw new BuildError('not-found', `no build ${id}`);
    const live = TERMINAL_BUILD_STATUSES.includes(build.status) ? null : await this.logOf(id);
    return followLog(this.deps.files.log(id), live, follower);
  }

  logFile(id: string): string {
    return this.deps.files.log(id);
  }

  // ---- cancel ------------------------------------------------------------------

  /** Cancels a build that has not ended; answers with the build once it has stopped. */
  async cancel(id: string): Promise<BuildRecord> {
    const build = this.deps.store.get(id);
    if (build === null) throw new BuildError('not-found', `no build ${id}`);
    if (TERMINAL_BUILD_STATUSES.includes(build.status)) {
      throw new BuildError('conflict', `build ${id} has already ended (${build.status})`);
    }
    if (build.status === 'queued') {
      const done = await this.finish(id, 'cancelled', 'cancelled before it started', ['queued']);
      if (done !== null) return done;
    }
    const run = this.active.get(id);
    if (run !== undefined) {
      this.abort(run, 'cancel');
      await Promise.race([run.done, sleep(CANCEL_WAIT_MS, undefined, { ref: false })]);
    }
    // Baking (or pushed just as the cancel came): the bake goes on, as other images may share
    // its disk; the build no longer waits for it.
    await this.finish(id, 'cancelled', 'cancelled while its disk was baking', ['baking']);
    return this.deps.store.get(id)!;
  }

  // ---- running -------------------------------------------------------------------

  private pump(): void {
    if (!this.started || this.stopping) return;
    while (this.active.size < this.deps.config.maxConcurrent) {
      const next = this.deps.store.withStatus(['queued'])[0];
      if (next === undefined) return;
      const claimed = this.deps.store.update(next.id, { status: 'building', startedAt: Date.now() }, ['queued']);
      if (claimed === null) continue;
      let settle!: () => void;
      const run: ActiveBuild = { controller: new AbortController(), reason: null, secrets: [], done: new Promise((r) => (settle = r)) };
      this.active.set(claimed.id, run);
      const task = this.run(claimed, run)
        .catch((err: unknown) => this.deps.log.error({ err, build: claimed.id }, 'build bookkeeping failed'))
        .finally(() => {
          this.active.delete(claimed.id);
          settle();
          this.pump();
        });
      this.track(task);
    }
  }

  private track(task: Promise<void>): void {
    this.inFlight.add(task);
    void task.finally(() => this.inFlight.delete(task));
  }

  private abort(run: ActiveBuild, reason: StopReason): void {
    if (run.reason !== null) return;
    run.reason = reason;
    const text = reason === 'cancel' ? 'cancelled by request' : reason === 'timeout' ? 'timed out' : 'server shutting down';
    run.controller.abort(new Error(text));
  }

  private async run(build: BuildRecord, run: ActiveBuild): Promise<void> {
    const { id } = build;
    const log = await this.logOf(id);
    const write = (line: string) => log.write(scrub(line, run.secrets));
    const signal = run.controller.signal;
    const timer = setTimeout(() => this.abort(run, 'timeout'), build.timeoutSeconds * 1000);
    let workDir: string | null = null;
    let token: SignedToken | null = null;
    let pushed = false;
    try {
      write(`==> build ${id} started with ${this.deps.backend.name}`);
      workDir = await mkdtemp(path.join(this.deps.scratchRoot, `build-${id}-`));
      await chmod(workDir, 0o700);
      const contextDir = path.join(workDir, 'context');
      await mkdir(contextDir);
      await extractSource(createReadStream(this.deps.files.source(id)), contextDir);
      signal.throwIfAborted();
      const dockerfilePath = await resolveDockerfile({ contextDir, workDir, dockerfileText: build.dockerfile });
      const dockerfileText = await readFile(dockerfilePath, 'utf8');

      const registry = this.registryHost();
      const plan = planBuild({
        registry,
        insecure: this.deps.config.registryInsecure,
        buildId: id,
        tenantScope: scopeOf(build.tenant, build.admin),
        globalKey: build.globalKey,
        admin: build.admin,
      });
      const baseRefs = baseImagesOf(dockerfileText, build.buildArgs);
      const kilnBases = kilnBaseRefs(registry, baseRefs);
      const pullRepos = await this.checkedPullRepos(id);
      const unchecked = pullRepos === null ? undefined : kilnBases.find((base) => !pullRepos.includes(base.repo));
      if (unchecked !== undefined) {
        throw new BuildError('denied', `FROM ${unchecked.ref}: ${unchecked.repo} was not checked when the build was submitted; submit it again`);
      }
      // The layout's name must stay a lowercase one (see buildahLoadArguments).
      const layoutDir = path.join(workDir, 'base-images');
      const local = this.deps.backend.loadsLocalBaseImages;
      const loaded = await resolveBaseImages(this.deps.registry, kilnBases, {
        platform: build.platform ?? hostPlatform(),
        layoutDir: local ? layoutDir : null,
        signal,
      });
      for (const base of loaded) write(`==> FROM ${base.ref}: ${base.repo}@${base.digest}${local ? ", from the registry's store" : ''}`);
      const tokenPullRepos = pullRepos ?? [];
      if (this.deps.tokens !== null && tokenPullRepos.length > 0) {
        write(`==> the build token may pull ${tokenPullRepos.join(', ')} (FROM images)`);
      }
      const lockfiles = await findLockfiles(contextDir);
      const version = await this.deps.backend.version().catch(() => 'unknown');
      const provenance = {
        ...buildProvenance({
          sourceSha256: build.sourceSha256,
          lockfiles,
          baseImageRefs: baseRefs,
          resolvedDigests: new Map(loaded.map((b) => [b.ref, b.digest])),
          builder: { name: this.deps.backend.name, version },
          plan,
        }),
        dockerfile: { sha256: `sha256:${createHash('sha256').update(dockerfileText).digest('hex')}`, fromRequest: build.dockerfile !== null },
      };
      this.deps.store.update(id, {
        builder: `${this.deps.backend.name} ${version}`,
        imageName: plan.imageName,
        cacheImports: plan.importRefs,
        cacheExport: plan.exportRef,
        baseImages: loaded.map((b) => ({ ref: b.ref, repo: b.repo, digest: b.digest })),
        provenance,
      });
      write(`==> cache: import ${plan.importRefs.join(', ') || 'none'}; export ${plan.exportRef ?? 'none'}`);
      signal.throwIfAborted();

      const dockerConfigDir = path.join(workDir, 'docker');
      token = await this.issueToken(build, tokenPullRepos);
      if (token !== null) run.secrets.push(token.token);
      await writeDockerConfig(dockerConfigDir, registry, token === null ? null : { username: 'kiln-build', password: token.token });

      const result = await this.deps.backend.build({
        contextDir,
        dockerfilePath,
        plan,
        buildArgs: build.buildArgs,
        platform: build.platform ?? undefined,
        dockerConfigDir,
        workDir,
        baseImages: local ? loaded.map((b) => ({ ref: b.ref, layoutDir, layoutName: b.layoutName })) : [],
        log: write,
        onPhase: (phase) => {
          if (phase === 'pushing') this.deps.store.update(id, { status: 'pushing', pushingAt: Date.now() }, ['building']);
        },
        signal,
      });
      const now = Date.now();
      const current = this.deps.store.get(id)!;
      this.deps.store.update(
        id,
        {
          status: 'baking',
          pushingAt: current.pushingAt ?? now,
          bakingAt: now,
          imageDigest: result.digest,
          cacheUse: result.cache,
          diskStatus: 'pending',
        },
        ACTIVE_STATUSES,
      );
      pushed = true;
      write(`==> pushed ${plan.imageName}@${result.digest}; ${result.cache.cachedSteps} of ${result.cache.totalSteps} steps from the cache`);
      write('==> waiting for the disk');
    } catch (err) {
      await this.failed(id, run, err);
    } finally {
      clearTimeout(timer);
      if (workDir !== null) await rm(workDir, { recursive: true, force: true }).catch((err) => this.deps.log.warn({ err, build: id }, 'removing a build work dir failed'));
      if (token !== null) await this.deps.tokens?.revoke(token.jti).catch((err) => this.deps.log.warn({ err, build: id }, 'revoking a build token failed'));
    }
    if (pushed) this.track(this.watchBake(id));
  }

  private async issueToken(build: BuildRecord, pullRepos: string[]): Promise<SignedToken | null> {
    if (this.deps.tokens === null) return null;
    return this.deps.tokens.issue({
      buildId: build.id,
      tenant: build.tenant,
      admin: build.admin,
      globalKey: build.globalKey,
      pullRepos,
      expiresAt: new Date(Date.now() + build.timeoutSeconds * 1000 + TOKEN_MARGIN_MS),
    });
  }

  /** The checked FROM repos of a build; null for a build submitted before they were kept. */
  private async checkedPullRepos(id: string): Promise<string[] | null> {
    let text: string;
    try {
      text = await readFile(this.deps.files.pullRepos(id), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    const parsed: unknown = JSON.parse(text);
    if (!Array.isArray(parsed) || !parsed.every((repo): repo is string => typeof repo === 'string')) {
      throw new BuildError('build-failed', `${this.deps.files.pullRepos(id)} is not a list of repositories`);
    }
    return parsed;
  }

  private async failed(id: string, run: ActiveBuild, err: unknown): Promise<void> {
    const build = this.deps.store.get(id);
    switch (run.reason) {
      case 'shutdown':
        // Left as it is: the next start marks it interrupted.
        (await this.logOf(id)).write('==> server shutting down: the build is stopped');
        return;
      case 'cancel':
        await this.finish(id, 'cancelled', 'cancelled by request', ACTIVE_STATUSES);
        return;
      case 'timeout':
        await this.finish(id, 'failed', `timed out after ${build?.timeoutSeconds ?? '?'} s`, ACTIVE_STATUSES);
        return;
      default: {
        const message = err instanceof Error ? err.message : String(err);
        if (!(err instanceof BuildError)) this.deps.log.warn({ err, build: id }, 'build failed unexpectedly');
        await this.finish(id, 'failed', scrub(message, run.secrets), ACTIVE_STATUSES);
      }
    }
  }

  private async watchBake(id: string): Promise<void> {
    const pollMs = this.deps.bakePollMs ?? 250;
    const since = Date.now();
    while (!this.stopping) {
      const build = this.deps.store.get(id);
      if (build === null || build.status !== 'baking' || build.imageDigest === null) return;
      let disk: DiskState | null;
      try {
        disk = await this.deps.disks.diskOf(`builds/${id}`, build.imageDigest);
      } catch (err) {
        this.deps.log.warn({ err, build: id }, 'asking for the disk status failed');
        disk = null;
      }
      if (disk !== null) {
        if (disk.status !== build.diskStatus || disk.size !== build.diskSize) {
          this.deps.store.update(id, { diskStatus: disk.status, diskSize: disk.size }, ['baking']);
        }
        if (disk.status === 'ready') {
          await this.finish(id, 'ready', null, ['baking'], `==> disk ready (${disk.size ?? '?'} bytes)`);
          return;
        }
        if (disk.status === 'failed') {
          await this.finish(id, 'failed', `baking the disk failed: ${disk.error ?? 'unknown error'}`, ['baking']);
          return;
        }
      } else if (Date.now() - since > BAKE_RECORD_GRACE_MS) {
        await this.finish(id, 'failed', `the image service has no bake for builds/${id}@${build.imageDigest}`, ['baking']);
        return;
      }
      try {
        await sleep(pollMs, undefined, { signal: this.stopController.signal });
      } catch {
        return;
      }
    }
  }

  /** Ends a build (when its status is one of `from`), logs why, writes result.json, releases followers. */
  private async finish(id: string, status: 'ready' | 'failed' | 'cancelled', error: string | null, from?: readonly BuildStatus[], line?: string): Promise<BuildRecord | null> {
    const patch: BuildPatch = { status, error, finishedAt: Date.now() };
    const done = this.deps.store.update(id, patch, from ?? (['queued', 'building', 'pushing', 'baking'] as const));
    if (done === null) return null;
    const log = await this.logOf(id);
    if (line !== undefined) log.write(line);
    log.write(`==> build ${status}${error ? `: ${error}` : ''}`);
    log.end();
    this.logs.delete(id);
    await writeFile(this.deps.files.result(id), `${JSON.stringify({ ...this.view(done), queue_position: null }, null, 2)}\n`).catch((err) =>
      this.deps.log.warn({ err, build: id }, 'writing result.json failed'),
    );
    this.deps.log.info({ build: id, status, error }, 'build ended');
    return done;
  }

  private async logOf(id: string): Promise<BuildLog> {
    const open = this.logs.get(id);
    if (open !== undefined) return open;
    await mkdir(this.deps.files.dir(id), { recursive: true });
    const log = await BuildLog.open(this.deps.files.log(id));
    // Another caller may have opened it meanwhile.
    const raced = this.logs.get(id);
    if (raced !== undefined) return raced;
    this.logs.set(id, log);
    return log;
  }
}

/** Build ids: lowercase, time-ordered, one repository path component (`builds/<id>`). */
export function newBuildId(now = Date.now()): string {
  return `${now.toString(36)}-${randomBytes(5).toString('hex')}`;
}

function scopeOf(tenant: string | null, admin: boolean): string | null {
  return admin || tenant === null ? null : tenantScope(tenant);
}

/** Replaces every secret in `text`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret !== '') out = out.split(secret).join('[redacted]');
  return out;
}

function describeBuild(build: BuildRecord): string {
  const who = build.admin ? 'admin build' : `tenant ${build.tenant}`;
  return `${who}${build.globalKey ? `, global cache key ${build.globalKey}` : ''}, timeout ${build.timeoutSeconds} s`;
}
