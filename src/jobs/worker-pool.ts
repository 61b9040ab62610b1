// The local pool of worker processes `kiln serve` starts (KILN_WORKERS): each
// is `kiln worker` on the same data directory and database, a separate OS
// process, so nothing a bake does can stall or crash the API. A worker that
// exits is started again, with a growing pause if it keeps dying; the pool
// wakes its workers when the API queues work, so they need not poll fast,
// and tells them when blob transfers start and stop, so that their bakes give
// way to the registry (bake-yield.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface WorkerPoolOptions {
  count: number;
  /** The environment the workers get: the server's settings (KILN_*). */
  env: NodeJS.ProcessEnv;
  /** `kiln worker` arguments: data dir, database, log level. */
  args: string[];
  log: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
}

const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;
/** A worker that ran this long before it died is not counted as crash-looping. */
const HEALTHY_AFTER_MS = 60_000;
const STOP_GRACE_MS = 10_000;

/** bin/kiln.js of this installation (dist/src/jobs → the package root). */
const KILN_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'kiln.js');

/** What the server sends its workers over the IPC channel. */
export type PoolMessage = 'wake' | { registryBusy: boolean };

/** The message, when `m` is one (anything else on the channel is ignored). */
export function parsePoolMessage(m: unknown): PoolMessage | null {
  if (m === 'wake') return m;
  if (typeof m === 'object' && m !== null && typeof (m as { registryBusy?: unknown }).registryBusy === 'boolean') return { registryBusy: (m as { registryBusy: boolean }).registryBusy };
  return null;
}

interface Slot {
  proc: ChildProcess | null;
  restartDelay: number;
  timer: NodeJS.Timeout | null;
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private stopping = false;
  private registryBusy = false;

  constructor(private readonly options: WorkerPoolOptions) {}

  start(): void {
    for (let i = 0; i < this.options.count; i++) {
      const slot: Slot = { proc: null, restartDelay: RESTART_MIN_MS, timer: null };
      this.slots.push(slot);
      this.launch(slot);
    }
  }

  wake(): void {
    this.broadcast('wake');
  }

  /** Blob transfers began or ended; a worker started later is told on start. */
  setRegistryBusy(busy: boolean): void {
    this.registryBusy = busy;
    this.broadcast({ registryBusy: busy });
  }

  private broadcast(message: PoolMessage): void {
    for (const slot of this.slots) {
      if (slot.proc?.connected) slot.proc.send(message, () => undefined);
    }
  }

  /** SIGTERM to every worker (each hands its job back), SIGKILL after a grace period. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.slots.map(async (slot) => {
        if (slot.timer) clearTimeout(slot.timer);
        const proc = slot.proc;
        if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
        const exited = new Promise((resolve) => proc.once('exit', resolve));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  private launch(slot: Slot): void {
    const startedAt = Date.now();
    const proc = spawn(process.execPath, [KILN_BIN, 'worker', ...this.options.args], {
      env: this.options.env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    slot.proc = proc;
    if (this.registryBusy) proc.send({ registryBusy: true } satisfies PoolMessage, () => undefined);
    proc.on('error', (err) => this.options.log.error({ err }, 'could not start a worker process'));
    proc.once('exit', (code, signal) => {
      slot.proc = null;
      if (this.stopping) return;
      slot.restartDelay = Date.now() - startedAt > HEALTHY_AFTER_MS ? RESTART_MIN_MS : Math.min(RESTART_MAX_MS, slot.restartDelay * 2);
      this.options.log.warn({ code, signal, restartInMs: slot.restartDelay }, 'a worker process exited; starting another');
      slot.timer = setTimeout(() => {
        slot.timer = null;
        if (!this.stopping) this.launch(slot);
      }, slot.restartDelay);
    });
  }
}
