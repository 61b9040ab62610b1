// Registry operations on top of the stores: everything the /v2 API does,
// free of HTTP. Handlers parse requests and call these; errors are domain
// errors mapped in errors.ts.
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { digestOf, parseDigest, tryParseDigest, type ParsedDigest } from '../oci/digest.js';
import { MAX_MANIFEST_BYTES, parseManifest, type Descriptor, type Manifest } from '../oci/manifest.js';
import { OCI_INDEX, isNonDistributable } from '../oci/media-types.js';
import { explainInvalidName, isValidRepoName, isValidTag } from '../oci/names.js';
import type { BlobSource, BlobStore, ByteRange, ManifestRecord, ManifestReference, MetadataStore, Page, RepoScope, UploadExpiry, UploadSession } from '../store/types.js';
import { RangeMismatchError, UploadBusyError } from '../store/errors.js';
import { DigestPins, type PinStore } from '../store/pins.js';
import { ManifestCache } from './manifest-cache.js';
import { RegistryError } from './errors.js';
import { UNLIMITED_UPLOADS, UploadSlots, tooManySessions, type UploadLimits } from './upload-quota.js';

export interface RegistryServiceOptions {
  uploadLimits?: UploadLimits;
  /** Called with the setting's name whenever a limit refuses a request (for metrics). */
  onLimitHit?: (setting: string) => void;
}

export interface ManifestPushedEvent {
  repo: string;
  tag: string | null;
  digest: string;
  mediaType: string;
  manifest: Manifest;
}

/** Told of every stored manifest; awaited before the push is answered, so it must not throw (it logs its own errors). */
export type ManifestListener = (event: ManifestPushedEvent) => void | Promise<void>;

/** A tag was deleted, or a manifest was deleted from a repo (with the tags naming it). */
export type ReferenceDeletedEvent = { kind: 'tag'; repo: string; tag: string } | { kind: 'manifest'; repo: string; digest: string };

export interface StoredManifest {
  record: ManifestRecord;
  bytes: Buffer;
}

export interface BlobReadResult {
  size: number;
  stream: Readable;
}

export class RegistryService {
  private readonly manifestCache = new ManifestCache(64 * 1024 * 1024);
  private readonly listeners: ManifestListener[] = [];
  private readonly pullListeners: ((repo: string, tag: string) => void)[] = [];
  private readonly deleteListeners: ((event: ReferenceDeletedEvent) => void | Promise<void>)[] = [];
  readonly uploadSlots: UploadSlots;
  private readonly uploadLimits: UploadLimits;
  private readonly onLimitHit: (setting: string) => void;

  constructor(
    readonly blobs: BlobStore,
    readonly meta: MetadataStore,
    /** Digests being made visible right now; the garbage collector leaves them alone (src/gc/collector.ts). */
    readonly pins: PinStore = new DigestPins(),
    options: RegistryServiceOptions = {},
  ) {
    this.uploadLimits = options.uploadLimits ?? UNLIMITED_UPLOADS;
    this.onLimitHit = options.onLimitHit ?? (() => {});
    this.uploadSlots = new UploadSlots(this.uploadLimits, this.onLimitHit);
  }

  onManifestPushed(listener: ManifestListener): void {
    this.listeners.push(listener);
  }

  /** Called after a tag or a manifest is deleted through the API (the collector's deletions are not announced). */
  /** Told of every deleted tag or manifest; awaited before the delete is answered, so it must not throw. */
  onReferenceDeleted(listener: (event: ReferenceDeletedEvent) => void | Promise<void>): void {
    this.deleteListeners.push(listener);
  }

  /** Called on every manifest GET/HEAD by tag (cache retention); must be cheap and synchronous. */
  onManifestPulled(listener: (repo: string, tag: string) => void): void {
    this.pullListeners.push(listener);
  }

  // ---- names and references ------------------------------------------------

  validateName(name: string): void {
    if (!isValidRepoName(name)) throw new RegistryError('NAME_INVALID', explainInvalidName(name), { name });
  }

  parseDigestParam(value: string): ParsedDigest {
    return parseDigest(value);
  }

