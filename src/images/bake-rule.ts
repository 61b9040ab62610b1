// Which images a pushed manifest asks to bake, and under which names. Pure.
//
// A manifest is baked when a tag names it, or when an index that names it is
// pushed (by tag or by digest) and its platform is configured; a single image
// that arrives by digest only is not, since clients push an index's children
// by digest before the index. So every client order bakes the same disks,
// under the platforms KILN_PLATFORMS asks for. A bake can still be asked for
// any image (POST /api/v1/images/bake).
import { formatPlatform, type Classification } from '../oci/classify.js';
import type { ImageSource } from '../store/image-store.js';

export interface PushedRef {
  repo: string;
  /** null: pushed by digest. */
  tag: string | null;
  digest: string;
}

export function bakesForPush(c: Classification, pushed: PushedRef): ImageSource[] {
  const { repo, tag, digest } = pushed;
  switch (c.kind) {
    case 'runnable-image':
      return tag === null ? [] : [{ digest, repo, tag, indexDigest: null, platform: null }];
    case 'multi-platform-image':
      return c.toBake.map((child) => ({ digest: child.digest, repo, tag, indexDigest: digest, platform: child.platform ? formatPlatform(child.platform) : null }));
    default:
      return [];
  }
}
