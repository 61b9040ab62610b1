// Wires the stores, services and HTTP routes into one server.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { rm } from 'node:fs/promises';
import { createAuth, type Auth, type OwnerOfBuild } from '../auth/index.js';
import { registerBuildRoutes } from '../builds/http.js';
import type { BuildService } from '../builds/service.js';
import { createBuildService } from '../builds/setup.js';
import { GarbageCollector } from '../gc/collector.js';
import { registerGcRoutes } from '../gc/http.js';
import { GcMetrics } from '../gc/metrics.js';
import { PullTracker } from '../gc/pull-tracker.js';
import { JobQueue } from '../jobs/queue.js';
import { registerImageRoutes } from '../images/http.js';
import { ImageService } from '../images/service.js';
import { parsePlatformSpec } from '../oci/classify.js';
import { registerV2Routes, v2FrameworkErrors } from '../registry/http.js';
import { RegistryService } from '../registry/service.js';
import type { DataDir } from '../store/data-dir.js';
import { openStores, type Stores } from '../store/open.js';
import type { ServerConfig } from './config.js';
import { Metrics } from './metrics.js';

const JANITOR_INTERVAL_MS = 10 * 60 * 1000;
const DRAIN_KEEP_ALIVE_MS = 1000;

export interface Kiln {
  config: ServerConfig;
  app: FastifyInstance;
  dirs: DataDir;
  /** The stores of the configured backend. */
  stores: Stores;
  registry: RegistryService;
  jobs: JobQueue;
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
  const stores = await openStores({ dataDir: config.dataDir, durable: config.durable, owner: 'kiln serve' });
  const { dirs, blobs } = stores;
  // Scratch trees of jobs that died with the last process are worthless now.
  await rm(dirs.scratchRoot, { recursive: true, force: true });
  await dirs.ensure();

  const registry = new RegistryService(blobs, stores.meta);
  const jobs = new JobQueue(stores.jobs);
  const metrics = new Metrics();
  const auth = await createAuth({
    mode: config.authMode,
    defaultKeyFile: dirs.authKeyFile,
    keyFile: config.authKeyFile,
    keys: stores.apiKeys,
    ownerOfBuild: options.ownerOfBuild ?? stores.builds.ownerOf,
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
    // Blob GETs of large layers can take a while on slow links; never cut them off.
    connectionTimeout: 0,
    keepAliveTimeout: 75_000,
  });
  const log = app.log;
  if (config.logLevel === 'debug' || config.logLevel === 'trace') {
    app.addHook('onResponse', async (req, reply) => {
      req.log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime }, 'request');
    });
  }
  metrics.install(app);
  registry.onManifestPushed((e) => metrics.manifestPushes.inc({ media_type: e.mediaType }));
  app.get('/healthz', async () => ({ status: 'ok' }));
  auth.registerRoutes(app);
  await registerV2Routes(app, { service: registry, authorizer });

  const images = new ImageService({
    registry,
    jobs,
    images: stores.images,
    dirs,
    platforms: config.platforms.map(parsePlatformSpec),
    concurrency: config.bakeConcurrency,
    log,
  });
  registerImageRoutes(app, images, authorizer);
  const diskOf = async (repo: string, digest: string) => {
    const found = await images.find(`${repo}@${digest}`).catch(() => null);
    return found === null ? null : images.view(found.record);
  };
  const builds = await createBuildService({ config: config.builds, store: stores.builds, files: stores.buildFiles, dirs, registry, diskOf, auth, log });
  registerBuildRoutes(app, builds, authorizer, { maxSourceBytes: config.builds.maxSourceBytes });

  // ---- garbage collection (src/gc) ----
  const pulls = new PullTracker(stores.gc, (err) => log.error({ err }, 'recording tag pull times failed'));
  registry.onManifestPulled((repo, tag) => pulls.record(repo, tag));
  const gcMetrics = new GcMetrics(metrics.registry);
  const gc = new GarbageCollector({ dirs, store: stores.gc, blobs, pins: registry.pins, config: config.gc, online: true, metrics: gcMetrics, log });
  gc.onBeforeRun(() => pulls.flush());
  registerGcRoutes(app, gc, authorizer);
  gc.addRootSource('builds', () => builds.gcRoots());

  const janitor = setInterval(() => {
    registry.expireUploads(Date.now() - config.gc.uploadTtlMs).catch((err) => log.error({ err }, 'upload cleanup failed'));
  }, JANITOR_INTERVAL_MS);
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
    images,
    auth,
    builds,
    gc,
    metrics,
    log,
    async listen() {
      jobs.start();
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
      app.server.keepAliveTimeout = DRAIN_KEEP_ALIVE_MS;
      clearInterval(janitor);
      await builds.stop();
      await app.close();
      await jobs.stop();
      await gc.stop();
      await pulls.stop();
      await stores.close();
    },
  };
}
