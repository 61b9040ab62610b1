// Where things live in the bucket. Pure. Below the configured prefix the
// layout is the data directory's (blobs/<alg>/<2 hex>/<hex>, images/…,
// builds/…), so a data directory can be copied into a bucket as it is; upload
// sessions keep their state beside their staged bytes:
//
//   uploads/<id>/state          the session (JSON): size, parts, tail, saved hash states
//   uploads/<id>/claim-<seq>    written with If-None-Match: * by the one request allowed to move the session to <seq>
//   uploads/<id>/tail-<seq>     bytes after the last part, fewer than S3's 5 MiB minimum part
//   uploads/<id>/data           the multipart upload, completed at commit, then copied to its blob key
import { parseDigest } from '../../oci/digest.js';

const UPLOAD_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

export class S3Keys {
  constructor(readonly prefix: string) {}

  get blobs(): string {
    return `${this.prefix}blobs/`;
  }

  blob(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return `${this.blobs}${algorithm}/${hex.slice(0, 2)}/${hex}`;
  }

  /** The digest a key under blobs/ stands for, or null for anything else (stray keys). */
  digestOf(key: string): string | null {
    if (!key.startsWith(this.blobs)) return null;
    const m = /^(sha256|sha512)\/([0-9a-f]{2})\/([0-9a-f]+)$/.exec(key.slice(this.blobs.length));
    if (!m || !m[3]!.startsWith(m[2]!)) return null;
    try {
      return parseDigest(`${m[1]}:${m[3]}`).digest;
    } catch {
      return null;
    }
  }

  quarantine(digest: string, at: number): string {
    const { algorithm, hex } = parseDigest(digest);
    return `${this.prefix}quarantine/${algorithm}/${hex}.${at}`;
  }

  get uploads(): string {
    return `${this.prefix}uploads/`;
  }

  upload(id: string): string {
    if (!UPLOAD_ID.test(id)) throw new Error(`invalid upload id ${JSON.stringify(id.slice(0, 64))}`);
    return `${this.uploads}${id}/`;
  }

  uploadState(id: string): string {
    return `${this.upload(id)}state`;
  }

  uploadClaim(id: string, seq: number): string {
    return `${this.upload(id)}claim-${String(seq).padStart(8, '0')}`;
  }

  uploadTail(id: string, seq: number): string {
    return `${this.upload(id)}tail-${String(seq).padStart(8, '0')}`;
  }

  uploadData(id: string): string {
    return `${this.upload(id)}data`;
  }

  /** The upload a key under uploads/ belongs to, or null. */
  uploadIdOf(key: string): string | null {
    if (!key.startsWith(this.uploads)) return null;
    const id = key.slice(this.uploads.length).split('/')[0]!;
    return UPLOAD_ID.test(id) ? id : null;
  }

  /** A FileStore key (`images/<hex>/rootfs.ext4`) in the bucket. */
  file(key: string): string {
    return `${this.prefix}${key}`;
  }
}
