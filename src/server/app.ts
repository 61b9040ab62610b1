// Wires the stores, services and HTTP routes into one server.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { rm } from 'node:fs/promises';
import { createAuth, type Auth, type OwnerOfBuild } from '../auth/index.js';
import { registerKeyRoutes } from '../auth/key-routes.js';
import { registerBuildRoutes } from '../builds/http.js';
import type { BuildService } from '../builds/service.js';
import { createBuildService } from '../builds/setup.js';
import { GarbageCollector } from '../gc/collector.js';
import { registerGcRoutes } from '../gc/http.js';
import { GcMetrics } from '../gc/metrics.js';
import { PullTracker } from '../gc/pull-tracker.js';
import { JobQueue } from '../jobs/queue.js';
import { WorkerPool } from '../jobs/worker-pool.js';
import { registerImageRoutes } from '../images/http.js';
import { ImageService } from '../images/service.js';
import { parsePlatformSpec } from '../oci/classify.js';
import { registerV2Routes, v2FrameworkErrors } from '../registry/http.js';
import { RegistryService } from '../registry/service.js';
import { TransferActivity } from '../registry/transfer-activity.js';
import type { DataDir } from '../store/data-dir.js';
import { openStores, type Stores } from '../store/open.js';
import type { ServerConfig } from './config.js';
import { ConnectionGuard } from './connection-guard.js';
import { limitEnv, type LimitKey } from './limits.js';
import { Metrics } from './metrics.js';
import { installRequestDeadlines } from './request-deadlines.js';
import type { UploadLimits } from '../registry/upload-quota.js';

/** How often abandoned uploads are swept; often enough for the short TTL of sessions never used. */
const JANITOR_MAX_INTERVAL_MS = 60 * 1000;
const DRAIN_KEEP_ALIVE_MS = 1000;

export interface Kiln {
  config: ServerConfig;
  app: FastifyInstance;
  dirs: DataDir;
  /** The stores of the configured backend. */
  stores: Stores;
  registry: RegistryService;
  jobs: JobQueue;
  /** The local worker processes (KILN_WORKERS); empty with --workers 0. */
  workers: WorkerPool;
  images: ImageService;
  auth: Auth;
  builds: BuildService;
  /** The garbage collector; `gc.addRootSource` lets other modules keep manifests alive (running builds). */
  gc: GarbageCollector;
  metrics: Metrics;
  log: FastifyBaseLogger;
  /** Starts listening; resolves with the base URL. */
  listen(): Promise<string>;
  /** Stops taking requests, lets in-flight ones finish, stops workers, closes the database. */
  close(): Promise<void>;
}

/** Collaborators that come from outside the config; tests set them. */
export interface KilnOptions {
  /** Which tenant owns a build, for the auth policy; by default the builds store answers (tests may stand in for it). */
  ownerOfBuild?: OwnerOfBuild;
}

