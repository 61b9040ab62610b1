// Reading buildah bud's output (buildah 1.28): which Dockerfile steps were
// taken from a cache. Each step starts with `STEP k/n: INSTR …` (prefixed with
// `[s/m] ` in multi-stage builds); a hit, local or pulled from `--cache-from`,
// prints `--> Using cache <image id>` under it. buildah makes a step of every
// instruction (ARG, ENV, …); only those that change the filesystem are counted,
// as BuildKit lists only those. Pure.
import type { CacheUse } from './backend.js';

const STEP = /^(?:\[(\d+)\/\d+\] )?STEP (\d+)\/\d+: (\S+)/;
const CACHE_HIT = /^--> Using cache [0-9a-f]{12,}/;
const FILESYSTEM_STEPS = new Set(['RUN', 'COPY', 'ADD', 'WORKDIR']);

export class BuildahStepTracker {
  private readonly steps = new Map<string, { counted: boolean; cached: boolean }>();
  private current: string | null = null;

  feed(line: string): void {
    const step = STEP.exec(line);
    if (step) {
      this.current = `${step[1] ?? '1'}:${step[2]}`;
      this.steps.set(this.current, { counted: FILESYSTEM_STEPS.has(step[3]!.toUpperCase()), cached: false });
      return;
    }
    if (this.current !== null && CACHE_HIT.test(line)) this.steps.get(this.current)!.cached = true;
  }

  summary(): CacheUse {
    const counted = [...this.steps.values()].filter((s) => s.counted);
    return { totalSteps: counted.length, cachedSteps: counted.filter((s) => s.cached).length };
  }
}
