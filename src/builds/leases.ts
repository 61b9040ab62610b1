// Build leases: which builds another server may end because the server holding
// them is gone. Pure; the service reads the records and the liveness probe.
//
// A server holds the builds it runs (building, pushing) and the queued builds
// whose secrets it keeps in memory, and renews its lease on them every third
// of KILN_JOB_LEASE. A holder is gone when its lease ran out, or when it ran
// on this host and its process is gone (src/jobs/worker-id.ts). A building or
// pushing row without a runner comes from before leases and counts as gone.

import type { BuildRecord } from '../store/build-store.js';

/** What tenants read when the server running their build went away (no host names, no pids). */
export const INTERRUPTED = 'interrupted: the server running it stopped';
/** What they read when the server that took a build's secrets went away before it ran. */
export const SECRETS_LOST = 'the server that took the build stopped before it ran, and build secrets are kept in memory only; submit it again';

export type LeaseVerdict = 'held' | 'interrupted' | 'secrets-lost';

export interface LeaseJudge {
  now: number;
  /** This server's runner id: its own builds are judged by its renewals, never here. */
  self: string;
  /** Whether the holder is known to be dead (holderIsDead). */
  isDead(runner: string): boolean;
}

/** Whether `build` is still held, or why its holder is gone. */
export function leaseVerdict(build: Pick<BuildRecord, 'status' | 'runner' | 'leaseUntil' | 'secretIds'>, judge: LeaseJudge): LeaseVerdict {
  const gone = build.runner === null || (build.runner !== judge.self && ((build.leaseUntil ?? 0) < judge.now || judge.isDead(build.runner)));
  switch (build.status) {
    case 'building':
    case 'pushing':
      return gone ? 'interrupted' : 'held';
    case 'queued':
      // Anyone may run a queued build without secrets; one with secrets only its holder.
      return build.secretIds.length > 0 && gone ? 'secrets-lost' : 'held';
    default:
      return 'held';
  }
}
