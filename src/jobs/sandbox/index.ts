// Bakes in a sandboxed child process. The worker (trusted code) creates the
// result directory and the empty disk file, starts bake-entry.js through the
// launcher, streams it the job and the layers it asks for, and writes
// config.json and renames the result when the child reports success. The
// child parses every byte of image data; the worker parses none.
import { closeSync, constants, existsSync, fstatSync, openSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { once } from 'node:events';
import { constants as osConstants } from 'node:os';
import type { BakeInput, BakeResult, BakedDisk } from '../../convert/bake.js';
import type { BakedConfig } from '../../convert/baked-config.js';
import { BakeError, type BakeErrorCode } from '../../convert/errors.js';
import { BakeBudget } from '../../convert/limits.js';
import { formatBytes } from '../../util/format-bytes.js';
import { BAKE_ENTRY, JOIN_FAILED_EXIT, sandboxTools, startSandboxed, type Sandboxed, type SandboxExit } from './launcher.js';
import { frameHeader, LineSplitter, MAX_FRAME_BYTES, type ChildMessage, type JobHeader } from './protocol.js';
import { cpuSeconds, SANDBOX_ENV, type SandboxSettings } from './settings.js';
import type { WarmBakes } from './warm.js';
import { yieldWhileBusy, type RegistryState } from '../bake-yield.js';

export { loadSandboxSettings, type SandboxSettings } from './settings.js';
export { WarmBakes } from './warm.js';

const CODES: ReadonlySet<string> = new Set<BakeErrorCode>(['INVALID_IMAGE', 'UNSUPPORTED_LAYER', 'LAYER_DIGEST_MISMATCH', 'LAYER_CORRUPT', 'UNSAFE_ENTRY', 'UNSUPPORTED_ENTRY', 'LIMIT_EXCEEDED', 'DISK_WRITE']);
const MAX_MESSAGE = 4096;

/**
 * Same input and result as bakeImage (src/convert/bake.ts); the tar parsing and disk writing happen in a sandboxed child process.
 * With `warm`, the bake takes the process started ahead for it when it matches (warm.ts), and a new one is started for the next bake once this one is done.
 */
export async function sandboxedBake(input: BakeInput, given: SandboxSettings, warm?: WarmBakes, registry?: RegistryState): Promise<BakeResult> {
  // Limits given with the job win over the settings' (as in bakeImage); the file-size rlimit follows them.
  const settings = input.limits ? { ...given, limits: input.limits } : given;
  try {
    return await bakeInSandbox(input, settings, warm, registry);
  } finally {
    warm?.prepare(settings);
  }
}

async function bakeInSandbox(input: BakeInput, settings: SandboxSettings, warm: WarmBakes | undefined, registry: RegistryState | undefined): Promise<BakeResult> {
  input.signal?.throwIfAborted();
  // Refused before a process is started: the count is all the worker reads of the manifest.
  new BakeBudget(settings.limits).checkLayerCount(input.manifest.layers.length);
  // The engine's module is loaded on the first bake, not when the worker starts: an idle worker
  // then holds ~17 MiB less, and the worker itself only needs publishBake from it.
  const { DISK_FILE_NAME, publishBake } = await import('../../convert/bake.js');
  await mkdir(input.workDir, { recursive: true });
  const result = await mkdtemp(path.join(input.workDir, 'result-'));
  try {
    await chmod(result, 0o700);
    const diskPath = path.join(result, DISK_FILE_NAME);
    const ready = await warm?.take(settings);
    let fd: number;
    let box: Sandboxed;
    if (ready) {
      fd = ready.fd;
      try {
        await ready.moveDisk(diskPath);
      } catch (err) {
        await ready.discard();
        throw err;
      }
      box = ready.box;
    } else {
      fd = openSync(diskPath, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      box = await startSandboxed(settings, [BAKE_ENTRY], [fd]).catch((err: unknown) => {
        closeSync(fd);
        throw err;
      });
    }
    let baked: BakedDisk;
    try {
      baked = await runChild(input, settings, box, DISK_FILE_NAME, registry);
      if (fstatSync(fd).size !== baked.sizeBytes) throw new Error(`the bake process reported a disk of ${baked.sizeBytes} bytes but wrote ${fstatSync(fd).size}`);
    } finally {
      closeSync(fd);
    }
    return await publishBake(result, baked, input.outputDir, input.signal);
  } catch (err) {
    await rm(result, { recursive: true, force: true });
    throw err;
  }
}

async function runChild(input: BakeInput, settings: SandboxSettings, box: Sandboxed, diskFileName: string, registry: RegistryState | undefined): Promise<BakedDisk> {
  const { child } = box;
  const stdin = child.stdin as Writable;
  const stdout = child.stdout as Readable;
  let outcome: ChildMessage | null = null;
  let failure: unknown = null;
  let timedOut = false;
  const fail = (err: unknown) => {
    failure ??= err;
    box.kill();
  };
  const onAbort = () => fail(input.signal?.reason ?? new Error('aborted'));
  input.signal?.addEventListener('abort', onAbort, { once: true });
  if (input.signal?.aborted) onAbort(); // while the sandbox was being made
  const yielding = registry ? yieldWhileBusy(box, registry, settings.yieldMs) : null;
  // Time spent paused for the registry does not count against KILN_BAKE_TIMEOUT.
  let credited = 0;
  const onTimeout = () => {
    const owed = (yielding?.pausedMs() ?? 0) - credited;
    if (owed > 0) {
      credited += owed;
      timer = setTimeout(onTimeout, owed);
      return;
    }
    timedOut = true;
    box.kill();
  };
  let timer = setTimeout(onTimeout, settings.timeoutMs);
  stdin.on('error', () => {}); // EPIPE when the child is gone; its exit tells why

  const server = new LayerServer(input, stdin, fail);
  const lines = new LineSplitter((line) => {
    let message: ChildMessage;
    try {
      message = JSON.parse(line) as ChildMessage;
    } catch {
      throw new Error('the bake process wrote something that is not a message');
    }
    switch (message?.type) {
      case 'open':
        server.request(message.stream, message.layer);
        break;
      case 'progress':
        if (Number.isFinite(message.done) && Number.isFinite(message.total)) input.onProgress?.(message.done, message.total);
        break;
      case 'result':
      case 'error':
        outcome ??= message;
        break;
      default:
        throw new Error('the bake process sent an unknown message');
    }
  });
  stdout.on('data', (chunk: Buffer) => {
    try {
      lines.push(chunk);
    } catch (err) {
      fail(err);
    }
  });

  const job: JobHeader = { manifest: input.manifest, config: Buffer.from(input.configBytes).toString('base64'), limits: settings.limits };
  stdin.write(`${JSON.stringify(job)}\n`);
  const exit = await box.done.finally(() => {
    clearTimeout(timer);
    yielding?.stop();
    input.signal?.removeEventListener('abort', onAbort);
    server.stop();
  });
  if (input.signal?.aborted) throw input.signal.reason;
  if (timedOut) {
    throw new BakeError('LIMIT_EXCEEDED', `the bake took longer than ${settings.timeoutText}: the limit of bake time is ${settings.timeoutText}; raise ${SANDBOX_ENV.timeout} to allow more`);
  }
  return interpret(outcome, failure, exit, settings, diskFileName);
}

/** What the child's last message and its exit say. */
function interpret(outcome: ChildMessage | null, failure: unknown, exit: SandboxExit, settings: SandboxSettings, diskFileName: string): BakedDisk {
  const memory = () => new BakeError('LIMIT_EXCEEDED', `the bake needed more memory than the limit of ${settings.memoryBytes} bytes (${formatBytes(settings.memoryBytes)}); raise ${SANDBOX_ENV.memory} to allow more`);
  const signal = exitSignal(exit);
  if (exit.oomKilled) throw memory();
  if (outcome?.type !== 'result' && OUT_OF_MEMORY.test(exit.stderr)) throw memory();
  if (signal === 'SIGXCPU') {
    throw new BakeError('LIMIT_EXCEEDED', `the bake used more than ${cpuSeconds(settings)} seconds of CPU time (twice ${SANDBOX_ENV.timeout}=${settings.timeoutText}); raise ${SANDBOX_ENV.timeout} to allow more`);
  }
  if (failure !== null) throw failure;
  if (outcome?.type === 'error') {
    const message = String(outcome.message).slice(0, MAX_MESSAGE);
    if (outcome.code !== null && CODES.has(outcome.code)) throw new BakeError(outcome.code, message);
    throw new Error(`the bake process failed: ${message}`);
  }
  if (outcome?.type === 'result' && exit.code === 0) return checkResult(outcome, diskFileName);
  // Not the image's fault as far as we can tell: plain Errors, with the process's last words for the log.
  const cause = exit.stderr ? new Error(exit.stderr.trim()) : undefined;
  if (exit.code === JOIN_FAILED_EXIT) throw new Error('the bake process could not join its cgroup', { cause });
  if (signal) throw new Error(`the bake process was killed by ${signal}${signal === 'SIGKILL' ? ' (the host is out of memory, or it was killed from outside)' : ''}`, { cause });
  throw new Error(`the bake process exited with code ${exit.code} without a result`, { cause });
}

/** How V8, the C++ runtime, zstd and the bake process itself (data-watch.ts's OUT_OF_DATA) say they ran out of memory (under RLIMIT_DATA or the V8 heap limit). */
const OUT_OF_MEMORY = /JavaScript heap out of memory|Allocation failed|Fatal process out of memory|Cannot allocate memory|std::bad_alloc|allocation error/;

/** The signal that ended the process; bwrap's init reports its child's as exit code 128 + n. */
function exitSignal(exit: SandboxExit): NodeJS.Signals | null {
  if (exit.signal) return exit.signal;
  if (exit.code === null || exit.code <= 128) return null;
  const name = Object.entries(osConstants.signals).find(([, n]) => n === exit.code! - 128)?.[0];
  return (name as NodeJS.Signals | undefined) ?? null;
}

function lastLine(text: string): string {
  return text.trim().split('\n').slice(-1)[0].slice(0, 500);
}

/** The child is not trusted: its result must have the shape of one. */
function checkResult(message: Extract<ChildMessage, { type: 'result' }>, diskFileName: string): BakedDisk {
  const doc = message.document as unknown as BakedConfig;
  if (!Number.isSafeInteger(message.sizeBytes) || message.sizeBytes <= 0 || typeof doc !== 'object' || doc === null || doc.disk?.sizeBytes !== message.sizeBytes || doc.disk?.file !== diskFileName) {
    throw new Error('the bake process sent a malformed result');
  }
  const run = {
    entrypoint: doc.entrypoint,
    cmd: doc.cmd,
    env: doc.env,
    workingDir: doc.workingDir,
    user: doc.user,
    exposedPorts: doc.exposedPorts,
    ...(doc.stopSignal !== undefined ? { stopSignal: doc.stopSignal } : {}),
    labels: doc.labels,
  };
  const strings = (v: unknown) => Array.isArray(v) && v.every((s) => typeof s === 'string');
  if (!strings(run.entrypoint) || !strings(run.cmd) || !strings(run.env) || !strings(run.exposedPorts) || typeof run.workingDir !== 'string' || typeof run.user !== 'string' || typeof run.labels !== 'object' || run.labels === null) {
    throw new Error('the bake process sent a malformed result');
  }
  return { document: doc, sizeBytes: message.sizeBytes, runConfig: run };
}

/** Serves the child's layer requests one after the other, as framed streams with backpressure. */
class LayerServer {
  private queue: Array<{ stream: number; layer: number }> = [];
  private running = false;
  private stopped = false;
  private current: Readable | null = null;
  /**
   * Layers asked for so far. The engine reads each layer of the manifest once, and once more to
   * tell a corrupt blob from a corrupt tar (src/convert/layer-stream.ts), so a process asking more
   * is not the engine.
   */
  private requests = 0;

  constructor(
    private readonly input: BakeInput,
    private readonly out: Writable,
    private readonly fail: (err: unknown) => void,
  ) {}

  request(stream: number, layer: number): void {
    const layers = this.input.manifest.layers;
    if (!Number.isSafeInteger(stream) || stream <= 0 || !Number.isSafeInteger(layer) || layer < 0 || layer >= layers.length) {
      this.fail(new Error('the bake process asked for a layer that does not exist'));
      return;
    }
    if (++this.requests > 2 * layers.length) {
      this.fail(new Error('the bake process asked for more layers than the image has'));
      return;
    }
    this.queue.push({ stream, layer });
    if (!this.running) void this.drain();
  }

  stop(): void {
    this.stopped = true;
    this.current?.destroy();
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      for (let next = this.queue.shift(); next && !this.stopped; next = this.queue.shift()) await this.send(next.stream, next.layer);
    } catch (err) {
      if (!this.stopped) this.fail(err);
    } finally {
      this.running = false;
    }
  }

  private async send(stream: number, layer: number): Promise<void> {
    const blob = await this.input.openBlob(this.input.manifest.layers[layer].digest);
    this.current = blob;
    try {
      for await (const chunk of blob) {
        if (this.stopped) return;
        const bytes = chunk as Buffer;
        for (let at = 0; at < bytes.length; at += MAX_FRAME_BYTES) {
          const piece = bytes.subarray(at, at + MAX_FRAME_BYTES);
          this.out.write(frameHeader(stream, piece.length));
          if (!this.out.write(piece) && !(await this.drained())) return;
        }
      }
      this.out.write(frameHeader(stream, 0));
    } finally {
      this.current = null;
      blob.destroy();
    }
  }

  /** Waits for the pipe to take more; false when the child is gone (its exit says why, not the broken pipe). */
  private async drained(): Promise<boolean> {
    if (this.stopped || this.out.destroyed) return false;
    const closed = new AbortController();
    try {
      await Promise.race([once(this.out, 'drain', { signal: closed.signal }), once(this.out, 'close', { signal: closed.signal })]);
    } catch {
      return false;
    } finally {
      closed.abort();
    }
    return !this.out.destroyed && !this.stopped;
  }
}

/** Checks once at worker start that the sandbox can be made here (tools present, user namespaces, the sandbox user can read the program); throws an Error an operator can act on. */
export async function checkSandbox(settings: SandboxSettings): Promise<void> {
  const tools = await sandboxTools();
  const missing = Object.entries({ sh: tools.sh, chrt: tools.chrt, nice: tools.nice, ionice: tools.ionice, prlimit: tools.prlimit, setpriv: tools.setpriv })
    .filter(([, found]) => !path.isAbsolute(found))
    .map(([name]) => name);
  if (settings.mode === 'bwrap' && !tools.bwrap) missing.push('bwrap');
  if (missing.length > 0) {
    throw new Error(`the bake sandbox needs ${missing.join(', ')} on PATH (Debian: ${missing.includes('bwrap') ? 'bubblewrap, ' : ''}util-linux, coreutils; scripts/install-deps.sh run)${missing.includes('bwrap') ? `, or set ${SANDBOX_ENV.mode}=none on machines without user namespaces` : ''}`);
  }
  if (!tools.zstd) throw new Error('the bake sandbox needs zstd on PATH for zstd layers (Debian: zstd)');
  if (!existsSync(BAKE_ENTRY)) throw new Error(`the bake sandbox runs ${BAKE_ENTRY}, which does not exist: build the project (npx tsc -p tsconfig.json)`);
  const box = await startSandboxed(settings, [BAKE_ENTRY, '--check']);
  box.child.stdin?.end();
  let out = '';
  box.child.stdout?.on('data', (chunk: Buffer) => {
    out = (out + chunk.toString('utf8')).slice(-4096);
  });
  const timer = setTimeout(() => box.kill(), 60_000);
  const exit = await box.done.finally(() => clearTimeout(timer));
  const report = /"type":"probe"/.test(out) ? (JSON.parse(out.trim().split('\n').pop() as string) as { report: { uid: number } }).report : null;
  if (exit.code === 0 && report) {
    if (report.uid === 0) throw new Error('the bake sandbox runs as root; refusing');
    return;
  }
  const why = lastLine(exit.stderr) || `exit ${exit.code ?? exit.signal}`;
  const hints = [
    settings.mode === 'bwrap' ? `unprivileged user namespaces must be allowed (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, no AppArmor userns restriction), or set ${SANDBOX_ENV.mode}=none` : '',
    `user ${settings.uid} must be able to read ${path.dirname(path.dirname(BAKE_ENTRY))} and node_modules (every directory above them needs o+x)`,
  ].filter(Boolean);
  throw new Error(`the bake sandbox could not start a bake process (${why}); ${hints.join('; ')}`);
}
