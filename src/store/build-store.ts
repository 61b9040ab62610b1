// Builds: one record per build. The queue order is the insertion order (`seq`).

export type BuildStatus = 'queued' | 'building' | 'pushing' | 'baking' | 'ready' | 'failed' | 'cancelled';

export const TERMINAL_BUILD_STATUSES: readonly BuildStatus[] = ['ready', 'failed', 'cancelled'];

export interface BuildCacheUse {
  totalSteps: number;
  cachedSteps: number;
}

/** A base image the build took from this registry: kept alive while the build runs. */
export interface BuildBaseImage {
  ref: string;
  repo: string;
  digest: string;
}

export interface BuildRecord {
  id: string;
  /** Position in submission order; the queue is FIFO on it. */
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
  error: string | null;
  /** `buildah 1.28.2`, once known. */
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
  createdAt: number;
  startedAt: number | null;
  pushingAt: number | null;
  bakingAt: number | null;
  finishedAt: number | null;
}

export type NewBuild = Pick<
  BuildRecord,
  'id' | 'tenant' | 'requestedBy' | 'admin' | 'globalKey' | 'buildArgs' | 'platform' | 'timeoutSeconds' | 'dockerfile' | 'sourceSha256'
>;

export type BuildPatch = Partial<Omit<BuildRecord, 'id' | 'seq' | 'createdAt'>>;

export interface BuildStore {
  create(build: NewBuild): BuildRecord;
  get(id: string): BuildRecord | null;
  /** Newest first. */
  list(): BuildRecord[];
  /** Builds in any of `statuses`, oldest first. */
  withStatus(statuses: readonly BuildStatus[]): BuildRecord[];
  /** Applies `patch` when the build's status is one of `from` (any status when omitted); null when it was not. */
  update(id: string, patch: BuildPatch, from?: readonly BuildStatus[]): BuildRecord | null;
  /** The tenant that owns a build, for the auth policy. */
  ownerOf(id: string): string | null;
}
