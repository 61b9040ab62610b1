// One worker process: open the stores beside the server (the database
// coordinates them), check that bakes can be sandboxed here, and run jobs
// until SIGTERM or until the server that started it goes away.
import { pino } from 'pino';
import { bakeLimitsFromEnv } from '../convert/limits.js';
import { BAKE_JOB, bakeJobHandler } from '../images/bake-job.js';
import { openStores } from '../store/open.js';
import { loadS3Config } from '../store/s3/config.js';
import { RegistryState } from './bake-yield.js';
import { sweepDeadWorkers } from './scratch-sweep.js';
import { lowerAllThreads } from './priority.js';
import { loadJobSettings } from './settings.js';
import { checkSandbox, loadSandboxSettings, sandboxedBake, WarmBakes } from './sandbox/index.js';
import { JobWorker, type JobHandler } from './worker.js';
import { parsePoolMessage } from './worker-pool.js';
import { newWorkerId } from './worker-id.js';

export interface WorkerProcessOptions {
  dataDir: string;
  databaseUrl?: string;
  logLevel: string;
  env: NodeJS.ProcessEnv;
}

/** Worker processes yield the CPU to the API; the bake processes they start run lower still (sandbox/launcher.ts). */
const WORKER_NICE = 10;

export async function runWorkerProcess(options: WorkerProcessOptions): Promise<void> {
  const log = pino({ level: options.logLevel, base: { service: 'kiln-worker', pid: process.pid } });
  let worker: JobWorker | null = null;
  let close: () => Promise<void> = async () => undefined;
  let stopping: Promise<void> | null = null;
  const stop = (why: string) => {
    stopping ??= (async () => {
      log.info({ why }, 'worker stopping');
      await worker?.stop();
      await close();
      process.exit(0);
    })();
    return stopping;
  };
  // Signals and the server's going away are watched before anything else:
  // a server killed while this worker starts must not leave it behind.
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  const supervised = typeof process.send === 'function';
  process.on('disconnect', () => void stop('the server that started this worker exited'));
  if (supervised && !process.connected) return void stop('the server that started this worker exited');

  // Started by `kiln serve`: it says when blob transfers run, and bakes give way (bake-yield.ts).
  const registry = new RegistryState();
  process.on('message', (m) => {
    const message = parsePoolMessage(m);
    if (message === 'wake') worker?.wake();
    else if (message) registry.set(message.registryBusy);
  });
  const settings = loadJobSettings(options.env);
  const limits = bakeLimitsFromEnv(options.env);
  const sandbox = loadSandboxSettings(options.env);
  try {
    lowerAllThreads(WORKER_NICE);
  } catch (err) {
    log.warn({ err }, 'could not lower the worker priority');
  }
  const stores = await openStores({
    dataDir: options.dataDir,
    databaseUrl: options.databaseUrl,
    durable: options.env.KILN_FSYNC !== 'false',
    s3: loadS3Config(options.env),
    owner: 'kiln worker',
    // Beside the server, which holds the data directory's lock.
    shared: true,
    existing: true,
  });
  const swept = await sweepDeadWorkers(stores.dirs.scratchRoot, { memoryRoot: sandbox.cgroupMemoryRoot, pidsRoot: sandbox.cgroupPidsRoot }).catch((err: unknown) => {
    log.warn({ err }, 'could not remove what dead workers left in the scratch directory');
    return [];
  });
  if (swept.length > 0) log.info({ removed: swept }, 'removed the scratch and cgroups of workers that died');
  // One bake process waits, started, for the next job: a bake does not pay the sandbox's start (sandbox/warm.ts).
  const warm = new WarmBakes(stores.dirs.scratchRoot, (err) => log.warn({ err }, 'could not start a bake process ahead of the next job'));
  close = async () => {
    await warm.close();
    await stores.close();
  };
  if (stopping) return;
  const bake = bakeJobHandler({ meta: stores.meta, blobs: stores.blobs, images: stores.images, files: stores.files, dirs: stores.dirs, limits, bake: (input) => sandboxedBake(input, sandbox, warm, registry) });
  const works = await sandboxWorks(sandbox, log);
  const handlers = new Map<string, JobHandler>([[BAKE_JOB, works ? bake : refuseBakes]]);
  if (works && !stopping) warm.prepare({ ...sandbox, limits });
  const id = newWorkerId();
  worker = new JobWorker(stores.jobs, handlers, settings, id, log);
  worker.start();
  log.info({ worker: id }, 'worker ready');
}

/**
 * A worker whose sandbox cannot be made here still takes bake jobs, so that
 * they fail with a reason instead of waiting forever; the operator's log
 * says what is missing (tenants never see host details).
 */
async function sandboxWorks(settings: Parameters<typeof checkSandbox>[0], log: { error(o: object, m: string): void }): Promise<boolean> {
  try {
    await checkSandbox(settings);
    return true;
  } catch (err) {
    log.error({ err }, 'bakes cannot run on this worker: the bake sandbox is not available');
    return false;
  }
}

const refuseBakes: JobHandler = async () => {
  throw new Error('this server cannot bake images: its bake sandbox is not set up (the operator finds the reason in the worker log); retry the bake once it is fixed');
};
