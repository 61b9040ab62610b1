// Garbage-collection settings from the environment. Pure.

export interface GcConfig {
  /** KILN_GC_GRACE (default 1h): unreferenced content younger than this is kept. */
  graceMs: number;
  /** KILN_GC_INTERVAL (default 6h; 0 disables the online collector). */
  intervalMs: number;
  /** KILN_CACHE_MAX_AGE (default off): cache tags not pushed or pulled for this long are removed. */
  cacheMaxAgeMs: number | null;
  /** KILN_CACHE_KEEP_GLOBAL (default true): `cache/global/**` is never expired. */
  keepGlobalCache: boolean;
  /** KILN_UPLOAD_TTL_SECONDS (default 1 day): upload sessions idle this long are removed. */
  uploadTtlMs: number;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * `0`, a number of seconds, or a number with a unit: `90s`, `15m`, `1h`,
 * `7d`, `2w`, `500ms`. Returns milliseconds.
 */
export function parseGcDuration(text: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$/.exec(text.trim());
  if (!m) throw new Error(`${name}="${text}" is not a duration: write 0, seconds, or a number with a unit (500ms, 30s, 15m, 1h, 7d, 2w)`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 's']!);
}

export function loadGcConfig(env: NodeJS.ProcessEnv = process.env): GcConfig {
  const duration = (name: string, fallback: string) => {
    const value = env[name];
    return parseGcDuration(value === undefined || value === '' ? fallback : value, name);
  };
  const maxAge = (env.KILN_CACHE_MAX_AGE ?? '').trim().toLowerCase();
  const keep = (env.KILN_CACHE_KEEP_GLOBAL ?? 'true').trim().toLowerCase();
  if (!['true', 'false', '1', '0', 'yes', 'no', ''].includes(keep)) {
    throw new Error(`KILN_CACHE_KEEP_GLOBAL="${env.KILN_CACHE_KEEP_GLOBAL}" must be true or false`);
  }
  const ttl = env.KILN_UPLOAD_TTL_SECONDS;
  const ttlSeconds = ttl === undefined || ttl === '' ? 86_400 : Number(ttl);
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new Error(`KILN_UPLOAD_TTL_SECONDS must be a positive number, got "${ttl}"`);
  return {
    graceMs: duration('KILN_GC_GRACE', '1h'),
    intervalMs: duration('KILN_GC_INTERVAL', '6h'),
    cacheMaxAgeMs: maxAge === '' || maxAge === 'off' || maxAge === '0' ? null : parseGcDuration(maxAge, 'KILN_CACHE_MAX_AGE'),
    keepGlobalCache: !['false', '0', 'no'].includes(keep),
    uploadTtlMs: ttlSeconds * 1000,
  };
}
