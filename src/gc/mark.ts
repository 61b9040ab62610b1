// The mark phase: from a snapshot of the metadata, which manifests, repo
// links, blobs and baked images are live, and so what is garbage. Pure (no
// I/O, no clock): the collector runs it inside the snapshot's transaction.
import { isCacheLocation } from '../oci/classify.js';
import type { GcDeletion, GcImageNameRow, GcSnapshot, GcTagRow } from '../store/gc-store.js';

export interface MarkOptions {
  now: number;
  /** Untagged manifests, repo links and blob rows younger than this are roots. */
  graceMs: number;
  /** Cache tags not pushed or pulled for this long are removed; null keeps them. */
  cacheMaxAgeMs: number | null;
  /** Keep `cache/global/**` tags whatever their age. */
  keepGlobalCache: boolean;
  /** Digests a request is making visible right now (see DigestPins). */
  isPinned(digest: string): boolean;
  /** More manifests to keep: running builds and other hooks. */
  extraRoots: readonly { repo: string; digest: string }[];
}

export interface PlannedTag {
  repoId: number;
  repo: string;
  name: string;
  digest: string;
  lastUsed: number;
}
export interface PlannedManifest {
  repoId: number;
  repo: string;
  digest: string;
  size: number;
}
export interface PlannedLink {
  repoId: number;
  repo: string;
  digest: string;
}
export interface PlannedBlob {
  digest: string;
  size: number;
}

export interface GcPlan {
  expiredTags: PlannedTag[];
  manifests: PlannedManifest[];
  links: PlannedLink[];
  blobs: PlannedBlob[];
  repos: { id: number; name: string }[];
  images: string[];
  /** Image names whose tag no longer points where the name does, or whose manifest left the repo. */
  staleImageNames: GcImageNameRow[];
  live: { manifests: number; links: number; blobs: number; images: number };
}

const SEP = '\u0000';
const key = (repoId: number, digest: string) => `${repoId}${SEP}${digest}`;

/** `cache/global` and everything below it, after an optional registry host. */
export function isGlobalCache(repo: string): boolean {
  if (!isCacheLocation(repo)) return false;
  const parts = repo.split('/');
  const at = parts[0] === 'cache' ? 0 : 1;
  return parts[at + 1] === 'global';
}

/** Whether cache retention removes this tag now. */
export function tagExpired(tag: Pick<GcTagRow, 'updatedAt' | 'pulledAt'>, repo: string, options: Pick<MarkOptions, 'now' | 'cacheMaxAgeMs' | 'keepGlobalCache'>): boolean {
  if (options.cacheMaxAgeMs === null || !isCacheLocation(repo)) return false;
  if (options.keepGlobalCache && isGlobalCache(repo)) return false;
  const lastUsed = Math.max(tag.updatedAt, tag.pulledAt ?? 0);
  return options.now - lastUsed > options.cacheMaxAgeMs;
}

