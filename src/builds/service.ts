// The build service: takes a source tree, queues it, hands it to the build
// runner with the cache plan and a build token, waits for the pushed image's
// disk, and records everything a caller may ask about.
//
// - Queue: the fairness rules of fairness.ts (tenants take turns, per-tenant
//   running and waiting limits, KILN_MAX_CONCURRENT_BUILDS in all). A build
//   holds its slot while building and pushing; waiting for the bake does not.
//   KILN_MAX_CONCURRENT_BUILDS is per server (the capacity of its own
//   builder); on a shared store the per-tenant running limit counts the
//   building and pushing builds of every server, from the store.
// - Status: queued → building → pushing → baking → ready, or failed (with the
//   reason) or cancelled. A timeout stops the builder (and its daemon) and
//   fails the build with "timed out after N s"; it covers building and
//   pushing, not the bake, which other images may share.
// - Leases (leases.ts): the server running a build holds it (the record's
//   `runner`, a worker id `host:pid:nonce`, and `leaseUntil`), from the claim
//   of the queued build, and renews the lease every third of KILN_JOB_LEASE
//   (the job queue's lease: one setting for "how long until a silent holder
//   counts as gone"). A renewal that finds the build no longer held by this
//   server (cancelled, or ended by another server that judged this one gone)
//   stops the local builder. A queued build given secrets is held the same
//   way by the server that took them (they are kept in its memory only), and
//   only that server may claim it.
// - Gone holders: at start and then every lease period while it runs, a
//   server ends the builds whose holder is gone, its lease run out or, on
//   this host, its process gone: building or pushing ones fail "interrupted:
//   the server running it stopped", queued ones with secrets fail (their
//   secrets went with that server). Builds held by live servers are left
//   alone. The end is conditional on the lease as read, so a late renewal
//   and a take-over never both win; the ended build's token is revoked (its
//   builder may live on, cut off, until its next renewal fails). A stopping
//   server releases its leases (their end becomes now), so the next look
//   ends them at once.
// - Restart on a store of its own (SQLite: the data directory's lock keeps
//   out every other server): everything left building or pushing, and every
//   queued build with secrets, was its predecessor's and fails at once. A
//   build that was baking goes on waiting for its disk; queued builds without
//   secrets stay queued.
// - Files: a source is received and checked in this server's scratch space
//   and published to the FileStore (store/build-files.ts: the data directory
//   or S3) before its record is created, so a crash leaves at most files
//   without a record; those are removed at start once nothing was written to
//   them for an hour (another server may be between the two steps).
// - Credentials: with auth on, each build gets a build token (exactly its own
//   repos and caches, plus pull on its checked FROM repos; alive until its
//   timeout plus a margin and at least 30 min), revoked when the build is done.
//   The runner writes it where only buildctl reads it and scrubs it from every
//   line. With auth off the builder pushes anonymously.
// - Base images in this registry (FROM <registry>/<repo>): the submitter must be
//   allowed to pull them (platform images under KILN_PUBLIC_REPOS: every
//   tenant), checked at submission and kept with the build; they become the
//   token's `pullRepos`, and BuildKit pulls them through the registry.
// - Retention: an ended build's files (source, log, result) go after
//   KILN_BUILD_RETENTION, when the garbage collector runs; its record stays.
// - Auth off: every caller is an anonymous admin without a tenant, so every
//   build is an admin build: it imports and exports only cache/global/<key>
//   (nothing without a key) and belongs to no tenant.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGzip } from 'node:zlib';
import type { BuildTokenRequest, SignedToken } from '../auth/index.js';
import { tenantScope } from '../auth/tenant.js';
import { renewIntervalMs } from '../jobs/settings.js';
import { holderIsDead, newWorkerId } from '../jobs/worker-id.js';
import type { BuildFiles, LogDownload } from '../store/build-files.js';
import {
  LEASED_BUILD_STATUSES,
  TERMINAL_BUILD_STATUSES,
  type BuildBaseRef,
  type BuildPatch,
  type BuildRecord,
  type BuildStatus,
  type BuildStore,
  type SeenLease,
} from '../store/build-store.js';
import { hostPlatform, kilnBaseRefs, resolveBaseImages, type RegistryReader } from './base-images.js';
import { checkBuildOptions, checkSecrets } from './build-options.js';
import { BuildLog, followLog, followStoredLog, type LogFollower } from './build-log.js';
import { registryHostFromAddress, type BuildsConfig } from './config.js';
import { baseImagesOf } from './dockerfile.js';
import { BuildError, invalidInput } from './errors.js';
import { admissionProblem, bucketOf, buildsToStart, buildTimeout, queueOrder, type FairnessLimits } from './fairness.js';
import { INTERRUPTED, leaseVerdict, SECRETS_LOST } from './leases.js';
import { normalizeCacheName, planBuild } from './plan.js';
import { buildProvenance } from './provenance.js';
import type { BuildRunner } from './runner.js';
import { DEFAULT_SOURCE_LIMITS, extractSource, resolveDockerfile } from './source.js';

/** Who submits a build, as the authorizer saw them. */
export interface BuildCaller {
  subject: string;
  role: 'admin' | 'tenant';
  /** The tenant the caller acts for; null only for admins without one (and everyone when auth is off). */
  tenant: string | null;
  /** Whether the caller may pull `repo` (for FROM images in this registry). */
  canPull(repo: string): boolean;
  /** Loads what `canPull` needs to answer for these repos (AuthDecision.preparePull). */
  preparePull?: (repos: readonly string[]) => Promise<void>;
}

