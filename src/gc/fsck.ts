// `kiln fsck`: checks a data directory against itself.
//
// - every stored blob is listed with the size its row says, and (deep, the
//   default on the filesystem; `--deep` on S3) hashes to its digest;
// - every blob row has its bytes; every repo link has its blob row;
// - every manifest parses, and everything it references exists (children,
//   config, layers, index blob entries);
// - every tag points at a manifest of its repo;
// - every finished bake has its disk and a config.json that matches it;
// - upload sessions and stored upload data agree; the database's own integrity check.
//
// Blobs are read through the BlobStore and disks through the FileStore, so
// the same checks run on the data directory and on S3. A corrupt blob is moved to quarantine/ and its row is deleted, so it reads
// as missing everywhere: the registry answers BLOB_UNKNOWN (never a corrupt
// byte), HEAD says 404, mounts fall back to uploads, and the next push of the
// blob repairs every repo that links it. Errors are problems with data that
// should be there; warnings are leftovers `kiln gc` reclaims.
import { createHash } from 'node:crypto';
import path from 'node:path';
import { parseDigest } from '../oci/digest.js';
import { parseManifest, type Manifest } from '../oci/manifest.js';
import { isNonDistributable } from '../oci/media-types.js';
import type { DataDir } from '../store/data-dir.js';
import { fileKeys, type FileStore } from '../store/file-store.js';
import { FsFileStore } from '../store/fs/file-store.js';
import type { GcStore } from '../store/gc-store.js';
import type { BlobStore, StoredBlob } from '../store/types.js';
import { formatBytes } from '../util/format-bytes.js';

export type Severity = 'error' | 'warning';

export interface FsckProblem {
  severity: Severity;
  kind: string;
  subject: string;
  message: string;
}

export interface FsckReport {
  ok: boolean;
  /** Every blob was re-hashed (else only listed and its size checked). */
  deep: boolean;
  durationMs: number;
  checked: { blobFiles: number; bytesHashed: number; manifests: number; tags: number; repoLinks: number; disks: number; uploads: number };
  quarantined: { digest: string; movedTo: string }[];
  problems: FsckProblem[];
}

export interface FsckOptions {
  dirs: DataDir;
  store: GcStore;
  blobs: BlobStore;
  /** Baked disks (store/open.ts `files`); the data directory's when not given. */
  files?: FileStore;
  /** Re-hash every blob (default true); false checks that every blob is listed with the size its row says. */
  deep?: boolean;
  /** Move corrupt blobs aside (default true); false only reports. */
  quarantine?: boolean;
  /** Files hashed at once. */
  concurrency?: number;
}