  // ---- blobs ---------------------------------------------------------------

  /** Size of a blob the repo holds. Manifests are blobs too, as clients may fetch them by blob URL. */
  async blobSize(repo: string, digest: string): Promise<number> {
    parseDigest(digest);
    const size = (await this.meta.repoBlobSize(repo, digest)) ?? (await this.meta.getManifest(repo, digest))?.size;
    if (size === undefined || size === null) throw blobUnknown(repo, digest);
    return size;
  }

  /** For HEAD: the file must be there too, so HEAD never promises bytes that GET could not serve. */
  async assertBlobStored(repo: string, digest: string): Promise<void> {
    if (!(await this.blobs.stat(digest))) throw blobUnknown(repo, digest);
  }

  /** `range` is always given: the bytes promised in Content-Length, so a short file fails instead of ending early. */
  async openBlob(repo: string, digest: string, range: ByteRange): Promise<BlobSource> {
    const source = await this.blobs.openSource(digest, range);
    // Linked in the DB but missing on disk: quarantined by fsck or lost; never serve a partial answer.
    if (!source) throw blobUnknown(repo, digest);
    return source;
  }

  /** A short-lived URL the client can fetch the blob from directly (an object store's presigned GET), or null: Kiln serves it. */
  async blobRedirect(digest: string): Promise<string | null> {
    return this.blobs.redirectUrl(digest);
  }

  async deleteBlob(repo: string, digest: string): Promise<void> {
    parseDigest(digest);
    if (!(await this.meta.unlinkBlob(repo, digest))) throw blobUnknown(repo, digest);
  }

  // ---- uploads -------------------------------------------------------------

  /** Opens a session counted against `owner`'s quota (see upload-quota.ts); 429 when it is full. */
  async startUpload(repo: string, owner: string): Promise<string> {
    const id = randomUUID();
    const { sessionsPerOwner, sessions } = this.uploadLimits;
    const outcome = await this.meta.createUpload({ id, repo, owner }, { perOwner: sessionsPerOwner.value, total: sessions.value });
    if (!outcome.created) {
      this.onLimitHit(outcome.limit === 'perOwner' ? sessionsPerOwner.setting : sessions.setting);
      throw tooManySessions(owner, outcome.limit, outcome.open, this.uploadLimits);
    }
    await this.blobs.createUpload(id);
    return id;
  }

  /** Links a blob from another repo; null when it cannot be mounted (the client then uploads). */
  async mountBlob(repo: string, from: string, digest: string): Promise<number | null> {
    if (!isValidRepoName(from) || !tryParseDigest(digest)) return null;
    const release = await this.pins.pin(digest);
    try {
      const size = await this.meta.repoBlobSize(from, digest);
      if (size === null || !(await this.blobs.stat(digest))) return null;
      await this.meta.linkBlob(repo, digest, size);
      return size;
    } finally {
      release();
    }
  }

  /**
   * A mount without `from` (the spec lets a registry mount by digest alone):
   * from any repository within `readable`, the repositories the caller may pull.
   */
  async mountBlobFromAnywhere(
    repo: string,
    digest: string,
    readable: RepoScope,
    mayPull: (repo: string) => boolean,
    prepare?: (repos: readonly string[]) => Promise<void>,
  ): Promise<number | null> {
    if (!tryParseDigest(digest)) return null;
    const from = await this.meta.findRepoWithBlob(digest, readable);
    if (from !== null) await prepare?.([from]);
    if (from === null || !mayPull(from)) return null;
    return this.mountBlob(repo, from, digest);
  }

  async uploadSize(repo: string, id: string): Promise<number> {
    await this.requireUpload(repo, id);
    const size = await this.blobs.uploadSize(id);
    if (size === null) throw uploadUnknown(id);
    return size;
  }

  async appendUpload(repo: string, id: string, body: Readable, offset?: number, length?: number): Promise<number> {
    const session = await this.requireUpload(repo, id);
    const size = await this.withUploadSlot(session.owner, () => this.blobs.appendUpload(id, body, { expectedOffset: offset, expectedLength: length }));
    await this.meta.touchUpload(id);
    return size;
  }