export interface BuildSubmission {
  caller: BuildCaller;
  dockerfile?: string | null;
  buildArgs?: Record<string, string>;
  globalKey?: string | null;
  admin?: boolean;
  timeoutSeconds?: number | null;
  platform?: string | null;
  /** Build secrets, id → value, for `RUN --mount=type=secret,id=…`. */
  secrets?: Record<string, string>;
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
  /** The builds' sources, logs and results (FileStore: the data directory or S3). */
  files: BuildFiles;
  /** Private scratch space (the data dir's tmp/, wiped at start). */
  scratchRoot: string;
  /** null: this host cannot build; submissions are refused with `unavailable`. */
  runner: BuildRunner | null;
  /** Why there is no runner (said to callers and in the server log). */
  unavailable?: string;
  registry: RegistryReader;
  disks: DiskSource;
  /** null when auth is off. */
  tokens: BuildTokens | null;
  config: BuildsConfig;
  log: Logger;
  /** How often the bake is looked at. */
  bakePollMs?: number;
  /**
   * Other processes share the store and the data directory (PostgreSQL) and
   * may run the builds this one is asked about: their logs are followed from
   * the file and the status in the store.
   */
  shared?: boolean;
  /** How long a build's holder keeps it without a renewal (KILN_JOB_LEASE); 15 s by default. */
  leaseMs?: number;
  /** This server's runner id (a worker id); a new one by default. */
  runnerId?: string;
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
  /** Ids of the secrets it was given; never their values. */
  secrets: string[];
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
  /** Whether the source and log are still kept (KILN_BUILD_RETENTION). */
  files_kept: boolean;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  durations: { queued_s: number | null; building_s: number | null; pushing_s: number | null; baking_s: number | null; total_s: number | null };
}

export interface ListQuery {
  /** Only this tenant's builds; undefined: all (admins). */
  tenant?: string;
  status?: BuildStatus;
  after?: string;
  limit: number;
}

type StopReason = 'cancel' | 'timeout' | 'shutdown' | 'lost';

interface ActiveBuild {
  bucket: string;
  controller: AbortController;
  reason: StopReason | null;
  done: Promise<void>;
}

const ACTIVE_STATUSES: readonly BuildStatus[] = ['building', 'pushing'];
/** How long the build token outlives the build's timeout (the push may end just before it). */
const TOKEN_MARGIN_MS = 10 * 60 * 1000;
/** A pushed image that the image service has not heard of by then is an error. */
const BAKE_RECORD_GRACE_MS = 30_000;
const CANCEL_WAIT_MS = 30_000;
/** On a shared store, how often a running build's record is read for a cancel made through another server. */
const CANCEL_WATCH_MS = 1000;
const RECLAIM_BATCH = 500;
/** Files of a build id without a record are removed at start only when older than this (a submission may be between publishing its source and creating its row). */
export const ORPHAN_FILES_MIN_AGE_MS = 60 * 60 * 1000;
const DEFAULT_LEASE_MS = 15_000;

export class BuildService {
  private readonly active = new Map<string, ActiveBuild>();
  private readonly logs = new Map<string, BuildLog>();
  /** Logs being opened (seeded from the store), so one id is opened once at a time. */
  private readonly logsOpening = new Map<string, Promise<BuildLog>>();
  /** The last publish of each log (a store without local files), so they are stored in order. */
  private readonly logPublishing = new Map<string, Promise<void>>();
  /** Secrets of queued and running builds: in memory only, never stored. */
  private readonly secrets = new Map<string, Record<string, string>>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stopController = new AbortController();
  private boundHost: string | null = null;
  private started = false;
  private stopping = false;
  private pumping: Promise<void> | null = null;
  private pumpAgain = false;
  private builderVersion: Promise<string> | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  /** The id this server holds builds under (`host:pid:nonce`). */
  readonly runnerId: string;
  private readonly leaseMs: number;

  constructor(private readonly deps: BuildServiceDeps) {
    this.runnerId = deps.runnerId ?? newWorkerId();
    this.leaseMs = deps.leaseMs ?? DEFAULT_LEASE_MS;
  }

  /** `host:port` builders use for this registry (KILN_REGISTRY_HOST, else the bound address). */
  registryHost(): string {
    const host = this.deps.config.registryHost ?? this.boundHost;
    if (host === null) throw new BuildError('build-failed', 'the registry address is not known yet: the server is not listening');
    return host;
  }

  private get limits(): FairnessLimits {
    const { maxConcurrent, runningPerTenant, queuedPerTenant } = this.deps.config;
    return { slots: maxConcurrent, runningPerTenant, queuedPerTenant };
  }

  /**
   * Cleans up before the server takes requests. On a store of its own, after
   * the last process: builds it left building or pushing fail, queued builds
   * whose secrets it held fail, uploads it never turned into builds go. On a
   * shared store, only what servers that are gone left (see the top comment).
   */
  async recover(): Promise<void> {
    await this.removeOrphans();
    if (this.deps.shared) {
      await this.sweep();
      return;
    }
    for (const build of await this.deps.store.withStatus(ACTIVE_STATUSES)) {
      await this.finish(build.id, 'failed', INTERRUPTED, ACTIVE_STATUSES);
    }
    for (const build of await this.deps.store.withStatus(['queued'])) {
      if (build.secretIds.length > 0) await this.finish(build.id, 'failed', SECRETS_LOST, ['queued']);
    }
  }