export async function fsck(options: FsckOptions): Promise<FsckReport> {
  const started = Date.now();
  const { dirs, store, blobs } = options;
  const fileStore = options.files ?? new FsFileStore(dirs.root, { durable: false });
  const quarantine = options.quarantine ?? true;
  const deep = options.deep ?? true;
  const report: FsckReport = {
    ok: true,
    deep,
    durationMs: 0,
    checked: { blobFiles: 0, bytesHashed: 0, manifests: 0, tags: 0, repoLinks: 0, disks: 0, uploads: 0 },
    quarantined: [],
    problems: [],
  };
  const problem = (severity: Severity, kind: string, subject: string, message: string) => report.problems.push({ severity, kind, subject, message });

  for (const line of await store.integrityCheck()) problem('error', 'database', 'database', line);
  const snap = await store.read();
  const repoName = new Map(snap.repos.map((r) => [r.id, r.name]));
  const nameOf = (id: number) => repoName.get(id) ?? `#${id}`;
  const blobRows = new Map(snap.blobs.map((b) => [b.digest, b.size]));

  // ---- stored blobs ----------------------------------------------------------
  const files = new Map<string, number>(); // digest -> size, of good blobs
  const corrupt = new Set<string>();
  for await (const stray of blobs.strays()) {
    problem('warning', 'stray-file', stray, 'an entry where blobs are stored whose name is not a digest in its fan-out place; remove it');
  }
  const listed: StoredBlob[] = [];
  for await (const blob of blobs.list()) listed.push(blob);
  await forEachLimited(listed, options.concurrency ?? 4, async ({ digest, size }) => {
    report.checked.blobFiles++;
    const rowSize = blobRows.get(digest);
    if (deep) {
      const actual = await hashBlob(blobs, digest);
      if (actual === null) return; // deleted meanwhile: reported below as missing if a row wants it
      report.checked.bytesHashed += actual.size;
      if (actual.hex !== parseDigest(digest).hex || actual.size !== size) {
        corrupt.add(digest);
        const what = actual.size !== size ? `${actual.size} bytes were read where the store lists ${size}` : `content hashes to ${parseDigest(digest).algorithm}:${actual.hex}`;
        problem('error', 'corrupt-blob', digest, `${what}${quarantine ? '; moved to quarantine, push it again' : ''}`);
        return;
      }
    }
    files.set(digest, size);
    if (rowSize === undefined) {
      problem('warning', 'unreferenced-blob', digest, `blob of ${size} bytes with no row; \`kiln gc\` reclaims it`);
    } else if (rowSize !== size) {
      // Bytes that are not what the row says are as bad as corrupt ones.
      if (!deep) corrupt.add(digest);
      problem('error', 'blob-size', digest, `the database says ${rowSize} bytes but the store holds ${size}${!deep && quarantine ? '; moved to quarantine, push it again' : ''}`);
    }
  });
  if (quarantine && corrupt.size > 0) {
    for (const digest of corrupt) {
      files.delete(digest);
      report.quarantined.push({ digest, movedTo: await blobs.quarantine(digest) });
    }
    await store.deleteBlobRows([...corrupt]);
  }

  for (const [digest] of blobRows) {
    if (!files.has(digest) && !corrupt.has(digest)) {
      problem('error', 'missing-blob', digest, 'the database knows this blob but the store does not have it; push it again');
    }
  }
  const blobOk = (digest: string) => files.has(digest) && blobRows.has(digest);

  // ---- repo links ------------------------------------------------------------
  const links = new Set<string>();
  for (const l of snap.links) {
    report.checked.repoLinks++;
    links.add(`${l.repoId}\u0000${l.digest}`);
    if (!blobRows.has(l.digest) && !corrupt.has(l.digest)) {
      problem('warning', 'link-without-blob', `${nameOf(l.repoId)}@${l.digest}`, 'the repository links a blob the store does not have; push it again');
    }
  }

  // ---- manifests ---------------------------------------------------------------
  const manifestRows = new Set(snap.manifests.map((m) => `${m.repoId}\u0000${m.digest}`));
  const parsed = new Map<string, Manifest>();
  for (const m of snap.manifests) {
    report.checked.manifests++;
    const name = `${nameOf(m.repoId)}@${m.digest}`;
    if (!files.has(m.digest)) {
      if (!corrupt.has(m.digest)) problem('error', 'missing-manifest', name, 'the manifest bytes are missing; push the manifest again');
      continue;
    }
    let manifest: Manifest;
    try {
      const bytes = await blobs.readBytes(m.digest);
      if (!bytes) throw new Error('the stored manifest went missing during the check');
      if (bytes.length !== m.size) problem('error', 'manifest-size', name, `the database says ${m.size} bytes, the stored manifest has ${bytes.length}`);
      manifest = parseManifest(bytes, m.mediaType);
    } catch (err) {
      problem('error', 'bad-manifest', name, `cannot be parsed: ${(err as Error).message}`);
      continue;
    }
    parsed.set(m.digest, manifest);
    const targets =
      manifest.kind === 'index'
        ? manifest.manifests.map((d) => ({ d, what: 'child' }))
        : [{ d: manifest.config, what: 'config' }, ...manifest.layers.filter((l) => !isNonDistributable(l.mediaType)).map((d) => ({ d, what: 'layer' }))];
    for (const { d, what } of targets) {
      const asManifest = manifestRows.has(`${m.repoId}\u0000${d.digest}`) && files.has(d.digest);
      const asBlob = links.has(`${m.repoId}\u0000${d.digest}`) && blobOk(d.digest);
      if (what === 'child' ? !(asManifest || asBlob) : !asBlob) {
        problem('error', 'missing-reference', name, `its ${what} ${d.digest} is missing from ${nameOf(m.repoId)}; push it again`);
      }
    }
  }

  // ---- tags ----------------------------------------------------------------------
  for (const t of snap.tags) {
    report.checked.tags++;
    if (!manifestRows.has(`${t.repoId}\u0000${t.digest}`)) {
      problem('error', 'dangling-tag', `${nameOf(t.repoId)}:${t.name}`, `points at ${t.digest}, which is not a manifest of the repository`);
    }
  }

  // ---- baked disks -----------------------------------------------------------------
  // What the FileStore holds under images/, by image: every file of it (one listing, also on S3).
  const storedImages = new Map<string, Map<string, number>>();
  for await (const file of fileStore.list('images/')) {
    const digest = fileKeys.imageDigestOf(file.key);
    if (!digest) {
      problem('warning', 'stray-file', file.key, 'not a file of a baked image');
      continue;
    }
    const entry = storedImages.get(digest) ?? new Map<string, number>();
    entry.set(file.key.slice(fileKeys.imageDir(digest).length), file.size);
    storedImages.set(digest, entry);
  }
  const imageRows = new Set(snap.images.map((i) => i.digest));
  for (const image of snap.images) {
    const status = await store.bakeStatus(image.digest);
    const stored = storedImages.get(image.digest);
    if (!stored?.has(DISK_FILE)) {
      if (status === 'done') problem('error', 'missing-disk', image.digest, `the bake finished but its disk ${fileKeys.imageDisk(image.digest)} is missing; bake it again (POST /api/v1/images/bake)`);
      continue;
    }
    report.checked.disks++;
    const issue = await checkDisk(fileStore, image.digest, stored, await store.imageDiskSize(image.digest), parsed.get(image.digest));
    if (issue) problem('error', 'bad-disk', image.digest, `${issue}; delete and bake it again`);
  }
  const bakeActive = async (digest: string) => ['queued', 'running'].includes((await store.bakeStatus(digest)) ?? '');
  for (const digest of storedImages.keys()) {
    if (!imageRows.has(digest) && !(await bakeActive(digest))) {
      problem('warning', 'unreferenced-disk', digest, 'a baked disk no image record names; `kiln gc` removes it');
    }
  }

  // ---- uploads ---------------------------------------------------------------------
  const sessions = new Set((await store.uploads()).map((u) => u.id));
  const stored = new Set<string>();
  for await (const upload of blobs.listUploads()) stored.add(upload.id);
  for (const id of sessions) {
    report.checked.uploads++;
    if (!stored.has(id)) problem('warning', 'upload-without-file', id, 'an upload session whose stored data is gone; the client must start again');
  }
  for (const id of stored) {
    if (!sessions.has(id)) problem('warning', 'orphan-upload', id, 'upload data without a session; `kiln gc` removes it');
  }

  report.ok = !report.problems.some((p) => p.severity === 'error');
  report.durationMs = Date.now() - started;
  return report;
}