  /**
   * Completes an upload, optionally with a last chunk (at `offset` when the
   * client says where it starts); the digest is verified before anything is
   * visible. A chunk at the wrong offset, or a busy or refused slot, leaves
   * the session for the client to resume; anything else ends it (the client
   * restarts).
   */
  async finishUpload(repo: string, id: string, digest: ParsedDigest, body?: Readable, length?: number, offset?: number): Promise<number> {
    const session = await this.requireUpload(repo, id);
    // Until the last chunk is in, a refusal of it may leave the session for the client to resume.
    let keepSession = true;
    let committed = false;
    try {
      if (body) await this.withUploadSlot(session.owner, () => this.blobs.appendUpload(id, body, { expectedOffset: offset, expectedLength: length }));
      keepSession = false;
      const release = await this.pins.pin(digest.digest);
      try {
        const blob = await this.blobs.commitUpload(id, digest);
        committed = true;
        await this.meta.linkBlob(repo, blob.digest, blob.size);
        return blob.size;
      } finally {
        release();
      }
    } catch (err) {
      if (!leavesSessionOpen(err)) keepSession = false;
      throw err;
    } finally {
      // A commit removed the stored session itself; only its row is left.
      if (committed) await this.meta.deleteUpload(id);
      else if (!keepSession) await this.dropUpload(id);
    }
  }

  /**
   * A monolithic upload (`POST ?digest=`): its session is never handed to the
   * client, so it is removed whatever happens (a truncated body included).
   */
  async uploadBlob(repo: string, owner: string, digest: ParsedDigest, body: Readable, length?: number): Promise<number> {
    const id = await this.startUpload(repo, owner);
    try {
      return await this.finishUpload(repo, id, digest, body, length);
    } catch (err) {
      await this.dropUpload(id);
      throw err;
    }
  }

