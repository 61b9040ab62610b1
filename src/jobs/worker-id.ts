// Who holds a job's lease: `host:pid:nonce`. A worker on the same host can
// tell that the holder's process is gone and take the job up at once instead
// of waiting for the lease to run out. Pure but for the liveness probe.
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { isProcessAlive } from '../store/dir-lock.js';

export function newWorkerId(host: string = os.hostname(), pid: number = process.pid): string {
  return `${host}:${pid}:${randomBytes(4).toString('hex')}`;
}

export function parseWorkerId(id: string): { host: string; pid: number } | null {
  const m = /^(.*):(\d+):[0-9a-f]+$/.exec(id);
  return m ? { host: m[1]!, pid: Number(m[2]) } : null;
}

/** The holder is known to be dead: it ran on this host and its pid is gone. Unknown holders are left to their lease. */
export function holderIsDead(id: string, host: string = os.hostname(), alive: (pid: number) => boolean = isProcessAlive): boolean {
  const holder = parseWorkerId(id);
  return holder !== null && holder.host === host && holder.pid !== process.pid && !alive(holder.pid);
}
