// The bake sandbox's settings, read from the environment. Pure.
//
//   KILN_BAKE_SANDBOX  bwrap (default): namespaces via bubblewrap; none: a
//                      separate unprivileged process with rlimits only
//   KILN_BAKE_TIMEOUT  wall time of one bake (e.g. 90s, 10m, 1h; a bare
//                      number is seconds); also bounds its CPU time
//   KILN_BAKE_MEMORY   memory of one bake's processes (bytes, or 512MiB, 2GiB)
//   KILN_BAKE_YIELD    how long one bake may be paused, in all, while the
//                      registry moves blobs (src/jobs/bake-yield.ts); 0: never
//
// The engine's own limits (KILN_BAKE_MAX_BYTES, …, src/convert/limits.ts)
// travel with the settings into the sandboxed process.
import { bakeLimitsFromEnv, type BakeLimits } from '../../convert/limits.js';
import { formatBytes } from '../../util/format-bytes.js';

export type SandboxMode = 'bwrap' | 'none';

export interface SandboxSettings {
  mode: SandboxMode;
  /** Wall time of one bake; the process is killed after it. */
  timeoutMs: number;
  /** KILN_BAKE_TIMEOUT as written (or the default), for messages. */
  timeoutText: string;
  /** Longest a bake gives way to blob transfers, in all (0: never); paused time does not count against the timeout. */
  yieldMs: number;
  /** Memory of one bake: cgroup limit, RLIMIT_DATA, and the V8 heap sized below it. */
  memoryBytes: number;
  /** The engine's limits, passed to the sandboxed process. */
  limits: BakeLimits;
  /** Who the sandboxed process runs as: nobody (65534) when Kiln runs as root, else Kiln's own user. */
  uid: number;
  gid: number;
  /** Mount points of the cgroup v1 controllers used where writable. */
  cgroupMemoryRoot: string;
  cgroupPidsRoot: string;
}

export const SANDBOX_ENV = { mode: 'KILN_BAKE_SANDBOX', timeout: 'KILN_BAKE_TIMEOUT', memory: 'KILN_BAKE_MEMORY', yield: 'KILN_BAKE_YIELD' } as const;

export const DEFAULT_TIMEOUT = '30m';
export const DEFAULT_YIELD = '10s';
export const DEFAULT_MEMORY = '2GiB';
/** Below this Node cannot start and bake. */
export const MIN_MEMORY_BYTES = 96 * 1024 * 1024;
const NOBODY = 65534;

/** Processes and threads of one sandbox (pids cgroup): Node's ~11 threads, bwrap's two processes and zstd. */
export const SANDBOX_MAX_TASKS = 64;
/** Open files of the sandboxed process (RLIMIT_NOFILE). */
export const SANDBOX_OPEN_FILES = 256;

const SECONDS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600 };
const BYTES: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

/** Milliseconds in `90s`, `10m`, `1h`, `1.5h` or a bare number of seconds; null when it is not one. */
export function parseDurationMs(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([smh]?)$/i.exec(text.trim());
  if (!m) return null;
  const ms = Math.round(Number(m[1]) * SECONDS[m[2].toLowerCase()] * 1000);
  return Number.isSafeInteger(ms) && ms > 0 ? ms : null;
}

/** Bytes in `1073741824`, `512MiB`, `2GiB`, `2G` (binary units); null when it is not a size. */
export function parseBytes(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  if (!m || !(m[2].toLowerCase() in BYTES)) return null;
  const bytes = Math.floor(Number(m[1]) * BYTES[m[2].toLowerCase()]);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : null;
}

/** The settings from `env`; a bad value throws an Error naming the setting. */
export function loadSandboxSettings(env: NodeJS.ProcessEnv = process.env, identity: { uid: number; gid: number } = currentIdentity()): SandboxSettings {
  const modeText = (env[SANDBOX_ENV.mode]?.trim() || 'bwrap').toLowerCase();
  if (modeText !== 'bwrap' && modeText !== 'none') {
    throw new Error(`${SANDBOX_ENV.mode} must be "bwrap" (namespaces through bubblewrap) or "none" (an unprivileged process with rlimits only), got "${env[SANDBOX_ENV.mode]}"`);
  }
  const timeoutText = env[SANDBOX_ENV.timeout]?.trim() || DEFAULT_TIMEOUT;
  const timeoutMs = parseDurationMs(timeoutText);
  if (timeoutMs === null) throw new Error(`${SANDBOX_ENV.timeout} must be a positive duration such as 90s, 10m or 1h (a bare number is seconds), got "${env[SANDBOX_ENV.timeout]}"`);
  const yieldText = env[SANDBOX_ENV.yield]?.trim() || DEFAULT_YIELD;
  const yieldMs = /^0+(\.0*)?\s*[smh]?$/i.test(yieldText) ? 0 : parseDurationMs(yieldText);
  if (yieldMs === null) throw new Error(`${SANDBOX_ENV.yield} must be a duration such as 10s or 1m (a bare number is seconds; 0: bakes never pause for the registry), got "${env[SANDBOX_ENV.yield]}"`);
  const memoryText = env[SANDBOX_ENV.memory]?.trim() || DEFAULT_MEMORY;
  const memoryBytes = parseBytes(memoryText);
  if (memoryBytes === null) throw new Error(`${SANDBOX_ENV.memory} must be a size in bytes or with a binary unit such as 512MiB or 2GiB, got "${env[SANDBOX_ENV.memory]}"`);
  if (memoryBytes < MIN_MEMORY_BYTES) throw new Error(`${SANDBOX_ENV.memory} must be at least ${formatBytes(MIN_MEMORY_BYTES)} (a bake process needs that much to start), got "${env[SANDBOX_ENV.memory]}"`);
  const asRoot = identity.uid === 0;
  return {
    mode: modeText,
    timeoutMs,
    timeoutText,
    yieldMs,
    memoryBytes,
    limits: bakeLimitsFromEnv(env),
    uid: asRoot ? NOBODY : identity.uid,
    gid: asRoot ? NOBODY : identity.gid,
    cgroupMemoryRoot: '/sys/fs/cgroup/memory',
    cgroupPidsRoot: '/sys/fs/cgroup/pids',
  };
}

function currentIdentity(): { uid: number; gid: number } {
  return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

/** V8's old-space limit for a memory budget: three quarters, the rest for Node, buffers and zstd. */
export function heapMiB(memoryBytes: number): number {
  return Math.max(32, Math.floor((memoryBytes * 3) / 4 / (1024 * 1024)));
}

/** RLIMIT_CPU in seconds: twice the wall time, since decompression runs beside the main thread. */
export function cpuSeconds(settings: SandboxSettings): number {
  return Math.ceil((2 * settings.timeoutMs) / 1000);
}
