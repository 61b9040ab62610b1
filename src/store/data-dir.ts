// The data directory layout (DESIGN "Data directory"). Every other module asks
// here for a path instead of joining its own.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { parseDigest } from '../oci/digest.js';

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

  /** `blobs/<alg>/<first two hex>/<hex>`: fans out so no directory grows huge. */
  blobPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return path.join(this.blobsRoot, algorithm, hex.slice(0, 2), hex);
  }
  uploadPath(id: string): string {
    return path.join(this.uploadsRoot, id);
  }
  imageDir(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return path.join(this.imagesRoot, algorithm === 'sha256' ? hex : `${algorithm}-${hex}`);
  }
  buildDir(id: string): string {
    return path.join(this.buildsRoot, id);
  }

  async ensure(): Promise<void> {
    for (const dir of [this.root, this.blobsRoot, this.uploadsRoot, this.imagesRoot, this.buildsRoot, this.scratchRoot]) {
      await mkdir(dir, { recursive: true });
    }
  }
}
