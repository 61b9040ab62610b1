// One bake process started ahead of the job that will use it. Starting a
// sandbox (sh → chrt → nice → ionice → prlimit → setpriv → bwrap → node, and
// the engine's modules) takes 0.4–0.8 s at idle priority here, which was most
// of a small image's bake. The worker keeps one such process waiting: it has
// loaded the engine and blocks reading its job from stdin. It has seen no
// image data, and it still serves exactly one bake and then exits (bake-entry
// exits after its one job), so nothing of one bake can reach the next; the
// spare for the next job is a new process, started once the bake is done.
//
// The disk file the process writes into is handed to it as fd 3 when it
// starts, so it is created beforehand in a private directory of the scratch
// root and renamed into the job's result directory (the same filesystem) when
// the job takes the process.
import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { BAKE_ENTRY, startSandboxed, type Sandboxed } from './launcher.js';
import type { SandboxSettings } from './settings.js';
import { warmScratchPrefix } from '../scratch-sweep.js';

/** A started bake process, the fd it writes the disk into, and that file's current path. */
export interface ReadyBake {
  box: Sandboxed;
  fd: number;
  /** Moves the disk file to `target` (the job's result directory, same filesystem) and removes its spare directory. */
  moveDisk(target: string): Promise<void>;
  /** Kills the process, closes the fd, removes the disk file: for a process nobody will use. */
  discard(): Promise<void>;
}

interface Spare {
  key: string;
  ready: Promise<ReadyBake | null>;
  exited: boolean;
}

export class WarmBakes {
  private spare: Spare | null = null;
  private closed = false;

  /** `scratchRoot`: a directory on the same filesystem as the jobs' work directories. */
  constructor(
    private readonly scratchRoot: string,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  /** Starts a process for the next bake with these settings, unless one is waiting already. */
  prepare(settings: SandboxSettings): void {
    if (this.closed || this.spare) return;
    const spare: Spare = { key: keyOf(settings), exited: false, ready: Promise.resolve(null) };
    spare.ready = this.start(settings, spare).catch((err: unknown) => {
      if (!this.closed) this.onError(err);
      if (this.spare === spare) this.spare = null;
      return null;
    });
    this.spare = spare;
  }

  /**
   * The waiting process when it was started with the same settings and is
   * still alive; the caller owns it (and its fd) from then on. Null otherwise
   * (a mismatched spare is stopped): the caller starts one as before.
   */
  async take(settings: SandboxSettings): Promise<ReadyBake | null> {
    const spare = this.spare;
    if (!spare) return null;
    this.spare = null;
    const ready = await spare.ready;
    if (!ready) return null;
    if (spare.key === keyOf(settings) && !spare.exited && ready.box.child.exitCode === null) return ready;
    await ready.discard();
    return null;
  }

  /** Stops the waiting process and removes its disk file. */
  async close(): Promise<void> {
    this.closed = true;
    const spare = this.spare;
    this.spare = null;
    const ready = await spare?.ready;
    if (ready) await ready.discard();
  }

  private async start(settings: SandboxSettings, spare: Spare): Promise<ReadyBake> {
    await mkdir(this.scratchRoot, { recursive: true });
    const dir = await mkdtemp(path.join(this.scratchRoot, warmScratchPrefix()));
    let fd: number | null = null;
    try {
      const file = path.join(dir, 'disk');
      fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      const openFd = fd;
      const box = await startSandboxed(settings, [BAKE_ENTRY], [openFd]);
      void box.done.then(
        () => (spare.exited = true),
        () => (spare.exited = true),
      );
      const ready: ReadyBake = {
        box,
        fd: openFd,
        moveDisk: async (target) => {
          await rename(file, target);
          await rm(dir, { recursive: true, force: true });
        },
        discard: async () => {
          box.child.stdin?.destroy();
          box.kill();
          await box.done.catch(() => undefined);
          closeQuietly(openFd);
          await rm(dir, { recursive: true, force: true });
        },
      };
      // Closed while it was starting.
      if (this.closed) {
        fd = null; // discard closes it; the number may be reused at once
        await ready.discard();
        throw new Error('the worker is stopping');
      }
      return ready;
    } catch (err) {
      if (fd !== null) closeQuietly(fd);
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // closed already
  }
}

/** Processes are interchangeable when their whole command line would be the same: same settings, same limits. */
function keyOf(settings: SandboxSettings): string {
  return JSON.stringify(settings);
}
