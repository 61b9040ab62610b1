// What a build was made from: the uploaded source's hash, the dependency
// lockfiles in it, the base images (with the digests the caller resolved),
// the builder and its version, and the cache refs the plan read and wrote.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { tryParseDigest } from '../oci/digest.js';
import type { BuildPlan } from './plan.js';

export const LOCKFILE_NAMES: readonly string[] = [
  'package-lock.json',
  'yarn.lock',
  'pnpm-lock.yaml',
  'requirements.txt',
  'poetry.lock',
  'Pipfile.lock',
  'go.sum',
  'Cargo.lock',
];

// Dependencies' own lockfiles and VCS data say nothing about this build's inputs.
const SKIPPED_DIRS = new Set(['.git', 'node_modules']);
const MAX_VISITED = 100_000;

export interface LockfileHash {
  /** Relative to the source root, POSIX separators. */
  path: string;
  sha256: string;
}

export interface BaseImage {
  ref: string;
  /** Manifest digest the ref resolved to; null when it could not be resolved. */
  digest: string | null;
}

export interface Provenance {
  source: { sha256: string };
  lockfiles: LockfileHash[];
  baseImages: BaseImage[];
  builder: { name: string; version: string };
  cache: { imported: string[]; exported: string | null };
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return `sha256:${hash.digest('hex')}`;
}

/** Every lockfile in the source tree (symlinks not followed), sorted by path. */
export async function findLockfiles(root: string): Promise<LockfileHash[]> {
  const found: string[] = [];
  const pending = [''];
  let visited = 0;
  while (pending.length > 0 && visited < MAX_VISITED) {
    const dir = pending.pop()!;
    for (const entry of await readdir(path.join(root, dir), { withFileTypes: true })) {
      visited += 1;
      const rel = dir === '' ? entry.name : `${dir}/${entry.name}`;
      if (entry.isDirectory() && !SKIPPED_DIRS.has(entry.name)) pending.push(rel);
      else if (entry.isFile() && LOCKFILE_NAMES.includes(entry.name)) found.push(rel);
    }
  }
  found.sort();
  return Promise.all(found.map(async (rel) => ({ path: rel, sha256: await sha256File(path.join(root, rel)) })));
}

/** The digest a ref pins itself to (`name@sha256:…`), if any. Pure. */
export function pinnedDigest(ref: string): string | null {
  const at = ref.lastIndexOf('@');
  return at === -1 ? null : tryParseDigest(ref.slice(at + 1))?.digest ?? null;
}

export interface ProvenanceInput {
  sourceSha256: string;
  lockfiles: LockfileHash[];
  /** From baseImagesOf(). */
  baseImageRefs: string[];
  /** What the caller resolved each ref to; refs pinned by digest need no entry. */
  resolvedDigests: ReadonlyMap<string, string>;
  builder: { name: string; version: string };
  plan: BuildPlan;
}

/** Assembles the provenance record. Pure. */
export function buildProvenance(input: ProvenanceInput): Provenance {
  return {
    source: { sha256: input.sourceSha256 },
    lockfiles: input.lockfiles,
    baseImages: input.baseImageRefs.map((ref) => ({
      ref,
      digest: pinnedDigest(ref) ?? input.resolvedDigests.get(ref) ?? null,
    })),
    builder: input.builder,
    cache: { imported: input.plan.importRefs, exported: input.plan.exportRef },
  };
}