  private async withUploadSlot<T>(owner: string, fn: () => Promise<T>): Promise<T> {
    const release = this.uploadSlots.acquire(owner);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  async cancelUpload(repo: string, id: string): Promise<void> {
    await this.requireUpload(repo, id);
    await this.dropUpload(id);
  }

  /**
   * Removes upload sessions idle since before `expiry.idleBefore` or never
   * used since before `expiry.emptyBefore`, and upload files without a
   * session (older than the idle cutoff).
   */
  async expireUploads(expiry: UploadExpiry): Promise<number> {
    let removed = 0;
    for (const session of await this.meta.listExpiredUploads(expiry)) {
      await this.dropUpload(session.id);
      removed++;
    }
    for await (const file of this.blobs.listUploads()) {
      if (file.modifiedAt.getTime() >= expiry.idleBefore) continue;
      if (await this.meta.getUpload(file.id)) continue;
      await this.blobs.abortUpload(file.id);
      removed++;
    }
    return removed;
  }

  private async dropUpload(id: string): Promise<void> {
    await this.blobs.abortUpload(id);
    await this.meta.deleteUpload(id);
  }

  private async requireUpload(repo: string, id: string): Promise<UploadSession> {
    const session = await this.meta.getUpload(id);
    if (!session || session.repo !== repo) throw uploadUnknown(id);
    return session;
  }

  // ---- manifests -----------------------------------------------------------

  async putManifest(repo: string, reference: string, bytes: Buffer, contentType: string | undefined): Promise<{ digest: string; subject: string | null }> {
    if (bytes.length > MAX_MANIFEST_BYTES) {
      throw new RegistryError('PAYLOAD_TOO_LARGE', `manifest is ${bytes.length} bytes; the limit is ${MAX_MANIFEST_BYTES}`);
    }
    // Tags cannot contain ':', so anything with one must be a well-formed digest.
    const byDigest = reference.includes(':') ? parseDigest(reference) : null;
    if (!byDigest) this.validateTag(reference);
    const algorithm = byDigest?.algorithm ?? 'sha256';
    const digest = digestOf(bytes, algorithm);
    if (byDigest && byDigest.digest !== digest) {
      throw new RegistryError('DIGEST_INVALID', `manifest body has digest ${digest}, not ${reference}`, { expected: reference, actual: digest });
    }

    const manifest = parseManifest(bytes, contentType);
    const release = await this.pins.pin(digest);
    try {
      return await this.storeManifest(repo, reference, byDigest !== null, bytes, digest, manifest);
    } finally {
      release();
    }
  }

  private async storeManifest(
    repo: string,
    reference: string,
    byDigest: boolean,
    bytes: Buffer,
    digest: string,
    manifest: Manifest,
  ): Promise<{ digest: string; subject: string | null }> {
    const references = await this.checkReferences(repo, manifest);

    await this.blobs.putBytes(bytes, parseDigest(digest));
    await this.meta.putManifest({
      repo,
      digest,
      mediaType: manifest.mediaType,
      size: bytes.length,
      artifactType: manifest.artifactType ?? null,
      configMediaType: manifest.kind === 'image' ? manifest.config.mediaType : null,
      subject: manifest.subject?.digest ?? null,
      annotations: manifest.annotations ?? null,
      references,
      tag: byDigest ? undefined : reference,
    });
    this.manifestCache.set(digest, bytes);
    const event: ManifestPushedEvent = { repo, tag: byDigest ? null : reference, digest, mediaType: manifest.mediaType, manifest };
    // Awaited: when the client hears 201, the bake job of the manifest is queued.
    for (const listener of this.listeners) await listener(event);
    return { digest, subject: manifest.subject?.digest ?? null };
  }

  /**
   * Every blob a manifest names must be in the repo; an index's children may
   * be manifests or, as in BuildKit's cache index, plain blobs. A
   * non-distributable layer may be absent (it lives at its `urls`), but not
   * present in the store for other repos only: naming a digest is no right to
   * another repo's blob.
   */
  private async checkReferences(repo: string, manifest: Manifest): Promise<ManifestReference[]> {
    const refs: ManifestReference[] = [];
    const missing: Descriptor[] = [];
    if (manifest.kind === 'index') {
      for (const child of manifest.manifests) {
        if (await this.meta.getManifest(repo, child.digest)) refs.push({ digest: child.digest, kind: 'manifest' });
        else if ((await this.meta.repoBlobSize(repo, child.digest)) !== null) refs.push({ digest: child.digest, kind: 'blob' });
        else missing.push(child);
      }
    } else {
      const described: [Descriptor, 'config' | 'layer'][] = [[manifest.config, 'config'], ...manifest.layers.map((l): [Descriptor, 'layer'] => [l, 'layer'])];
      for (const [desc, kind] of described) {
        const size = await this.meta.repoBlobSize(repo, desc.digest);
        if (size === null) {
          const foreign = kind === 'layer' && isNonDistributable(desc.mediaType);
          if (!foreign || (await this.blobs.stat(desc.digest))) missing.push(desc);
          continue;
        }
        if (size !== desc.size) {
          throw new RegistryError('MANIFEST_INVALID', `${kind} ${desc.digest} is ${size} bytes but the manifest says ${desc.size}`, { digest: desc.digest });
        }
        refs.push({ digest: desc.digest, kind });
      }
    }
    if (missing.length > 0) {
      const list = missing.map((d) => d.digest);
      throw new RegistryError(
        'MANIFEST_BLOB_UNKNOWN',
        `push these blobs to ${repo} before the manifest: ${list.slice(0, 5).join(', ')}${list.length > 5 ? ` and ${list.length - 5} more` : ''}`,
        { digests: list },
      );
    }
    return refs;
  }

  /** Resolves a tag or digest to the stored manifest record. */
  async findManifest(repo: string, reference: string): Promise<ManifestRecord> {
    let record: ManifestRecord | null;
    if (reference.includes(':')) {
      record = await this.meta.getManifest(repo, parseDigest(reference).digest);
    } else {
      this.validateTag(reference);
      record = await this.meta.getTaggedManifest(repo, reference);
    }
    if (!record) throw await this.manifestUnknown(repo, reference);
    if (!reference.includes(':')) for (const listener of this.pullListeners) listener(repo, reference);
    return record;
  }

  async readManifest(repo: string, reference: string): Promise<StoredManifest> {
    const record = await this.findManifest(repo, reference);
    let bytes = this.manifestCache.get(record.digest);
    if (!bytes) {
      const read = await this.blobs.readBytes(record.digest);
      if (!read) throw await this.manifestUnknown(repo, reference);
      bytes = read;
      this.manifestCache.set(record.digest, bytes);
    }
    return { record, bytes };
  }

  async deleteManifest(repo: string, reference: string): Promise<void> {
    const byDigest = reference.includes(':') ? parseDigest(reference) : null;
    if (byDigest) {
      if (!(await this.meta.deleteManifest(repo, byDigest.digest))) throw await this.manifestUnknown(repo, reference);
      await this.announceDeleted({ kind: 'manifest', repo, digest: byDigest.digest });
      return;
    }
    this.validateTag(reference);
    if (!(await this.meta.deleteTag(repo, reference))) throw await this.manifestUnknown(repo, reference);
    await this.announceDeleted({ kind: 'tag', repo, tag: reference });
  }

  private async announceDeleted(event: ReferenceDeletedEvent): Promise<void> {
    for (const listener of this.deleteListeners) await listener(event);
  }

  private validateTag(tag: string): void {
    if (!isValidTag(tag)) {
      throw new RegistryError('MANIFEST_INVALID', `"${tag}" is neither a digest nor a valid tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127})`, { tag }, {}, 400);
    }
  }

  private async manifestUnknown(repo: string, reference: string): Promise<RegistryError> {
    if (!(await this.meta.repoExists(repo))) return new RegistryError('NAME_UNKNOWN', `repository ${repo} is not known to this registry`, { name: repo });
    return new RegistryError('MANIFEST_UNKNOWN', `manifest ${reference} is not in ${repo}`, { name: repo, reference });
  }

  // ---- listings ------------------------------------------------------------

  async listTags(repo: string, page: Page): Promise<string[]> {
    if (!(await this.meta.repoExists(repo))) throw new RegistryError('NAME_UNKNOWN', `repository ${repo} is not known to this registry`, { name: repo });
    return this.meta.listTags(repo, page);
  }

  /**
   * Repositories in order after `last`, up to `limit`: the database reads only
   * within `scope` (what the caller may see), and `visible` applies the exact
   * policy to what it returns, after `prepare` (when given) was awaited on
   * each batch (it loads what `visible` needs to know, such as build owners).
   */
  async listRepos(page: Page, scope: RepoScope, visible: (repo: string) => boolean, prepare?: (repos: readonly string[]) => Promise<void>): Promise<string[]> {
    const out: string[] = [];
    let last = page.last;
    const want = page.limit ?? Infinity;
    const batch = 500;
    while (out.length < want) {
      const names = await this.meta.listRepos({ last, limit: batch }, scope);
      await prepare?.(names);
      for (const name of names) {
        if (visible(name)) out.push(name);
        if (out.length >= want) break;
      }
      if (names.length < batch) break;
      last = names[names.length - 1];
    }
    return out;
  }

  async referrers(repo: string, digest: string, artifactType?: string): Promise<{ schemaVersion: 2; mediaType: string; manifests: object[] }> {
    parseDigest(digest);
    const found = await this.meta.listReferrers(repo, digest, artifactType);
    return {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: found.map((r) => ({
        mediaType: r.mediaType,
        digest: r.digest,
        size: r.size,
        ...(r.artifactType ? { artifactType: r.artifactType } : {}),
        ...(r.annotations ? { annotations: r.annotations } : {}),
      })),
    };
  }
}

/** Refusals of a last chunk the client can recover from by asking where the upload stands, or by waiting. */
function leavesSessionOpen(err: unknown): boolean {
  return err instanceof RangeMismatchError || err instanceof UploadBusyError || (err instanceof RegistryError && err.code === 'TOO_MANY_REQUESTS');
}

function blobUnknown(repo: string, digest: string): RegistryError {
  return new RegistryError('BLOB_UNKNOWN', `blob ${digest} is not in ${repo}`, { name: repo, digest });
}

function uploadUnknown(id: string): RegistryError {
  return new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${id} is unknown or has expired; start a new upload`, { id });
}
