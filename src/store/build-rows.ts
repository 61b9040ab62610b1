// Build rows as both SQL backends keep them: the fields queries filter on as
// columns (status, owner, times), the rest as one JSON text.
import type { BuildPatch, BuildRecord, BuildStatus, NewBuild } from './build-store.js';

export interface BuildRow {
  seq: number;
  id: string;
  status: BuildStatus;
  tenant: string | null;
  created_at: number;
  finished_at: number | null;
  files_removed_at: number | null;
  /** Added by schema step 6 (build leases); null on older rows. */
  runner: string | null;
  lease_until: number | null;
  data: string;
}

export type BuildData = Omit<BuildRecord, 'seq' | 'id' | 'status' | 'tenant' | 'createdAt' | 'finishedAt' | 'filesRemovedAt' | 'runner' | 'leaseUntil'>;

/** The JSON part of a new build: what it was given, and empty results. */
export function initialBuildData(build: NewBuild): BuildData {
  const { id: _id, tenant: _tenant, lease: _lease, ...rest } = build;
  return {
    ...rest,
    buildArgs: { ...rest.buildArgs },
    baseRefs: rest.baseRefs.map((r) => ({ ...r })),
    secretIds: [...rest.secretIds],
    error: null,
    builder: null,
    imageName: null,
    imageDigest: null,
    diskStatus: null,
    diskSize: null,
    cacheImports: [],
    cacheExport: null,
    cacheUse: null,
    baseImages: [],
    provenance: null,
    tokenJti: null,
    startedAt: null,
    pushingAt: null,
    bakingAt: null,
  };
}

/** `current` with `patch` applied, split into columns and JSON. */
export function patchedBuild(current: BuildRecord, patch: BuildPatch): { next: BuildRecord; data: string } {
  const next: BuildRecord = {
    ...current,
    ...patch,
    id: current.id,
    seq: current.seq,
    tenant: current.tenant,
    createdAt: current.createdAt,
    runner: current.runner,
    leaseUntil: current.leaseUntil,
  };
  const { seq: _seq, id: _id, status: _status, tenant: _tenant, createdAt: _createdAt, finishedAt: _finishedAt, filesRemovedAt: _removed, runner: _runner, leaseUntil: _lease, ...data } = next;
  return { next, data: JSON.stringify(data satisfies BuildData) };
}

export function buildFromRow(row: BuildRow): BuildRecord {
  // Rows written before these fields existed lack them; finishedAt was kept in the JSON then (SQLite migration 2 copied it out).
  const data = JSON.parse(row.data) as Omit<BuildData, 'baseRefs' | 'secretIds' | 'tokenJti'> &
    Partial<Pick<BuildData, 'baseRefs' | 'secretIds' | 'tokenJti'>> & { finishedAt?: number | null };
  const { finishedAt: legacyFinishedAt, baseRefs, secretIds, tokenJti, ...rest } = data;
  return {
    ...rest,
    tokenJti: tokenJti ?? null,
    baseRefs: baseRefs ?? [],
    secretIds: secretIds ?? [],
    seq: row.seq,
    id: row.id,
    status: row.status,
    tenant: row.tenant,
    createdAt: row.created_at,
    finishedAt: row.finished_at ?? legacyFinishedAt ?? null,
    filesRemovedAt: row.files_removed_at,
    runner: row.runner ?? null,
    leaseUntil: row.lease_until ?? null,
  };
}
