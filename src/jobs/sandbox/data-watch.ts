// A process that runs out of RLIMIT_DATA can crash anywhere: V8 mostly says
// "out of memory" and aborts, but a failed mmap can also end in a SIGSEGV
// with no word, and then the worker cannot tell the tenant that
// KILN_BAKE_MEMORY was the limit. So the bake process watches its own data
// segment and stops itself, saying so, once it comes near the limit.
import { readFileSync } from 'node:fs';

/** Past this share of RLIMIT_DATA the bake stops. */
const DATA_STOP_SHARE = 0.85;
/** What the bake process prints on stderr when it stops; sandbox/index.ts reads it as running out of memory. */
export const OUT_OF_DATA = 'Cannot allocate memory: the data segment came near its limit (RLIMIT_DATA)';
const EVERY_MS = 20;

/** VmData from /proc/self/status, in bytes. Pure. */
export function dataBytes(status: string): number {
  return Number(/^VmData:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
}

/** RLIMIT_DATA's soft limit from /proc/self/limits, in bytes; null when unlimited. Pure. */
export function dataLimitBytes(limits: string): number | null {
  const m = /^Max data size\s+(\d+|unlimited)\s/m.exec(limits);
  return m && m[1] !== 'unlimited' ? Number(m[1]) : null;
}

/** Calls `onNear` (once) when the data segment passes DATA_STOP_SHARE of its limit; nothing when there is no limit. */
export function watchDataSegment(onNear: () => void): void {
  const limit = dataLimitBytes(readFileSync('/proc/self/limits', 'utf8'));
  if (limit === null) return;
  const timer = setInterval(() => {
    if (dataBytes(readFileSync('/proc/self/status', 'utf8')) < DATA_STOP_SHARE * limit) return;
    clearInterval(timer);
    onNear();
  }, EVERY_MS);
  timer.unref();
}
