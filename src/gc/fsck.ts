// `kiln fsck`: checks a data directory against itself.
//
// - every blob file hashes to its name, and its size matches its row;
// - every blob row has its file; every repo link has its blob row;
// - every manifest parses, and everything it references exists (children,
//   config, layers, index blob entries);
// - every tag points at a manifest of its repo;
// - every finished bake has its disk and a config.json that matches it;
// - upload sessions and upload files agree; the database's own integrity check.
//
// A corrupt blob is moved to quarantine/ and its row is deleted, so it reads
// as missing everywhere: the registry answers BLOB_UNKNOWN (never a corrupt
// byte), HEAD says 404, mounts fall back to uploads, and the next push of the
// blob repairs every repo that links it. Errors are problems with data that
// should be there; warnings are leftovers `kiln gc` reclaims.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseManifest, type Manifest } from '../oci/manifest.js';
import { isNonDistributable } from '../oci/media-types.js';
import type { DataDir } from '../store/data-dir.js';
import type { GcStore } from '../store/gc-store.js';
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
  durationMs: number;
  checked: { blobFiles: number; bytesHashed: number; manifests: number; tags: number; repoLinks: number; disks: number; uploads: number };
  quarantined: { digest: string; movedTo: string }[];
  problems: FsckProblem[];
}

export interface FsckOptions {
  dirs: DataDir;
  store: GcStore;
  /** Move corrupt blobs aside (default true); false only reports. */
  quarantine?: boolean;
  /** Files hashed at once. */
  concurrency?: number;
}