export async function createKiln(config: ServerConfig, options: KilnOptions = {}): Promise<Kiln> {
  // No offline `kiln gc`/`kiln fsck` (or other server) may work on a SQLite data directory meanwhile.
  // Background errors of the database pool (an idle connection dropped); logged once the logger exists.
  let logDatabaseError: (err: unknown) => void = () => undefined;
  const stores = await openStores({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    poolSize: config.databasePool,
    durable: config.durable,
    s3: config.s3,
    owner: 'kiln serve',
    onError: (err) => logDatabaseError(err),
  });
  const { dirs, blobs } = stores;
  if (!stores.shared) {
    // Scratch trees of jobs that died with the last process are worthless now
    // (with a shared data directory they may belong to another process).
    await rm(dirs.scratchRoot, { recursive: true, force: true });
    await dirs.ensure();
  }

  const metrics = new Metrics();
  const { limits } = config;
  const limitHit = (setting: string) => metrics.limitHits.inc({ setting });
  const registry = new RegistryService(blobs, stores.meta, stores.pins, { uploadLimits: uploadLimitsOf(config), onLimitHit: limitHit });
  const jobs = new JobQueue(stores.jobs);
  const auth = await createAuth({
    mode: config.authMode,
    defaultKeyFile: dirs.authKeyFile,
    keyFile: config.authKeyFile,
    keys: stores.apiKeys,
    ownerOfBuild: options.ownerOfBuild ?? stores.ownerOfBuildNow,
    loadBuildOwners: options.ownerOfBuild ? undefined : stores.loadBuildOwners,
    publicRepos: config.publicRepos,
  });
  const { authorizer } = auth;

  const app = Fastify({
    logger: { level: config.logLevel, base: { service: 'kiln' } },
    // Per-request lines cost more than the small requests they describe; they are logged at debug below.
    logController: new LogController({ disableRequestLogging: true }),
    // Paths the router cannot decode still get the registry's error JSON.
    frameworkErrors: v2FrameworkErrors,
    return503OnClosing: true,
    exposeHeadRoutes: false,
    // No socket inactivity timeout: blob transfers are held to a minimum rate
    // instead (request-deadlines.ts), and followed build logs may be silent for long.
    connectionTimeout: 0,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Node's own request timeout would also cut off long blob uploads; plain requests get ours.
    requestTimeout: 0,
    http: {
      headersTimeout: limits.headerTimeoutMs,
      // Node checks header deadlines on this period (30 s by default).
      connectionsCheckingInterval: Math.max(100, Math.min(1000, limits.headerTimeoutMs / 4)),
    },
  });
  const log = app.log;
  const guard = new ConnectionGuard({
    maxConnections: limits.maxConnections,
    maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
    silentTimeoutMs: limits.headerTimeoutMs,
    settingNames: { maxConnections: limitEnv('maxConnections'), maxConnectionsPerAddress: limitEnv('maxConnectionsPerAddress') },
    onRefused: (key) => limitHit(limitEnv(key)),
    onSilentClosed: () => limitHit(limitEnv('headerTimeoutMs')),
  });
  guard.install(app.server);
  // Headers that never complete: Node answers 408 and closes (counted here).
  app.server.on('clientError', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') limitHit(limitEnv('headerTimeoutMs'));
  });
  installRequestDeadlines(app, {
    requestTimeoutMs: limits.requestTimeoutMs,
    minBytesPerSecond: limits.minBytesPerSecond,
    rateWindowMs: limits.rateWindowMs,
    settingNames: { requestTimeout: limitEnv('requestTimeoutMs'), minBytesPerSecond: limitEnv('minBytesPerSecond') },
    onCutOff: (key: LimitKey) => limitHit(limitEnv(key)),
  });
  logDatabaseError = (err) => log.error({ err }, 'database connection error');
  if (config.logLevel === 'debug' || config.logLevel === 'trace') {
    app.addHook('onResponse', async (req, reply) => {
      req.log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime }, 'request');
    });
  }
  metrics.install(app);
  metrics.installLimits(limits, {
    openConnections: () => guard.openConnections,
    uploadSessions: () => stores.meta.countUploads(),
    uploadsInFlight: () => registry.uploadSlots.inFlight,
  });
  registry.onManifestPushed((e) => metrics.manifestPushes.inc({ media_type: e.mediaType }));
  app.get('/healthz', async () => ({ status: 'ok' }));
  auth.registerRoutes(app);
  registerKeyRoutes(app, auth.tokens, authorizer);
  const workers = new WorkerPool({ count: config.jobs.workers, env: workerEnv(config), args: workerArgs(config, dirs), log });
  // Bakes of the local workers give way while blobs move (src/jobs/bake-yield.ts).
  const transfers = config.jobs.workers > 0 ? new TransferActivity((busy) => workers.setRegistryBusy(busy)) : undefined;
  await registerV2Routes(app, { service: registry, authorizer, transfers });

  const images = new ImageService({
    registry,
    jobs,
    images: stores.images,
    files: stores.files,
    platforms: config.platforms.map(parsePlatformSpec),
    log,
  });
  jobs.onEnqueue(() => workers.wake());
  registerImageRoutes(app, images, authorizer);
  const diskOf = async (repo: string, digest: string) => {
    const found = await images.find(`${repo}@${digest}`).catch(() => null);
    return found === null ? null : images.view(found.record);
  };
  const builds = await createBuildService({
    config: config.builds,
    store: stores.builds,
    files: stores.buildFiles,
    dirs,
    registry,
    diskOf,
    auth,
    log,
    shared: stores.shared,
    // A build's holder renews like a job's worker; a source upload idle as long as an upload session is abandoned.
    leaseMs: config.jobs.leaseMs,
  });
  registerBuildRoutes(app, builds, authorizer, { maxSourceBytes: config.builds.maxSourceBytes, heartbeatMs: config.builds.sseHeartbeatMs });

  // ---- garbage collection (src/gc) ----
  const pulls = new PullTracker(stores.gc, (err) => log.error({ err }, 'recording tag pull times failed'));
  registry.onManifestPulled((repo, tag) => pulls.record(repo, tag));
  const gcMetrics = new GcMetrics(metrics.registry);
  const gc = new GarbageCollector({ dirs, store: stores.gc, blobs, files: stores.files, pins: registry.pins, config: config.gc, online: true, metrics: gcMetrics, log });
  gc.onBeforeRun(() => pulls.flush());
  registerGcRoutes(app, gc, authorizer);
  gc.addRootSource('builds', () => builds.gcRoots());
  gc.addReclaimer('builds', async (dryRun) => {
    const taken = await builds.reclaim({ dryRun });
    return { items: taken.builds.map((id) => `builds/${id}`), bytes: taken.bytes };
  });

  const janitor = setInterval(
    () => {
      const now = Date.now();
      registry
        .expireUploads({ idleBefore: now - config.gc.uploadTtlMs, emptyBefore: now - limits.emptyUploadTtlMs })
        .catch((err) => log.error({ err }, 'upload cleanup failed'));
    },
    Math.min(JANITOR_MAX_INTERVAL_MS, limits.emptyUploadTtlMs / 2),
  );
  janitor.unref();

  let closed = false;
  // While draining, every answer closes its connection: an idle keep-alive
  // socket would otherwise hold the shutdown open for keepAliveTimeout (75 s).
  app.addHook('onSend', async (_req, reply) => {
    if (closed) reply.header('connection', 'close');
  });
  return {
    config,
    app,
    dirs,
    stores,
    registry,
    jobs,
    workers,
    images,
    auth,
    builds,
    gc,
    metrics,
    log,
    async listen() {
      workers.start();
      pulls.start();
      gc.start();
      await app.listen({ host: config.host, port: config.port });
      const address = app.server.address();
      builds.start(address);
      const port = typeof address === 'object' && address ? address.port : config.port;
      const host = config.host.includes(':') ? `[${config.host}]` : config.host;
      return `http://${host}:${port}`;
    },
    async close() {
      if (closed) return;
      closed = true;
      // Answers whose head went out before the drain began (a long blob
      // download) could not say `connection: close`; their connections go
      // idle when they are done and would hold the shutdown for the keep-alive
      // timeout. A short one still lets the client read what it has buffered.
      app.server.keepAliveTimeout = Math.min(DRAIN_KEEP_ALIVE_MS, limits.keepAliveTimeoutMs);
      clearInterval(janitor);
      await builds.stop();
      await app.close();
      await workers.stop();
      await gc.stop();
      await pulls.stop();
      await stores.close();
    },
  };
}

/** The server's own environment without its KILN_* settings, then the settings it was configured with. */
function workerEnv(config: ServerConfig): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KILN_')));
  // The database URL travels in the environment, not in argv where `ps` shows it.
  return { ...inherited, ...config.settingsEnv, ...(config.databaseUrl ? { KILN_DATABASE_URL: config.databaseUrl } : {}) };
}

function workerArgs(config: ServerConfig, dirs: DataDir): string[] {
  return ['--data-dir', dirs.root, '--log-level', config.logLevel];
}

function uploadLimitsOf(config: ServerConfig): UploadLimits {
  const limit = (key: LimitKey) => ({ value: config.limits[key], setting: limitEnv(key) });
  return {
    sessionsPerOwner: limit('maxUploadSessionsPerTenant'),
    sessions: limit('maxUploadSessions'),
    concurrentPerOwner: limit('maxConcurrentUploadsPerTenant'),
    concurrent: limit('maxConcurrentUploads'),
  };
}
