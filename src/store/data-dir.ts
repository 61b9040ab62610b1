// The data directory layout (DESIGN "Data directory"). Every other module asks
// here for a path instead of joining its own.
import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { parseDigest } from '../oci/digest.js';

/**
 * Only the server's user reads the data directory: registry content is
 * tenants' private data, and the workers get layers streamed to them instead
 * of reading files here.
 */
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

export class DataDir {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  get database(): string {
    return path.join(this.root, 'kiln.db');
  }
  get blobsRoot(): string {
    return path.join(this.root, 'blobs');
  }
  get uploadsRoot(): string {
    return path.join(this.root, 'uploads');
  }
  get imagesRoot(): string {
    return path.join(this.root, 'images');
  }
  get buildsRoot(): string {
    return path.join(this.root, 'builds');
  }
  /** Scratch space for jobs (unpacked trees, staging); wiped at start. */
  get scratchRoot(): string {
    return path.join(this.root, 'tmp');
  }
  get authKeyFile(): string {
    return path.join(this.root, 'auth-key.json');
  }
  /** Pid lock of the process using the directory (the server, or an offline gc/fsck). */
  get lockFile(): string {
    return path.join(this.root, 'kiln.lock');
  }
  /** Corrupt blobs moved aside by `kiln fsck`; the registry no longer sees them. */
  get quarantineRoot(): string {
    return path.join(this.root, 'quarantine');
  }

  /** `blobs/<alg>/<first two hex>/<hex>`: fans out so no directory grows huge. */
  blobPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return path.join(this.blobsRoot, algorithm, hex.slice(0, 2), hex);
  }
  uploadPath(id: string): string {
    return path.join(this.uploadsRoot, id);
  }
  /** Where fsck moves a corrupt blob: `quarantine/<alg>/<hex>.<unix-ms>`. */
  quarantinePath(digest: string, at: number = Date.now()): string {
    const { algorithm, hex } = parseDigest(digest);
    return path.join(this.quarantineRoot, algorithm, `${hex}.${at}`);
  }
  imageDir(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return path.join(this.imagesRoot, algorithm === 'sha256' ? hex : `${algorithm}-${hex}`);
  }
  buildDir(id: string): string {
    return path.join(this.buildsRoot, id);
  }

  /** Whether the directory holds a Kiln database (a server has run on it, or `--init` made it). */
  isKilnDataDir(): boolean {
    return existsSync(this.database);
  }

  /** Creates the layout; tightens the modes of one made by an older Kiln (0755). */
  async ensure(): Promise<void> {
    for (const dir of [this.root, this.blobsRoot, this.uploadsRoot, this.imagesRoot, this.buildsRoot, this.scratchRoot]) {
      await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
      await chmod(dir, PRIVATE_DIR_MODE);
    }
  }
}
