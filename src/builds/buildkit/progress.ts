// Reading what buildctl reports: `--progress=plain` lines (which steps were
// CACHED) and the `--metadata-file` (the pushed image's digest). Pure.
import { tryParseDigest } from '../../oci/digest.js';
import type { CacheUse } from '../build-options.js';
import { BuildError } from '../errors.js';

// `#8 [2/5] RUN …`, `#8 [builder 2/5] RUN …`, `#8 [linux/amd64 3/4] COPY …`: a Dockerfile step vertex.
const STEP_VERTEX = /^#(\d+) \[(?:[^\]]* )?\d+\/\d+\] (\S+)/;
const CACHED = /^#(\d+) CACHED\s*$/;

/** Follows plain progress line by line and counts Dockerfile steps and cache hits. */
export class BuildkitProgressTracker {
  /** Vertex number → whether it is a FROM step. */
  private readonly steps = new Map<string, boolean>();
  private readonly cached = new Set<string>();

  feed(line: string): void {
    const step = STEP_VERTEX.exec(line);
    if (step) {
      this.steps.set(step[1]!, step[2]!.toUpperCase() === 'FROM');
      return;
    }
    const hit = CACHED.exec(line);
    if (hit) this.cached.add(hit[1]!);
  }

  /** True once BuildKit starts writing the image (the "pushing" phase begins there). */
  static isExportLine(line: string): boolean {
    return /^#\d+ exporting to image\s*$/.test(line);
  }

  summary(): CacheUse {
    let totalSteps = 0;
    let cachedSteps = 0;
    for (const [vertex, isFrom] of this.steps) {
      if (isFrom) continue;
      totalSteps += 1;
      if (this.cached.has(vertex)) cachedSteps += 1;
    }
    return { totalSteps, cachedSteps };
  }
}

/** The pushed image's manifest digest from buildctl's metadata file contents. */
export function imageDigestFromMetadata(text: string): string {
  let metadata: unknown;
  try {
    metadata = JSON.parse(text);
  } catch (err) {
    throw new BuildError('build-failed', `buildctl wrote a metadata file that is not JSON: ${(err as Error).message}`);
  }
  const digest = (metadata as Record<string, unknown> | null)?.['containerimage.digest'];
  if (typeof digest !== 'string' || tryParseDigest(digest) === null) {
    throw new BuildError('build-failed', 'buildctl reported no valid containerimage.digest; was the image pushed?');
  }
  return digest;
}