/** The disk's name in an image's directory (config.json names it too). */
const DISK_FILE = fileKeys.imageDisk(`sha256:${'0'.repeat(64)}`).split('/').pop()!;

/** What is wrong with a baked image's files (`stored`: name → size), or null. */
async function checkDisk(files: FileStore, digest: string, stored: Map<string, number>, recordedSize: number | null, manifest: Manifest | undefined): Promise<string | null> {
  let doc: { schemaVersion?: unknown; disk?: { file?: unknown; sizeBytes?: unknown }; configDigest?: unknown; layers?: unknown };
  try {
    const bytes = await files.readBytes(fileKeys.imageConfig(digest));
    if (!bytes) return 'config.json is missing';
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    return `config.json is missing or not JSON (${(err as Error).message})`;
  }
  if (typeof doc !== 'object' || doc === null || doc.schemaVersion !== 1) return 'config.json is not a schemaVersion 1 run config';
  const file = doc.disk?.file;
  if (typeof file !== 'string' || file.includes('/') || file.startsWith('.')) return 'config.json does not name its disk file';
  const size = stored.get(file);
  if (size === undefined) return `the disk ${file} is missing`;
  if (typeof doc.disk?.sizeBytes === 'number' && doc.disk.sizeBytes !== size) return `the disk is ${size} bytes but config.json says ${doc.disk.sizeBytes}`;
  if (recordedSize !== null && recordedSize !== size) return `the disk is ${size} bytes but the image record says ${recordedSize}`;
  if (manifest?.kind === 'image') {
    if (doc.configDigest !== manifest.config.digest) return `config.json names config ${String(doc.configDigest)} but the manifest's is ${manifest.config.digest}`;
    const layers = manifest.layers.map((l) => l.digest);
    if (!Array.isArray(doc.layers) || doc.layers.join(',') !== layers.join(',')) return 'config.json lists other layers than the manifest';
  }
  return null;
}

/** Hex digest (in the blob's own algorithm) and length of what the store serves for `digest`; null when it is gone. */
async function hashBlob(blobs: BlobStore, digest: string): Promise<{ hex: string; size: number } | null> {
  const stream = await blobs.open(digest);
  if (!stream) return null;
  const hash = createHash(parseDigest(digest).algorithm);
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { hex: hash.digest('hex'), size };
}

async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

/** Human-readable lines for the CLI. */
export function formatFsckReport(report: FsckReport): string {
  const lines = report.problems.map((p) => `${p.severity === 'error' ? 'ERROR' : 'warn '} ${p.kind} ${p.subject}: ${p.message}`);
  const c = report.checked;
  const errors = report.problems.filter((p) => p.severity === 'error').length;
  const warnings = report.problems.length - errors;
  lines.push(
    `checked ${c.blobFiles} blobs (${report.deep ? `${formatBytes(c.bytesHashed)} hashed` : 'sizes only; --deep re-hashes them'}), ${c.manifests} manifests, ${c.tags} tags, ${c.repoLinks} repo links, ${c.disks} disks, ${c.uploads} uploads in ${(report.durationMs / 1000).toFixed(1)} s`,
  );
  if (report.quarantined.length > 0) lines.push(`quarantined ${report.quarantined.length} corrupt blob(s) under ${path.dirname(path.dirname(report.quarantined[0]!.movedTo))}`);
  lines.push(report.ok ? `clean${warnings > 0 ? ` (${warnings} warning(s): leftovers \`kiln gc\` reclaims)` : ''}` : `${errors} error(s), ${warnings} warning(s)`);
  return `${lines.join('\n')}\n`;
}