export function planCollection(snap: GcSnapshot, options: MarkOptions): GcPlan {
  const cutoff = options.now - options.graceMs;
  const repoName = new Map(snap.repos.map((r) => [r.id, r.name]));
  const repoId = new Map(snap.repos.map((r) => [r.name, r.id]));
  const nameOf = (id: number) => repoName.get(id) ?? `#${id}`;

  const manifests = new Map(snap.manifests.map((m) => [key(m.repoId, m.digest), m]));
  const refsOf = new Map<string, { childDigest: string; kind: string }[]>();
  for (const r of snap.refs) {
    const k = key(r.repoId, r.manifestDigest);
    let list = refsOf.get(k);
    if (!list) refsOf.set(k, (list = []));
    list.push(r);
  }
  const referrersOf = new Map<string, string[]>();
  for (const m of snap.manifests) {
    if (!m.subject) continue;
    const k = key(m.repoId, m.subject);
    let list = referrersOf.get(k);
    if (!list) referrersOf.set(k, (list = []));
    list.push(m.digest);
  }

  // ---- cache retention: tags that are no longer roots ----------------------
  const expiredTags: PlannedTag[] = [];
  const liveTags: GcTagRow[] = [];
  for (const t of snap.tags) {
    const repo = nameOf(t.repoId);
    if (tagExpired(t, repo, options)) {
      expiredTags.push({ repoId: t.repoId, repo, name: t.name, digest: t.digest, lastUsed: Math.max(t.updatedAt, t.pulledAt ?? 0) });
    } else {
      liveTags.push(t);
    }
  }

  // ---- mark manifests --------------------------------------------------------
  const liveManifests = new Set<string>();
  const liveLinks = new Set<string>();
  const work: string[] = [];
  const markManifest = (id: number | undefined, digest: string) => {
    if (id === undefined) return;
    const k = key(id, digest);
    if (liveManifests.has(k) || !manifests.has(k)) return;
    liveManifests.add(k);
    work.push(k);
  };

  for (const t of liveTags) markManifest(t.repoId, t.digest);
  for (const m of snap.manifests) {
    if (m.createdAt > cutoff || options.isPinned(m.digest)) markManifest(m.repoId, m.digest);
  }
  for (const j of snap.jobRoots) markManifest(repoId.get(j.repo), j.digest);
  for (const r of options.extraRoots) markManifest(repoId.get(r.repo), r.digest);

  while (work.length > 0) {
    const k = work.pop()!;
    const m = manifests.get(k)!;
    for (const ref of refsOf.get(k) ?? []) {
      if (ref.kind === 'manifest') markManifest(m.repoId, ref.childDigest);
      else liveLinks.add(key(m.repoId, ref.childDigest));
    }
    // Referrers of a live manifest (signatures, SBOMs, attestations) live with it.
    for (const referrer of referrersOf.get(k) ?? []) markManifest(m.repoId, referrer);
  }

  // ---- links and blob rows ---------------------------------------------------
  for (const l of snap.links) {
    if (l.createdAt > cutoff || options.isPinned(l.digest)) liveLinks.add(key(l.repoId, l.digest));
  }
  const liveDigests = new Set<string>();
  for (const k of liveManifests) liveDigests.add(k.slice(k.indexOf(SEP) + 1));
  const links: PlannedLink[] = [];
  for (const l of snap.links) {
    if (liveLinks.has(key(l.repoId, l.digest))) liveDigests.add(l.digest);
    else links.push({ repoId: l.repoId, repo: nameOf(l.repoId), digest: l.digest });
  }
  const blobs: PlannedBlob[] = [];
  let liveBlobs = 0;
  for (const b of snap.blobs) {
    if (liveDigests.has(b.digest) || b.createdAt > cutoff || options.isPinned(b.digest)) liveBlobs++;
    else blobs.push({ digest: b.digest, size: b.size });
  }

  const deadManifests: PlannedManifest[] = [];
  for (const m of snap.manifests) {
    if (!liveManifests.has(key(m.repoId, m.digest))) deadManifests.push({ repoId: m.repoId, repo: nameOf(m.repoId), digest: m.digest, size: m.size });
  }

  // ---- repos left empty ------------------------------------------------------
  const occupied = new Set<number>();
  for (const k of liveManifests) occupied.add(Number(k.slice(0, k.indexOf(SEP))));
  for (const k of liveLinks) occupied.add(Number(k.slice(0, k.indexOf(SEP))));
  for (const t of liveTags) occupied.add(t.repoId);
  const repos = snap.repos.filter((r) => !occupied.has(r.id)).map((r) => ({ id: r.id, name: r.name }));

  // ---- image names: a tag name lives while its tag points where it does, a digest name while its manifest is in the repo ----
  const tagTarget = new Map(snap.tags.map((t) => [`${t.repoId}${SEP}${t.name}`, t.digest]));
  const staleImageNames: GcImageNameRow[] = [];
  const named = new Set<string>();
  for (const n of snap.imageNames) {
    if (imageNameLives(n, repoId.get(n.repo), tagTarget, manifests)) named.add(n.digest);
    else staleImageNames.push(n);
  }

  // ---- baked images: kept while a name of them lives and their manifest exists, or a bake is pending ----
  const activeBakes = new Set(snap.jobRoots.map((j) => j.digest));
  const images: string[] = [];
  let liveImages = 0;
  for (const i of snap.images) {
    if ((named.has(i.digest) && liveDigests.has(i.digest)) || activeBakes.has(i.digest)) liveImages++;
    else images.push(i.digest);
  }

  return {
    expiredTags,
    manifests: deadManifests,
    links,
    blobs,
    repos,
    images,
    staleImageNames,
    live: { manifests: liveManifests.size, links: snap.links.length - links.length, blobs: liveBlobs, images: liveImages },
  };
}

/** Whether an image name still names what its tag (or, for a digest name, its manifest in the repo) does. Pure. */
export function imageNameLives(
  n: GcImageNameRow,
  repoId: number | undefined,
  tagTarget: ReadonlyMap<string, string>,
  manifests: ReadonlyMap<string, unknown>,
): boolean {
  if (repoId === undefined) return false;
  const target = n.indexDigest === '' ? n.digest : n.indexDigest;
  if (n.tag !== '') return tagTarget.get(`${repoId}${SEP}${n.tag}`) === target;
  return manifests.has(key(repoId, target));
}

export function deletionOf(plan: GcPlan): GcDeletion {
  return {
    tags: plan.expiredTags.map((t) => ({ repoId: t.repoId, name: t.name, digest: t.digest })),
    manifests: plan.manifests.map((m) => ({ repoId: m.repoId, digest: m.digest })),
    links: plan.links.map((l) => ({ repoId: l.repoId, digest: l.digest })),
    blobs: plan.blobs.map((b) => b.digest),
    repos: plan.repos.map((r) => r.id),
    images: plan.images,
    staleImageNames: plan.staleImageNames,
  };
}
