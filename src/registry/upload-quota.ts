// How many uploads a tenant (and the registry) may have: open sessions,
// counted by the metadata store, and bodies streaming at once, counted here
// (per API process). Refusals are 429 with Retry-After and name the setting.
import type { Principal } from '../auth/authorizer.js';
import { RegistryError } from './errors.js';

export interface Limit {
  value: number;
  /** The setting that changes it, e.g. KILN_MAX_UPLOAD_SESSIONS_PER_TENANT. */
  setting: string;
}

export interface UploadLimits {
  sessionsPerOwner: Limit;
  sessions: Limit;
  concurrentPerOwner: Limit;
  concurrent: Limit;
}

/** Generous enough for any real client; tests and operators lower them. */
export const UNLIMITED_UPLOADS: UploadLimits = {
  sessionsPerOwner: { value: Number.MAX_SAFE_INTEGER, setting: 'KILN_MAX_UPLOAD_SESSIONS_PER_TENANT' },
  sessions: { value: Number.MAX_SAFE_INTEGER, setting: 'KILN_MAX_UPLOAD_SESSIONS' },
  concurrentPerOwner: { value: Number.MAX_SAFE_INTEGER, setting: 'KILN_MAX_CONCURRENT_UPLOADS_PER_TENANT' },
  concurrent: { value: Number.MAX_SAFE_INTEGER, setting: 'KILN_MAX_CONCURRENT_UPLOADS' },
};

/** Sessions free up as pushes finish; a client that waits this long likely finds room. */
export const SESSION_RETRY_AFTER_SECONDS = 10;
export const CONCURRENT_RETRY_AFTER_SECONDS = 2;

/**
 * Whose quota an upload counts against: the caller's tenant (a build token
 * counts for its tenant), an admin without one as `admin`; with auth off
 * (every caller is the anonymous admin) the repository's first component.
 * Pure.
 */
export function uploadOwner(principal: Principal, repo: string, authEnabled: boolean): string {
  if (!authEnabled) return repo.split('/')[0]!;
  return principal.tenant ?? principal.subject;
}

export function tooManySessions(owner: string, limit: 'perOwner' | 'total', open: number, limits: UploadLimits): RegistryError {
  const which = limit === 'perOwner' ? limits.sessionsPerOwner : limits.sessions;
  const whose = limit === 'perOwner' ? `${owner} has` : 'the registry has';
  return tooMany(
    `${whose} ${open} upload sessions open, the limit (${which.setting}=${which.value}); finish or cancel uploads (DELETE the upload URL) before starting more`,
    SESSION_RETRY_AFTER_SECONDS,
  );
}

/** Counts upload bodies in flight, per owner and in all. */
export class UploadSlots {
  private total = 0;
  private readonly perOwner = new Map<string, number>();

  constructor(
    private readonly limits: UploadLimits,
    private readonly onLimitHit: (setting: string) => void = () => {},
  ) {}

  get inFlight(): number {
    return this.total;
  }

  /** Takes a slot or throws 429; call the returned function exactly once when the body is done. */
  acquire(owner: string): () => void {
    const mine = this.perOwner.get(owner) ?? 0;
    const { concurrentPerOwner, concurrent } = this.limits;
    if (mine >= concurrentPerOwner.value) {
      this.onLimitHit(concurrentPerOwner.setting);
      throw tooMany(`${owner} is already streaming ${mine} uploads, the limit (${concurrentPerOwner.setting}=${concurrentPerOwner.value})`, CONCURRENT_RETRY_AFTER_SECONDS);
    }
    if (this.total >= concurrent.value) {
      this.onLimitHit(concurrent.setting);
      throw tooMany(`the registry is already receiving ${this.total} uploads, the limit (${concurrent.setting}=${concurrent.value})`, CONCURRENT_RETRY_AFTER_SECONDS);
    }
    this.total++;
    this.perOwner.set(owner, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.perOwner.get(owner) ?? 1) - 1;
      if (left === 0) this.perOwner.delete(owner);
      else this.perOwner.set(owner, left);
    };
  }
}

function tooMany(message: string, retryAfterSeconds: number): RegistryError {
  return new RegistryError('TOO_MANY_REQUESTS', `too many uploads: ${message}`, undefined, { 'retry-after': String(retryAfterSeconds) });
}
