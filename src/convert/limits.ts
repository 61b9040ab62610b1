// What one bake may cost, and the counting against it. Pure.
//
// Every layer is attacker-controlled: a 100 KB zstd blob can unpack to GiBs,
// a 7 MB layer can hold a million entries, a small layer of symlink chains can
// make path resolution quadratic, and a manifest may list one layer 20,000
// times. Each of these is capped here; hitting a cap fails the bake with a
// message that names the cap, its value and the setting that raises it.
import { BakeError } from './errors.js';
import { formatBytes } from '../util/format-bytes.js';

export interface BakeLimits {
  /** Decompressed tar bytes, summed over every layer of the image. */
  maxUnpackedBytes: number;
  /** Tar entries (files, directories, links, whiteouts, …) over every layer, and the directories they imply. */
  maxEntries: number;
  /** Layers in the manifest; the same layer listed twice counts twice. */
  maxLayers: number;
  /** Size of the disk image the bake writes. */
  maxDiskBytes: number;
  /** Symbolic links followed while resolving the path of one entry (Linux allows 40). */
  maxSymlinkHops: number;
  /** Path components walked, including those symlinks expand to, while resolving the entries of one layer. */
  maxResolveStepsPerLayer: number;
}

interface LimitSetting {
  env: string;
  /** What is limited, for messages: "unpacked bytes per image". */
  what: string;
  bytes: boolean;
  fallback: number;
}

const GiB = 1024 * 1024 * 1024;

export const BAKE_LIMIT_SETTINGS: Readonly<Record<keyof BakeLimits, LimitSetting>> = {
  maxUnpackedBytes: { env: 'KILN_BAKE_MAX_BYTES', what: 'unpacked bytes per image', bytes: true, fallback: 8 * GiB },
  maxEntries: { env: 'KILN_BAKE_MAX_ENTRIES', what: 'entries per image', bytes: false, fallback: 500_000 },
  maxLayers: { env: 'KILN_BAKE_MAX_LAYERS', what: 'layers per image', bytes: false, fallback: 128 },
  maxDiskBytes: { env: 'KILN_BAKE_MAX_DISK_BYTES', what: 'disk size', bytes: true, fallback: 16 * GiB },
  maxSymlinkHops: { env: 'KILN_BAKE_MAX_SYMLINK_HOPS', what: 'symbolic links followed per path', bytes: false, fallback: 40 },
  maxResolveStepsPerLayer: { env: 'KILN_BAKE_MAX_RESOLVE_STEPS', what: 'path resolution steps per layer', bytes: false, fallback: 16_000_000 },
};

const KEYS = Object.keys(BAKE_LIMIT_SETTINGS) as Array<keyof BakeLimits>;

export const DEFAULT_BAKE_LIMITS: Readonly<BakeLimits> = Object.freeze(
  Object.fromEntries(KEYS.map((k) => [k, BAKE_LIMIT_SETTINGS[k].fallback])) as unknown as BakeLimits,
);

/**
 * The limits from environment variables (KILN_BAKE_MAX_BYTES, …); unset or
 * empty means the default. A value that is not a positive whole number is a
 * configuration error naming the variable.
 */
export function bakeLimitsFromEnv(env: Readonly<Record<string, string | undefined>>): BakeLimits {
  const limits = { ...DEFAULT_BAKE_LIMITS };
  for (const key of KEYS) {
    const { env: name } = BAKE_LIMIT_SETTINGS[key];
    const raw = env[name]?.trim();
    if (raw === undefined || raw === '') continue;
    const n = Number(raw);
    if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive whole number, got "${env[name]}"`);
    limits[key] = n;
  }
  return limits;
}

/** The error for a limit that was hit: what, the value in force, and the setting to raise. */
export function limitExceeded(key: keyof BakeLimits, limits: BakeLimits, detail: string): BakeError {
  const { env, what, bytes } = BAKE_LIMIT_SETTINGS[key];
  const value = limits[key];
  const shown = bytes ? `${value} bytes (${formatBytes(value)})` : String(value);
  return new BakeError('LIMIT_EXCEEDED', `${detail}: the limit of ${what} is ${shown}; raise ${env} to allow more`);
}

/** Counts one bake's work against its limits; each method throws the limit's BakeError when it is passed. */
export class BakeBudget {
  private unpacked = 0;
  private entries = 0;
  private resolveSteps = 0;

  constructor(readonly limits: BakeLimits) {}

  checkLayerCount(layers: number): void {
    if (layers > this.limits.maxLayers) throw limitExceeded('maxLayers', this.limits, `the manifest lists ${layers} layers`);
  }

  /** Decompressed bytes as they stream out of the decompressor. */
  addUnpackedBytes(n: number): void {
    this.unpacked += n;
    if (this.unpacked > this.limits.maxUnpackedBytes) throw this.tooManyBytes(this.unpacked);
  }

  /** A file header announcing `size` bytes of content: refused before any of it is written. */
  expectFileBytes(size: number): void {
    if (this.unpacked + size > this.limits.maxUnpackedBytes) throw this.tooManyBytes(this.unpacked + size);
  }

  addEntry(): void {
    if (++this.entries > this.limits.maxEntries) {
      throw limitExceeded('maxEntries', this.limits, `the image has more than ${this.limits.maxEntries} entries (tar entries and the directories they imply)`);
    }
  }

  /** Resolution work starts over with each layer. */
  beginLayer(): void {
    this.resolveSteps = 0;
  }

  /** One path component walked while resolving an entry's parents. */
  addResolveStep(): void {
    if (++this.resolveSteps > this.limits.maxResolveStepsPerLayer) {
      throw limitExceeded('maxResolveStepsPerLayer', this.limits, 'resolving the paths of this layer through its symbolic links takes too much work');
    }
  }

  /** Symlinks followed so far for one path. */
  checkSymlinkHops(hops: number, path: string): void {
    if (hops > this.limits.maxSymlinkHops) {
      throw limitExceeded('maxSymlinkHops', this.limits, `too many levels of symbolic links in ${path}`);
    }
  }

  checkDiskBytes(bytes: number): void {
    if (bytes > this.limits.maxDiskBytes) throw limitExceeded('maxDiskBytes', this.limits, `the disk needs ${bytes} bytes (${formatBytes(bytes)})`);
  }

  private tooManyBytes(total: number): BakeError {
    return limitExceeded('maxUnpackedBytes', this.limits, `the layers unpack to at least ${total} bytes`);
  }
}
