// The builds contract: one record per build, whatever database keeps it.
// Async and free of SQL and paths, so SQLite and PostgreSQL can both stand
// behind it; every backend runs the shared contract suite
// (test/contracts/build-store.ts).

export type BuildStatus = 'queued' | 'building' | 'pushing' | 'baking' | 'ready' | 'failed' | 'cancelled';

export const TERMINAL_BUILD_STATUSES: readonly BuildStatus[] = ['ready', 'failed', 'cancelled'];

export interface BuildCacheUse {
  totalSteps: number;
  cachedSteps: number;
}

/** A FROM image in this registry, as the Dockerfile names it (checked at submission: the submitter may pull it). */
export interface BuildBaseRef {
  /** The FROM ref as written (after build-arg expansion). */
  ref: string;
  repo: string;
  /** Tag or digest. */
  reference: string;
}

/** A base image the build took from this registry: kept alive while the build runs. */
export interface BuildBaseImage {
  ref: string;
  repo: string;
  digest: string;
}

export interface BuildRecord {
  id: string;
  /** Position in submission order. */
  seq: number;
  status: BuildStatus;
  /** The tenant the build runs for, who owns `builds/<id>`; null for admin builds of a caller without one. */
  tenant: string | null;
  /** Subject of the credential that submitted it. */
  requestedBy: string;
  /** An admin build fills the global cache instead of a tenant's. */
  admin: boolean;
  globalKey: string | null;
  buildArgs: Record<string, string>;
  platform: string | null;
  timeoutSeconds: number;
  /** Dockerfile text sent with the request; null when the source's own is used. */
  dockerfile: string | null;
  /** `sha256:` of the source archive exactly as uploaded. */
  sourceSha256: string;
  /** FROM images in this registry the submitter was checked to be allowed to pull; their repos are the build token's `pullRepos`. */
  baseRefs: BuildBaseRef[];
  /** Ids of the build secrets it was given (their values are never stored). */
  secretIds: string[];
  error: string | null;
  /** `buildkit v0.20.2`, once known. */
  builder: string | null;
  /** `R/builds/<id>`, once planned. */
  imageName: string | null;
  imageDigest: string | null;
  diskStatus: 'pending' | 'baking' | 'ready' | 'failed' | null;
  diskSize: number | null;
  cacheImports: string[];
  cacheExport: string | null;
  cacheUse: BuildCacheUse | null;
  baseImages: BuildBaseImage[];
  /** The provenance record, as the builds module assembles it. */
  provenance: unknown;
  /** The id (jti) of the build's token once issued, so that a server ending the build for a gone runner can revoke it. */
  tokenJti: string | null;
  createdAt: number;
  startedAt: number | null;
  pushingAt: number | null;
  bakingAt: number | null;
  finishedAt: number | null;
  /** When retention removed the build's files (source, log, result); null while they are kept. */
  filesRemovedAt: number | null;
  /**
   * The server holding the build (`host:pid:nonce`, src/jobs/worker-id.ts):
   * the one running it, or, for a queued build with secrets, the one that holds
   * them in memory; null: none (a queued build without secrets, or a row from
   * before leases). Kept after the build leaves building/pushing, as a record.
   */
  runner: string | null;
  /** Until when (ms) the runner's hold lasts without a renewal; null without a runner. */
  leaseUntil: number | null;
}

/** A runner's hold on a build. */
export interface BuildLease {
  runner: string;
  leaseUntil: number;
}

/** Statuses in which a runner's lease counts: queued (held only for its secrets), building, pushing. */
export const LEASED_BUILD_STATUSES: readonly BuildStatus[] = ['queued', 'building', 'pushing'];

export type NewBuild = Pick<
  BuildRecord,
  'id' | 'tenant' | 'requestedBy' | 'admin' | 'globalKey' | 'buildArgs' | 'platform' | 'timeoutSeconds' | 'dockerfile' | 'sourceSha256' | 'baseRefs' | 'secretIds'
> & {
  /** Held from the start (a build with secrets, by the server that took them); absent: no runner. */
  lease?: BuildLease;
};

/**
 * A build's owner never changes after creation (the auth policy may keep the
 * answer), so a patch cannot name one; the lease changes only through
 * claim() and renew().
 */
export type BuildPatch = Partial<Omit<BuildRecord, 'id' | 'seq' | 'createdAt' | 'tenant' | 'runner' | 'leaseUntil'>>;

/** The lease of a build as some reader saw it, for takeOver(). */
export interface SeenLease {
  runner: string | null;
  leaseUntil: number | null;
}

export interface BuildListQuery {
  /** Only the builds this tenant owns; absent: every build (admins). */
  tenant?: string;
  status?: BuildStatus;
  /** The page after this build id, in listing order; an unknown id gives an empty page. */
  after?: string;
  limit: number;
}

export interface BuildStore {
  create(build: NewBuild): Promise<BuildRecord>;
  get(id: string): Promise<BuildRecord | null>;
  /** Newest first, filtered and paged in the database. */
  list(query: BuildListQuery): Promise<BuildRecord[]>;
  /** Builds in any of `statuses`, oldest first (the queue, the builds in flight). */
  withStatus(statuses: readonly BuildStatus[]): Promise<BuildRecord[]>;
  /** Applies `patch` when the build's status is one of `from` (any status when omitted), atomically; null when it was not. */
  update(id: string, patch: BuildPatch, from?: readonly BuildStatus[]): Promise<BuildRecord | null>;
  /** The tenant that owns a build (null: unknown, or an admin build without a tenant). */
  ownerOf(id: string): Promise<string | null>;
  /** Ended builds whose files are still kept and that ended before `cutoff` (ms), oldest end first. */
  endedBefore(cutoff: number, limit: number): Promise<BuildRecord[]>;
  /**
   * Takes a queued build for `lease.runner`, atomically: applies `patch` and the
   * lease when the build is still queued and held by no other runner; null when
   * it was not (another server took it, or holds its secrets). Of several
   * servers claiming one build, exactly one wins.
   */
  claim(id: string, lease: BuildLease, patch: BuildPatch): Promise<BuildRecord | null>;
  /**
   * Moves the lease end of those of `ids` that `runner` still holds in a
   * leased status (LEASED_BUILD_STATUSES) to `leaseUntil`; resolves with their
   * ids. A build missing from the answer is no longer this runner's: it ended,
   * was cancelled, or another server judged its runner gone.
   */
  renew(runner: string, ids: readonly string[], leaseUntil: number): Promise<string[]>;
  /**
   * Applies `patch` when the build's status is one of `from` and its lease is
   * still exactly `seen` (runner and lease end as the caller read them),
   * atomically; null when it was not. A server that judged a runner gone ends
   * the build only if no renewal came meanwhile.
   */
  takeOver(id: string, seen: SeenLease, patch: BuildPatch, from: readonly BuildStatus[]): Promise<BuildRecord | null>;
}