  /**
   * Removes the files of build ids without a record once nothing was written
   * to them for ORPHAN_FILES_MIN_AGE_MS: a submission (here or on another
   * server) may be between publishing its source and creating its row;
   * uploads in flight are in their server's scratch space, not here.
   */
  private async removeOrphans(): Promise<void> {
    for (const { id, modifiedAt } of await this.deps.files.ids()) {
      if (Date.now() - modifiedAt.getTime() < ORPHAN_FILES_MIN_AGE_MS) continue;
      if ((await this.deps.store.get(id)) === null) await this.deps.files.remove(id);
    }
  }


  /**
   * Ends the builds whose holder is gone (leases.ts): once at start on a
   * shared store, then every lease period. One pass at a time.
   */
  private sweep(): Promise<void> {
    this.sweeping ??= this.sweepOnce().finally(() => (this.sweeping = null));
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    const judge = { now: Date.now(), self: this.runnerId, isDead: (runner: string) => holderIsDead(runner) };
    for (const build of await this.deps.store.withStatus(LEASED_BUILD_STATUSES)) {
      if (this.stopping) return;
      const verdict = leaseVerdict(build, judge);
      if (verdict === 'held') continue;
      const seen: SeenLease = { runner: build.runner, leaseUntil: build.leaseUntil };
      const ended =
        verdict === 'interrupted'
          ? await this.finish(build.id, 'failed', INTERRUPTED, ACTIVE_STATUSES, undefined, seen)
          : await this.finish(build.id, 'failed', SECRETS_LOST, ['queued'], undefined, seen);
      if (ended === null) continue;
      this.deps.log.warn({ build: build.id, runner: build.runner, leaseUntil: build.leaseUntil, status: build.status }, 'ended a build whose server is gone');
      // Its builder may still be at work somewhere (a server cut off, not dead): its token stops working now.
      if (ended.tokenJti !== null && this.deps.tokens !== null) {
        await this.deps.tokens.revoke(ended.tokenJti).catch((err: unknown) => this.deps.log.warn({ err, build: build.id }, 'revoking a build token failed'));
      }
    }
  }

  /** Renews this server's leases; builds it no longer holds are stopped here. */
  private async renewLeases(): Promise<void> {
    const ids = [...new Set([...this.active.keys(), ...this.secrets.keys()])];
    if (ids.length === 0) return;
    const held = new Set(await this.deps.store.renew(this.runnerId, ids, Date.now() + this.leaseMs));
    for (const id of ids) {
      if (held.has(id)) continue;
      const now = await this.deps.store.get(id);
      const run = this.active.get(id);
      if (run !== undefined) {
        // Past pushing (baking) a build is not leased any more, and its builder is done.
        const lost = now === null || TERMINAL_BUILD_STATUSES.includes(now.status) || (LEASED_BUILD_STATUSES.includes(now.status) && now.runner !== this.runnerId);
        if (lost) this.abort(run, 'lost');
      } else if (now === null || now.status !== 'queued' || now.runner !== this.runnerId) {
        // A queued build whose secrets this server held was cancelled or ended elsewhere.
        this.secrets.delete(id);
      }
    }
  }

  /**
   * Starts running builds once the server listens at `address` (the default
   * registry host): baking builds are watched again, queued ones start.
   */
  start(address: { address: string; port: number } | string | null): void {
    if (this.started) return;
    if (address !== null && typeof address === 'object') this.boundHost = registryHostFromAddress(address);
    this.started = true;
    if (this.deps.runner !== null || this.deps.shared) {
      this.renewTimer = setInterval(() => {
        this.renewLeases().catch((err: unknown) => this.deps.log.error({ err }, 'renewing build leases failed'));
      }, renewIntervalMs({ leaseMs: this.leaseMs }));
      this.renewTimer.unref();
    }
    if (this.deps.shared) {
      // The pump too: a build held back by the per-tenant limit may start once another server's build of that tenant ended.
      this.sweepTimer = setInterval(() => {
        this.sweep()
          .catch((err: unknown) => this.deps.log.error({ err }, 'looking for builds of servers that are gone failed'))
          .finally(() => this.pump());
      }, this.leaseMs);
      this.sweepTimer.unref();
    }
    this.track(
      this.deps.store.withStatus(['baking']).then((baking) => {
        for (const build of baking) this.track(this.watchBake(build.id));
      }),
    );
    this.pump();
  }

