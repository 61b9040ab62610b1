// Who builds next, and what a caller may queue: the build queue's rules. Pure.
//
// - Buckets: each tenant is one bucket; admin builds share one bucket of their own.
// - Start: a queued build may start while fewer than `slots` builds run in all
//   and fewer than `runningPerTenant` of its bucket run. Among those that may,
//   the one whose bucket has the fewest builds running goes first, and within a
//   bucket the oldest: tenants take turns, so one tenant's long queue never
//   holds another's build back for more than one turn.
// - Order: a queued build's position is where that rule would put it if no
//   build ended meanwhile (the per-tenant cap aside, which only delays).
// - Admission: a tenant may have at most `queuedPerTenant` builds waiting.
// - Timeout: tenants may ask for up to `tenantMaxSeconds`, admins up to
//   `adminMaxSeconds`; no request means `defaultSeconds`.

export interface FairnessLimits {
  /** Builds running at once, in all (KILN_MAX_CONCURRENT_BUILDS). */
  slots: number;
  /** Builds of one bucket running at once (KILN_BUILDS_PER_TENANT). */
  runningPerTenant: number;
  /** Builds of one tenant waiting in the queue (KILN_BUILD_QUEUE_PER_TENANT). */
  queuedPerTenant: number;
}

export interface QueuedBuild {
  id: string;
  /** The fairness bucket: see bucketOf(). */
  bucket: string;
  /** Submission order. */
  seq: number;
}

export interface TimeoutLimits {
  defaultSeconds: number;
  /** KILN_BUILD_MAX_TIMEOUT_SECONDS: the most a tenant may ask for. */
  tenantMaxSeconds: number;
  /** KILN_BUILD_ADMIN_MAX_TIMEOUT_SECONDS: the most an admin may ask for. */
  adminMaxSeconds: number;
}

/** The bucket of a build: admin builds share one, which no tenant name can equal (tenant names have no parentheses). */
export function bucketOf(build: { tenant: string | null; admin: boolean }): string {
  return build.admin || build.tenant === null ? '(admin)' : build.tenant;
}

/**
 * The queued builds to start now, in the order to start them. `running` holds
 * the buckets of the builds running (for the per-tenant limit: on a shared
 * store, those of every server); `slotsUsed` is how many of `limits.slots`
 * are taken (this server's builds; by default all of `running`).
 */
export function buildsToStart(queued: readonly QueuedBuild[], running: readonly string[], limits: FairnessLimits, slotsUsed: number = running.length): string[] {
  const counts = countBuckets(running);
  let total = slotsUsed;
  const waiting = [...queued].sort((a, b) => a.seq - b.seq);
  const started: string[] = [];
  while (total < limits.slots) {
    const next = pickNext(waiting, counts, (bucket) => (counts.get(bucket) ?? 0) < limits.runningPerTenant);
    if (next === null) break;
    started.push(next.id);
    counts.set(next.bucket, (counts.get(next.bucket) ?? 0) + 1);
    waiting.splice(waiting.indexOf(next), 1);
    total += 1;
  }
  return started;
}

/** The ids of `queued` in the order they will start if nothing ends meanwhile (position = index + 1). */
export function queueOrder(queued: readonly QueuedBuild[], running: readonly string[]): string[] {
  const counts = countBuckets(running);
  const waiting = [...queued].sort((a, b) => a.seq - b.seq);
  const order: string[] = [];
  while (waiting.length > 0) {
    const next = pickNext(waiting, counts, () => true)!;
    order.push(next.id);
    counts.set(next.bucket, (counts.get(next.bucket) ?? 0) + 1);
    waiting.splice(waiting.indexOf(next), 1);
  }
  return order;
}

/** Why a tenant may not queue another build now (it has `waiting` queued), or null when it may. */
export function admissionProblem(tenantWaiting: number, limits: FairnessLimits): string | null {
  if (tenantWaiting < limits.queuedPerTenant) return null;
  return `you already have ${tenantWaiting} builds waiting, the most one tenant may queue (KILN_BUILD_QUEUE_PER_TENANT=${limits.queuedPerTenant}); wait for one to start or cancel one`;
}

/** The timeout a build gets, or a message saying why the request is refused. */
export function buildTimeout(requested: number | null | undefined, admin: boolean, limits: TimeoutLimits): { seconds: number } | { problem: string } {
  const max = admin ? limits.adminMaxSeconds : limits.tenantMaxSeconds;
  const setting = admin ? 'KILN_BUILD_ADMIN_MAX_TIMEOUT_SECONDS' : 'KILN_BUILD_MAX_TIMEOUT_SECONDS';
  const seconds = requested ?? Math.min(limits.defaultSeconds, max);
  if (!Number.isInteger(seconds) || seconds <= 0) return { problem: `timeout_seconds must be a whole number from 1 to ${max}` };
  if (seconds > max) return { problem: `timeout_seconds ${seconds} is above the ${max} s ${admin ? 'admin' : 'tenant'} builds may ask for (${setting})` };
  return { seconds };
}

function countBuckets(running: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const bucket of running) counts.set(bucket, (counts.get(bucket) ?? 0) + 1);
  return counts;
}

/** The oldest build of the least busy bucket among those `allowed`; `waiting` is sorted by seq. */
function pickNext(waiting: readonly QueuedBuild[], counts: ReadonlyMap<string, number>, allowed: (bucket: string) => boolean): QueuedBuild | null {
  let best: QueuedBuild | null = null;
  let bestCount = Infinity;
  for (const build of waiting) {
    if (!allowed(build.bucket)) continue;
    const count = counts.get(build.bucket) ?? 0;
    // Strictly fewer: among equals the first seen (the oldest) stays.
    if (count < bestCount) {
      best = build;
      bestCount = count;
    }
  }
  return best;
}
