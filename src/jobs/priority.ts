// Lowers the CPU priority of every thread of this process. On Linux a nice
// value belongs to a thread: setpriority(0) changes only the calling one, and
// threads made later inherit the value of the thread that makes them. V8's
// compiler and GC threads start with the process, before any of our code
// runs, so a worker that only lowered its main thread still compiled and
// collected at nice 0, beside the API (measured: half of a worker's CPU
// during a push was optimizing compilation on those threads).
import { readdirSync } from 'node:fs';
import os from 'node:os';

/** Sets `nice` on the main thread and every thread that exists now; throws only if the main thread could not be lowered. */
export function lowerAllThreads(nice: number): void {
  os.setPriority(nice);
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return; // no /proc: the main thread is all we can reach
  }
  for (const tid of tids) {
    try {
      os.setPriority(Number(tid), nice);
    } catch {
      // a thread that ended meanwhile
    }
  }
}