  /**
   * Stops the builders and releases this server's leases (its builds fail at
   * the next start, or at once on another server's next look at a shared
   * store); log followers' streams close with the server.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.renewTimer !== null) clearInterval(this.renewTimer);
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.stopController.abort(new Error('server shutting down'));
    const held = [...new Set([...this.active.keys(), ...this.secrets.keys()])];
    for (const run of this.active.values()) this.abort(run, 'shutdown');
    await Promise.allSettled([...this.inFlight, this.sweeping]);
    if (held.length > 0) {
      await this.deps.store.renew(this.runnerId, held, 0).catch((err: unknown) => this.deps.log.warn({ err }, 'releasing build leases failed'));
    }
    this.logs.clear();
  }

  // ---- submission ------------------------------------------------------------

  /**
   * Receives an uploaded archive for a new build id (as sent; hashed on the
   * way) into the private scratch space; `submit` publishes it once checked.
   */
  async receiveSource(input: Readable): Promise<PendingSource> {
    const id = newBuildId();
    const file = this.pendingFile(id);
    await mkdir(this.deps.scratchRoot, { recursive: true, mode: 0o700 });
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

  /** Drops a received source that did not become a build (never published). */
  async discard(pending: PendingSource): Promise<void> {
    await rm(this.pendingFile(pending.id), { force: true });
    await rm(`${this.pendingFile(pending.id)}.gz`, { force: true });
  }

  /** Where a source is received (and compressed) before it is published. */
  private pendingFile(id: string): string {
    return path.join(this.deps.scratchRoot, `build-source-${id}`);
  }

  /**
   * Checks the request (the source, its Dockerfile, the caller's rights and
   * limits) and queues the build. The pending source is discarded when it is refused.
   */
  async submit(pending: PendingSource, request: BuildSubmission): Promise<{ build: BuildRecord; queuePosition: number }> {
    let published = false;
    try {
      if (this.deps.runner === null) throw new BuildError('unavailable', `builds are not available on this server: ${this.deps.unavailable ?? 'no builder'}`);
      const checked = await this.check(pending, request);
      await this.keepSource(pending);
      published = true;
      // The first line is stored with the source, before any server can see the build's record and run it.
      const log = await this.logOf(pending.id);
      log.note(`==> build ${pending.id} queued (${describeBuild(checked)})`);
      await this.publishLog(pending.id);
      const secrets = request.secrets ?? {};
      const held = Object.keys(secrets).length > 0 ? { lease: { runner: this.runnerId, leaseUntil: Date.now() + this.leaseMs } } : {};
      const build = await this.deps.store.create({ id: pending.id, ...checked, sourceSha256: pending.sha256, secretIds: Object.keys(secrets), ...held });
      if (Object.keys(secrets).length > 0) this.secrets.set(build.id, { ...secrets });
      // On a shared store without local files another server may run it: this one lets go of its copy.
      if (this.deps.shared && !this.deps.files.logsInPlace) await this.releaseLog(build.id, log, { unlessRunning: true });
      const queuePosition = (await this.queuePositions()).get(build.id) ?? 1;
      setImmediate(() => this.pump());
      return { build, queuePosition };
    } catch (err) {
      await this.discard(pending);
      if (published) await this.removeUnrecorded(pending.id);
      throw err;
    }
  }

  /** Removes the published files of a submission that got no record (kept, as an orphan for recover(), when that cannot be told). */
  private async removeUnrecorded(id: string): Promise<void> {
    this.logs.delete(id);
    try {
      if ((await this.deps.store.get(id)) === null) await this.deps.files.remove(id);
    } catch (err) {
      this.deps.log.warn({ err, build: id }, 'removing the files of a refused build failed; they go at a later start');
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
    checkSecrets(request.secrets ?? {});
    const timeout = buildTimeout(request.timeoutSeconds, admin, {
      defaultSeconds: this.deps.config.defaultTimeoutSeconds,
      tenantMaxSeconds: this.deps.config.maxTimeoutSeconds,
      adminMaxSeconds: this.deps.config.adminMaxTimeoutSeconds,
    });
    if ('problem' in timeout) throw invalidInput(timeout.problem);
    if (!admin) {
      const waiting = (await this.deps.store.withStatus(['queued'])).filter((b) => bucketOf(b) === caller.tenant).length;
      const problem = admissionProblem(waiting, this.limits);
      if (problem !== null) throw new BuildError('limited', problem);
    }
    const registry = this.registryHost();
    // The plan checks names; it is made again when the build runs.
    planBuild({ registry, insecure: this.deps.config.registryInsecure, buildId: pending.id, tenantScope: scopeOf(caller.tenant, admin), globalKey, admin });

    // Unpack once now, so a bad archive or a missing Dockerfile is refused at once.
    const baseRefs: BuildBaseRef[] = [];
    const checkDir = await mkdtemp(path.join(this.deps.scratchRoot, `build-check-${pending.id}-`));
    try {
      const contextDir = path.join(checkDir, 'context');
      await mkdir(contextDir);
      await extractSource(createReadStream(this.pendingFile(pending.id)), contextDir);
      const dockerfilePath = await resolveDockerfile({ contextDir, workDir: checkDir, dockerfileText: request.dockerfile });
      const refs = baseImagesOf(await readFile(dockerfilePath, 'utf8'), buildArgs);
      const bases = kilnBaseRefs(registry, refs);
      await caller.preparePull?.(bases.map((b) => b.repo));
      for (const base of bases) {
        if (!caller.canPull(base.repo)) {
          throw new BuildError('denied', `the Dockerfile builds FROM ${base.ref}, and you may not pull ${base.repo}`);
        }
        if (!baseRefs.some((b) => b.ref === base.ref)) baseRefs.push(base);
      }
    } finally {
      await rm(checkDir, { recursive: true, force: true });
    }
    return {
      tenant: caller.tenant,
      requestedBy: caller.subject,
      admin,
      globalKey,
      buildArgs,
      platform,
      timeoutSeconds: timeout.seconds,
      dockerfile: request.dockerfile?.trim() ? request.dockerfile : null,
      baseRefs,
    };
  }

  /** Publishes the checked upload as the build's source.tar.gz, compressing a plain tar first. */
  private async keepSource(pending: PendingSource): Promise<void> {
    const partial = this.pendingFile(pending.id);
    const handle = await open(partial, 'r');
    const head = Buffer.alloc(2);
    try {
      await handle.read(head, 0, 2, 0);
    } finally {
      await handle.close();
    }
    if (head[0] === 0x1f && head[1] === 0x8b) {
      await this.deps.files.publishSource(pending.id, partial);
    } else {
      const compressed = `${partial}.gz`;
      await pipeline(createReadStream(partial), createGzip(), createWriteStream(compressed, { mode: 0o600 }));
      await rm(partial, { force: true });
      await this.deps.files.publishSource(pending.id, compressed);
    }
  }

  // ---- queries -----------------------------------------------------------------

  get(id: string): Promise<BuildRecord | null> {
    return this.deps.store.get(id);
  }

  /** A page of builds, newest first, filtered in the database. */
  list(query: ListQuery): Promise<BuildRecord[]> {
    return this.deps.store.list(query);
  }

  /** Queued builds → their position (1 starts next), by the fairness rules. */
  private async queuePositions(): Promise<Map<string, number>> {
    const queued = (await this.deps.store.withStatus(['queued'])).map((b) => ({ id: b.id, bucket: bucketOf(b), seq: b.seq }));
    return new Map(queueOrder(queued, await this.runningBuckets()).map((id, i) => [id, i + 1]));
  }

  /**
   * The buckets of the builds running: this server's, or on a shared store
   * every server's (from the store, without those whose holder is gone).
   */
  private async runningBuckets(): Promise<string[]> {
    if (!this.deps.shared) return [...this.active.values()].map((run) => run.bucket);
    const judge = { now: Date.now(), self: this.runnerId, isDead: (runner: string) => holderIsDead(runner) };
    return (await this.deps.store.withStatus(ACTIVE_STATUSES)).filter((b) => leaseVerdict(b, judge) === 'held').map(bucketOf);
  }

  /** Manifests running builds need (their base images), for the garbage collector. */
  async gcRoots(): Promise<Array<{ repo: string; digest: string }>> {
    const roots: Array<{ repo: string; digest: string }> = [];
    for (const build of await this.deps.store.withStatus(['building', 'pushing', 'baking'])) {
      for (const base of build.baseImages) roots.push({ repo: base.repo, digest: base.digest });
      if (build.imageDigest !== null) roots.push({ repo: `builds/${build.id}`, digest: build.imageDigest });
    }
    return roots;
  }

  /** The API's views of `builds`, with queue positions. */
  async views(builds: readonly BuildRecord[]): Promise<BuildView[]> {
    const positions = builds.some((b) => b.status === 'queued') ? await this.queuePositions() : new Map<string, number>();
    return builds.map((b) => this.viewWith(b, positions.get(b.id) ?? null));
  }

  async view(build: BuildRecord): Promise<BuildView> {
    return (await this.views([build]))[0]!;
  }

  private viewWith(build: BuildRecord, position: number | null): BuildView {
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
      queue_position: build.status === 'queued' ? position : null,
      tenant: build.tenant,
      admin: build.admin,
      global_cache_key: build.globalKey,
      platform: build.platform,
      build_args: build.buildArgs,
      secrets: build.secretIds,
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
      files_kept: build.filesRemovedAt === null,
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
   * Sends the build's log to `follower`: what is there (after line `after`,
   * for a client resuming), then, while the build has not ended, each new line
   * until it does. Returns a function that stops following.
   */
  async followLog(build: BuildRecord, follower: LogFollower, after?: number): Promise<() => void> {
    const files = this.deps.files;
    const ended = TERMINAL_BUILD_STATUSES.includes(build.status);
    // On a shared store a build not running here may be run by any process (or be queued for one).
    if (!ended && this.deps.shared && !this.active.has(build.id)) {
      return followStoredLog((start, maxBytes) => files.readLog(build.id, start, maxBytes), follower, {
        after,
        pollMs: this.deps.config.logPollMs,
        ended: async () => {
          const now = await this.deps.store.get(build.id);
          return now === null || TERMINAL_BUILD_STATUSES.includes(now.status);
        },
        onError: (err) => this.deps.log.error({ err, build: build.id }, 'following a stored build log failed'),
      });
    }
    const live = ended ? null : await this.logOf(build.id);
    return followLog(() => files.openLog(build.id), live, follower, { after });
  }

  /** The stored log for a download: a redirect (S3 with KILN_S3_REDIRECT) or the bytes; null when there is none yet. */
  logDownload(id: string): Promise<LogDownload | null> {
    return this.deps.files.logDownload(id);
  }

  // ---- cancel ------------------------------------------------------------------

  /** Cancels a build that has not ended; answers with the build once it has stopped. */
  async cancel(id: string): Promise<BuildRecord> {
    const build = await this.deps.store.get(id);
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
    } else if (this.deps.shared) {
      // Another server runs it: its record says cancelled, and that server, which watches the record, stops the builder.
      await this.finish(id, 'cancelled', 'cancelled by request', ACTIVE_STATUSES);
    }
    // Baking (or pushed just as the cancel came): the bake goes on, as other images may share
    // its disk; the build no longer waits for it.
    await this.finish(id, 'cancelled', 'cancelled while its disk was baking', ['baking']);
    return (await this.deps.store.get(id))!;
  }

  // ---- retention -----------------------------------------------------------------

  /**
   * Removes the files of builds that ended more than KILN_BUILD_RETENTION ago
   * (the garbage collector calls this); a dry run only counts them.
   */
  async reclaim(options: { dryRun: boolean; now?: number }): Promise<{ builds: string[]; bytes: number }> {
    const retention = this.deps.config.retentionMs;
    const out = { builds: [] as string[], bytes: 0 };
    if (retention === null) return out;
    const cutoff = (options.now ?? Date.now()) - retention;
    for (;;) {
      const batch = await this.deps.store.endedBefore(cutoff, options.dryRun ? 100_000 : RECLAIM_BATCH);
      for (const build of batch) {
        out.builds.push(build.id);
        if (options.dryRun) continue;
        out.bytes += await this.deps.files.remove(build.id);
        await this.deps.store.update(build.id, { filesRemovedAt: Date.now() });
      }
      if (options.dryRun || batch.length < RECLAIM_BATCH) return out;
    }
  }

  // ---- running -------------------------------------------------------------------

  /** Starts what the fairness rules allow; one pass at a time, again when asked meanwhile. */
  private pump(): void {
    if (!this.started || this.stopping || this.deps.runner === null) return;
    if (this.pumping !== null) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.pumpOnce()
      .catch((err: unknown) => this.deps.log.error({ err }, 'starting queued builds failed'))
      .finally(() => {
        this.pumping = null;
        if (this.pumpAgain) {
          this.pumpAgain = false;
          this.pump();
        }
      });
    this.track(this.pumping);
  }

  private async pumpOnce(): Promise<void> {
    // Secrets live in the memory of the process that took the submission: on a shared store only it may run such a build.
    const queued = (await this.deps.store.withStatus(['queued'])).filter((b) => !this.deps.shared || b.secretIds.length === 0 || this.secrets.has(b.id));
    const running = await this.runningBuckets();
    const entries = queued.map((b) => ({ id: b.id, bucket: bucketOf(b), seq: b.seq }));
    for (const id of buildsToStart(entries, running, this.limits, this.active.size)) {
      if (this.stopping) return;
      const now = Date.now();
      const claimed = await this.deps.store.claim(id, { runner: this.runnerId, leaseUntil: now + this.leaseMs }, { status: 'building', startedAt: now });
      if (claimed === null) continue;
      let settle!: () => void;
      const run: ActiveBuild = { bucket: bucketOf(claimed), controller: new AbortController(), reason: null, done: new Promise((r) => (settle = r)) };
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
    const text = { cancel: 'cancelled by request', timeout: 'timed out', shutdown: 'server shutting down', lost: 'the build is no longer held by this server' }[reason];
    run.controller.abort(new Error(text));
  }

  private async run(build: BuildRecord, run: ActiveBuild): Promise<void> {
    const { id } = build;
    const runner = this.deps.runner!;
    const log = await this.logOf(id);
    const signal = run.controller.signal;
    const timer = setTimeout(() => this.abort(run, 'timeout'), build.timeoutSeconds * 1000);
    // A cancel through another server shows only in the record.
    const watch = this.deps.shared
      ? setInterval(() => {
          void this.deps.store.get(id).then(
            (now) => {
              if (now === null || !TERMINAL_BUILD_STATUSES.includes(now.status)) return;
              // On a store without local files this server is the log's only writer: it ends the log at once (followers elsewhere wait for that line).
              if (!this.deps.files.logsInPlace && !log.isEnded) {
                log.note(`==> build ${now.status}${now.error ? `: ${now.error}` : ''}`);
                log.end();
                void this.publishLog(id);
              }
              this.abort(run, 'cancel');
            },
            (err: unknown) => this.deps.log.warn({ err, build: id }, 'reading a running build for a cancel failed'),
          );
        }, CANCEL_WATCH_MS)
      : null;
    // On a store without local files, followers elsewhere see the log as it is published.
    let published = log.count;
    const publisher = this.deps.files.logsInPlace
      ? null
      : setInterval(() => {
          if (log.count === published) return;
          published = log.count;
          void this.publishLog(id);
        }, this.deps.config.logPublishMs);
    let workDir: string | null = null;
    let token: SignedToken | null = null;
    let pushed = false;
    try {
      const secrets = this.secrets.get(id) ?? {};
      if (build.secretIds.some((secretId) => secrets[secretId] === undefined)) {
        throw new BuildError('build-failed', 'the build\'s secrets are gone (the server restarted since it was submitted); submit it again');
      }
      log.note(`==> build ${id} started with ${runner.name}`);
      workDir = await mkdtemp(path.join(this.deps.scratchRoot, `build-${id}-`));
      await chmod(workDir, 0o700);
      const sourceFile = await this.deps.files.localSource(id, workDir);
      if (sourceFile === null) throw new BuildError('build-failed', `the source of build ${id} is gone from the store; submit it again`);
      const registry = this.registryHost();
      const plan = planBuild({
        registry,
        insecure: this.deps.config.registryInsecure,
        buildId: id,
        tenantScope: scopeOf(build.tenant, build.admin),
        globalKey: build.globalKey,
        admin: build.admin,
      });
      const bases = await resolveBaseImages(this.deps.registry, build.baseRefs, { platform: build.platform ?? hostPlatform(), signal });
      for (const base of bases) log.note(`==> FROM ${base.ref}: ${base.repo}@${base.digest}`);
      const pullRepos = [...new Set(build.baseRefs.map((b) => b.repo))];
      if (this.deps.tokens !== null && pullRepos.length > 0) log.note(`==> the build token may pull ${pullRepos.join(', ')} (FROM images)`);
      const version = await this.version();
      await this.deps.store.update(id, {
        builder: `${runner.name} ${version}`,
        imageName: plan.imageName,
        cacheImports: plan.importRefs,
        cacheExport: plan.exportRef,
        baseImages: bases.map((b) => ({ ref: b.ref, repo: b.repo, digest: b.digest })),
      });
      log.note(`==> cache: import ${plan.importRefs.join(', ') || 'none'}; export ${plan.exportRef ?? 'none'}`);
      if (build.secretIds.length > 0) log.note(`==> secrets for RUN --mount=type=secret: ${build.secretIds.join(', ')}`);
      signal.throwIfAborted();

      token = await this.issueToken(build, pullRepos);
      if (token !== null) await this.deps.store.update(id, { tokenJti: token.jti }, ACTIVE_STATUSES);
      const outcome = await runner.run(
        {
          id,
          sourceFile,
          dockerfile: build.dockerfile,
          plan,
          buildArgs: build.buildArgs,
          platform: build.platform,
          credentials: token === null ? null : { username: 'kiln-build', password: token.token },
          secrets,
          allowedBaseRepos: pullRepos,
          workDir,
          sourceLimits: DEFAULT_SOURCE_LIMITS,
        },
        {
          signal,
          log: (line) => log.write(line),
          note: (line) => log.note(line),
          progress: (phase) => {
            if (phase === 'pushing') void this.deps.store.update(id, { status: 'pushing', pushingAt: Date.now() }, ['building']);
          },
        },
      );
      const provenance = {
        ...buildProvenance({
          sourceSha256: build.sourceSha256,
          lockfiles: outcome.lockfiles,
          baseImageRefs: outcome.baseImageRefs,
          resolvedDigests: new Map(bases.map((b) => [b.ref, b.digest])),
          builder: outcome.builder,
          plan,
        }),
        dockerfile: { sha256: outcome.dockerfileSha256, fromRequest: build.dockerfile !== null },
      };
      const now = Date.now();
      const current = (await this.deps.store.get(id))!;
      const moved = await this.deps.store.update(
        id,
        {
          status: 'baking',
          pushingAt: current.pushingAt ?? now,
          bakingAt: now,
          imageDigest: outcome.digest,
          cacheUse: outcome.cache,
          diskStatus: 'pending',
          provenance,
        },
        ACTIVE_STATUSES,
      );
      pushed = moved !== null;
      log.note(`==> pushed ${plan.imageName}@${outcome.digest}; ${outcome.cache.cachedSteps} of ${outcome.cache.totalSteps} steps from the cache`);
      log.note('==> waiting for the disk');
    } catch (err) {
      await this.failed(id, run, err);
    } finally {
      clearTimeout(timer);
      if (watch !== null) clearInterval(watch);
      if (publisher !== null) clearInterval(publisher);
      await this.publishLog(id);
      this.secrets.delete(id);
      if (workDir !== null) await rm(workDir, { recursive: true, force: true }).catch((err) => this.deps.log.warn({ err, build: id }, 'removing a build work dir failed'));
      if (token !== null) await this.deps.tokens?.revoke(token.jti).catch((err) => this.deps.log.warn({ err, build: id }, 'revoking a build token failed'));
    }
    if (pushed) this.track(this.watchBake(id));
  }

  private version(): Promise<string> {
    this.builderVersion ??= this.deps.runner!.version().catch(() => 'unknown');
    return this.builderVersion;
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

  private async failed(id: string, run: ActiveBuild, err: unknown): Promise<void> {
    const build = await this.deps.store.get(id);
    switch (run.reason) {
      case 'shutdown':
        // Left as it is (its lease is released in stop()): the next look marks it interrupted.
        (await this.logOf(id)).note('==> server shutting down: the build is stopped');
        return;
      case 'lost':
        // Ended elsewhere (cancelled, or failed by a server that judged this one gone): the record says how.
        this.deps.log.warn({ build: id, status: build?.status }, 'a running build is no longer held by this server; its builder is stopped');
        this.logs.get(id)?.end();
        this.logs.delete(id);
        return;
      case 'cancel':
        if ((await this.finish(id, 'cancelled', 'cancelled by request', ACTIVE_STATUSES)) === null && !this.deps.files.logsInPlace) {
          // Cancelled through another server, which left the log to this one, its only writer (finish()).
          const log = await this.logOf(id);
          if (!log.isEnded) log.note(`==> build ${build?.status ?? 'cancelled'}${build?.error ? `: ${build.error}` : ''}`);
          log.end();
          await this.releaseLog(id, log);
        }
        return;
      case 'timeout':
        await this.finish(id, 'failed', `timed out after ${build?.timeoutSeconds ?? '?'} s`, ACTIVE_STATUSES);
        return;
      default: {
        const message = err instanceof Error ? err.message : String(err);
        if (!(err instanceof BuildError)) this.deps.log.warn({ err, build: id }, 'build failed unexpectedly');
        await this.finish(id, 'failed', message, ACTIVE_STATUSES);
      }
    }
  }

  private async watchBake(id: string): Promise<void> {
    const pollMs = this.deps.bakePollMs ?? 250;
    const since = Date.now();
    while (!this.stopping) {
      const build = await this.deps.store.get(id);
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
          await this.deps.store.update(id, { diskStatus: disk.status, diskSize: disk.size }, ['baking']);
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

  /**
   * Ends a build (when its status is one of `from`, and with `seen`, while its
   * lease is still the one seen), logs why, writes result.json, releases followers.
   */
  private async finish(
    id: string,
    status: 'ready' | 'failed' | 'cancelled',
    error: string | null,
    from?: readonly BuildStatus[],
    line?: string,
    seen?: SeenLease,
  ): Promise<BuildRecord | null> {
    const patch: BuildPatch = { status, error, finishedAt: Date.now() };
    const states = from ?? (['queued', 'building', 'pushing', 'baking'] as const);
    const done = seen === undefined ? await this.deps.store.update(id, patch, states) : await this.deps.store.takeOver(id, seen, patch, states);
    if (done === null) return null;
    this.secrets.delete(id);
    // On a store without local files a build another server runs has one log writer, that server: it notes the cancel
    // it sees in the record (failed()), so its next publish does not drop a line written here.
    const otherWriter = !this.deps.files.logsInPlace && this.deps.shared && !this.active.has(id) && from === ACTIVE_STATUSES;
    if (!otherWriter) {
      const log = await this.logOf(id);
      if (line !== undefined) log.note(line);
      log.note(`==> build ${status}${error ? `: ${error}` : ''}`);
      log.end();
      await this.releaseLog(id, log);
    }
    const view = this.viewWith(done, null);
    await this.deps.files.writeResult(id, Buffer.from(`${JSON.stringify(view, null, 2)}\n`)).catch((err) =>
      this.deps.log.warn({ err, build: id }, 'writing result.json failed'),
    );
    this.deps.log.info({ build: id, status, error }, 'build ended');
    setImmediate(() => this.pump());
    return done;
  }

  private async logOf(id: string): Promise<BuildLog> {
    const open = this.logs.get(id);
    if (open !== undefined) return open;
    let opening = this.logsOpening.get(id);
    if (opening === undefined) {
      opening = this.deps.files
        .openLocalLog(id)
        .then((file) => BuildLog.open(file, { maxBytes: this.deps.config.logMaxBytes }))
        .then((log) => {
          this.logs.set(id, log);
          return log;
        })
        .finally(() => this.logsOpening.delete(id));
      this.logsOpening.set(id, opening);
    }
    return opening;
  }

  /**
   * Stores the log as it is now (a store without local files; nothing to do
   * otherwise), after the publishes before it. A failure is logged: the next
   * publish stores the whole log again.
   */
  private publishLog(id: string): Promise<void> {
    if (this.deps.files.logsInPlace) return Promise.resolve();
    const previous = this.logPublishing.get(id) ?? Promise.resolve();
    // Only a log still held here is stored: a released one went with its last publish.
    const next = previous.then(() =>
      this.logs.has(id) ? this.deps.files.publishLog(id).catch((err: unknown) => this.deps.log.warn({ err, build: id }, 'storing a build log failed')) : undefined,
    );
    this.logPublishing.set(id, next);
    void next.finally(() => {
      if (this.logPublishing.get(id) === next) this.logPublishing.delete(id);
    });
    return next;
  }

  /**
   * Publishes the log a last time and lets go of it (and of its local copy,
   * on a store without local files). `unlessRunning`: kept when this server
   * has started the build meanwhile.
   */
  private async releaseLog(id: string, log: BuildLog, options: { unlessRunning?: boolean } = {}): Promise<void> {
    await this.publishLog(id);
    if (this.logs.get(id) !== log || (options.unlessRunning && this.active.has(id))) return;
    this.logs.delete(id);
    await this.deps.files.dropLocalLog(id).catch((err: unknown) => this.deps.log.warn({ err, build: id }, 'removing a local build log failed'));
  }
}

/** Build ids: lowercase, time-ordered, one repository path component (`builds/<id>`). */
export function newBuildId(now = Date.now()): string {
  return `${now.toString(36)}-${randomBytes(5).toString('hex')}`;
}

/** When anything in `dir` (or the directory itself) was last written (ms); null when it is gone. */
function scopeOf(tenant: string | null, admin: boolean): string | null {
  return admin || tenant === null ? null : tenantScope(tenant);
}

function describeBuild(build: Pick<BuildRecord, 'admin' | 'tenant' | 'globalKey' | 'timeoutSeconds'>): string {
  const who = build.admin ? 'admin build' : `tenant ${build.tenant}`;
  return `${who}${build.globalKey ? `, global cache key ${build.globalKey}` : ''}, timeout ${build.timeoutSeconds} s`;
}