export async function fsck(options: FsckOptions): Promise<FsckReport> {
  const started = Date.now();
  const { dirs, store } = options;
  const quarantine = options.quarantine ?? true;
  const report: FsckReport = {
    ok: true,
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

  // ---- blob files ------------------------------------------------------------
  const files = new Map<string, number>(); // digest -> size, of good files
  const corrupt = new Set<string>();
  const toHash: { digest: string; algorithm: string; hex: string; file: string }[] = [];
  for (const algorithm of await readdirOrEmpty(dirs.blobsRoot)) {
    const algDir = path.join(dirs.blobsRoot, algorithm);
    for (const fan of await readdirOrEmpty(algDir)) {
      for (const hex of await readdirOrEmpty(path.join(algDir, fan))) {
        const file = path.join(algDir, fan, hex);
        const digest = `${algorithm}:${hex}`;
        let expected: string | null = null;
        try {
          expected = dirs.blobPath(digest);
        } catch {
          // not a digest name
        }
        if (expected !== file) {
          problem('warning', 'stray-file', file, 'a file in blobs/ whose name is not a digest in its fan-out directory; remove it');
          continue;
        }
        toHash.push({ digest, algorithm, hex, file });
      }
    }
  }
  await forEachLimited(toHash, options.concurrency ?? 4, async ({ digest, algorithm, hex, file }) => {
    report.checked.blobFiles++;
    const st = await stat(file).catch(() => null);
    if (!st?.isFile()) {
      problem('error', 'stray-file', file, 'not a regular file');
      return;
    }
    const actual = await hashFile(file, algorithm);
    report.checked.bytesHashed += st.size;
    const rowSize = blobRows.get(digest);
    if (actual !== hex) {
      corrupt.add(digest);
      problem('error', 'corrupt-blob', digest, `content hashes to ${algorithm}:${actual}${quarantine ? '; moved to quarantine, push it again' : ''}`);
      return;
    }
    files.set(digest, st.size);
    if (rowSize === undefined) {
      problem('warning', 'unreferenced-blob', digest, `blob file of ${st.size} bytes with no row; \`kiln gc\` reclaims it`);
    } else if (rowSize !== st.size) {
      problem('error', 'blob-size', digest, `the database says ${rowSize} bytes but the (correct) file has ${st.size}`);
    }
  });
  if (quarantine && corrupt.size > 0) {
    for (const digest of corrupt) {
      const target = dirs.quarantinePath(digest);
      await mkdir(path.dirname(target), { recursive: true });
      await rename(dirs.blobPath(digest), target);
      report.quarantined.push({ digest, movedTo: target });
    }
    await store.deleteBlobRows([...corrupt]);
  }

  for (const [digest] of blobRows) {
    if (!files.has(digest) && !corrupt.has(digest)) {
      problem('error', 'missing-blob', digest, 'the database knows this blob but its file is missing; push it again');
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
      const bytes = await readFile(dirs.blobPath(m.digest));
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
  const imageRows = new Set(snap.images.map((i) => i.digest));
  for (const image of snap.images) {
    const dir = dirs.imageDir(image.digest);
    const status = await store.bakeStatus(image.digest);
    const exists = await stat(dir).then((s) => s.isDirectory(), () => false);
    if (!exists) {
      if (status === 'done') problem('error', 'missing-disk', image.digest, `the bake finished but ${dir} is missing; bake it again (POST /api/v1/images/bake)`);
      continue;
    }
    report.checked.disks++;
    const issue = await checkDisk(dir, await store.imageDiskSize(image.digest), parsed.get(image.digest));
    if (issue) problem('error', 'bad-disk', image.digest, `${issue}; delete and bake it again`);
  }
  const bakeActive = async (digest: string) => ['queued', 'running'].includes((await store.bakeStatus(digest)) ?? '');
  for (const name of await readdirOrEmpty(dirs.imagesRoot)) {
    const entry = dirs.imageEntryDigest(name);
    if (!entry) {
      problem('warning', 'stray-file', path.join(dirs.imagesRoot, name), 'not a baked image directory');
    } else if (entry.temporary) {
      if (!(await bakeActive(entry.digest))) problem('warning', 'unfinished-bake', path.join(dirs.imagesRoot, name), 'left by a bake that did not finish; `kiln gc` removes it');
    } else if (!imageRows.has(entry.digest) && !(await bakeActive(entry.digest))) {
      problem('warning', 'unreferenced-disk', entry.digest, 'a baked disk no image record names; `kiln gc` removes it');
    }
  }

  // ---- uploads ---------------------------------------------------------------------
  const sessions = new Set((await store.uploads()).map((u) => u.id));
  const uploadFiles = new Set(await readdirOrEmpty(dirs.uploadsRoot));
  for (const id of sessions) {
    report.checked.uploads++;
    if (!uploadFiles.has(id)) problem('warning', 'upload-without-file', id, 'an upload session whose data file is gone; the client must start again');
  }
  for (const name of uploadFiles) {
    if (!sessions.has(name)) problem('warning', 'orphan-upload', path.join(dirs.uploadsRoot, name), 'an upload file without a session; `kiln gc` removes it');
  }

  report.ok = !report.problems.some((p) => p.severity === 'error');
  report.durationMs = Date.now() - started;
  return report;
}

/** What is wrong with a baked image directory, or null. */
async function checkDisk(dir: string, recordedSize: number | null, manifest: Manifest | undefined): Promise<string | null> {
  let doc: { schemaVersion?: unknown; disk?: { file?: unknown; sizeBytes?: unknown }; configDigest?: unknown; layers?: unknown };
  try {
    doc = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'));
  } catch (err) {
    return `config.json is missing or not JSON (${(err as Error).message})`;
  }
  if (typeof doc !== 'object' || doc === null || doc.schemaVersion !== 1) return 'config.json is not a schemaVersion 1 run config';
  const file = doc.disk?.file;
  if (typeof file !== 'string' || file.includes('/') || file.startsWith('.')) return 'config.json does not name its disk file';
  const st = await stat(path.join(dir, file)).catch(() => null);
  if (!st?.isFile()) return `the disk ${file} is missing`;
  if (typeof doc.disk?.sizeBytes === 'number' && doc.disk.sizeBytes !== st.size) return `the disk is ${st.size} bytes but config.json says ${doc.disk.sizeBytes}`;
  if (recordedSize !== null && recordedSize !== st.size) return `the disk is ${st.size} bytes but the image record says ${recordedSize}`;
  if (manifest?.kind === 'image') {
    if (doc.configDigest !== manifest.config.digest) return `config.json names config ${String(doc.configDigest)} but the manifest's is ${manifest.config.digest}`;
    const layers = manifest.layers.map((l) => l.digest);
    if (!Array.isArray(doc.layers) || doc.layers.join(',') !== layers.join(',')) return 'config.json lists other layers than the manifest';
  }
  return null;
}

async function hashFile(file: string, algorithm: string): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Human-readable lines for the CLI. */
export function formatFsckReport(report: FsckReport): string {
  const lines = report.problems.map((p) => `${p.severity === 'error' ? 'ERROR' : 'warn '} ${p.kind} ${p.subject}: ${p.message}`);
  const c = report.checked;
  const errors = report.problems.filter((p) => p.severity === 'error').length;
  const warnings = report.problems.length - errors;
  lines.push(
    `checked ${c.blobFiles} blob files (${formatBytes(c.bytesHashed)} hashed), ${c.manifests} manifests, ${c.tags} tags, ${c.repoLinks} repo links, ${c.disks} disks, ${c.uploads} uploads in ${(report.durationMs / 1000).toFixed(1)} s`,
  );
  if (report.quarantined.length > 0) lines.push(`quarantined ${report.quarantined.length} corrupt blob(s) under ${path.dirname(path.dirname(report.quarantined[0]!.movedTo))}`);
  lines.push(report.ok ? `clean${warnings > 0 ? ` (${warnings} warning(s): leftovers \`kiln gc\` reclaims)` : ''}` : `${errors} error(s), ${warnings} warning(s)`);
  return `${lines.join('\n')}\n`;
}

