// Digests of an upload that outlive the request computing them: the running
// SHA-256 and SHA-512 states are saved after every chunk (hash-wasm's
// save/load) and the next chunk, on any replica, resumes from them. So no
// replica ever re-reads the bytes to hash them, whichever algorithm the
// client names when it completes the upload.
//
// A saved state holds up to one block of the hashed bytes, so it is kept
// with the upload's other data (in the bucket), never in logs. Replicas must
// run the same hash-wasm build to load each other's states (the same Kiln
// version); load() refuses a foreign state.
import { createSHA256, createSHA512, type IHasher } from 'hash-wasm';
import type { DigestAlgorithm } from '../../oci/digest.js';

export const RESUMABLE_ALGORITHMS: readonly DigestAlgorithm[] = ['sha256', 'sha512'];

/** Base64 hash states by algorithm. */
export type SavedDigests = Partial<Record<DigestAlgorithm, string>>;

const factories: Record<DigestAlgorithm, () => Promise<IHasher>> = { sha256: createSHA256, sha512: createSHA512 };

export class ResumableDigests {
  private constructor(private readonly hashers: Map<DigestAlgorithm, IHasher>) {}

  /** Fresh states for `algorithms`. */
  static async start(algorithms: readonly DigestAlgorithm[] = RESUMABLE_ALGORITHMS): Promise<ResumableDigests> {
    const hashers = new Map<DigestAlgorithm, IHasher>();
    for (const algorithm of algorithms) hashers.set(algorithm, (await factories[algorithm]()).init());
    return new ResumableDigests(hashers);
  }

  /** The states `save()` returned, to go on hashing where they stopped. */
  static async resume(saved: SavedDigests): Promise<ResumableDigests> {
    const hashers = new Map<DigestAlgorithm, IHasher>();
    for (const [algorithm, state] of Object.entries(saved) as [DigestAlgorithm, string][]) {
      const factory = factories[algorithm];
      if (!factory) throw new Error(`saved upload state names unknown digest algorithm ${algorithm}`);
      hashers.set(algorithm, (await factory()).load(Buffer.from(state, 'base64')));
    }
    return new ResumableDigests(hashers);
  }

  update(chunk: Uint8Array): void {
    for (const hasher of this.hashers.values()) hasher.update(chunk);
  }

  save(): SavedDigests {
    const saved: SavedDigests = {};
    for (const [algorithm, hasher] of this.hashers) saved[algorithm] = Buffer.from(hasher.save()).toString('base64');
    return saved;
  }

  has(algorithm: DigestAlgorithm): boolean {
    return this.hashers.has(algorithm);
  }

  /** Hex digest of everything hashed so far; the state goes on (it is saved and restored around the final step). */
  hex(algorithm: DigestAlgorithm): string {
    const hasher = this.hashers.get(algorithm);
    if (!hasher) throw new Error(`the upload was not hashed with ${algorithm}`);
    const state = hasher.save();
    const hex = hasher.digest('hex');
    hasher.load(state);
    return hex;
  }
}
