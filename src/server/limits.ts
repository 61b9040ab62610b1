// The server's protective limits: one table of settings (name, default,
// meaning), read from the environment. Pure. Every limit is also exported to
// /metrics under its key (src/server/limit-metrics.ts) and listed in the README.
//
// Defaults follow what production front ends ship (Apache's mod_reqtimeout:
// 20 s for headers, a minimum rate for bodies; nginx: 75 s keep-alive) and the
// 20,000 open files a Kiln process may have: a connection costs one
// descriptor, a blob it streams one more, so 8,192 connections stay well clear.

export interface Limits {
  /** A request's head (request line and headers) must arrive within this, from its first byte or from the connection's start. */
  headerTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** The body of a request that is not a blob or build-source upload must arrive within this. */
  requestTimeoutMs: number;
  /** Blob bodies (uploads and downloads) must move at least this many bytes per second, averaged over `rateWindowMs`; 0 disables. */
  minBytesPerSecond: number;
  rateWindowMs: number;
  maxConnections: number;
  maxConnectionsPerAddress: number;
  /** Upload sessions open at once (started, not finished or cancelled). */
  maxUploadSessionsPerTenant: number;
  maxUploadSessions: number;
  /** Upload bodies streaming at once. */
  maxConcurrentUploadsPerTenant: number;
  maxConcurrentUploads: number;
  /** A session that never received a byte is removed after this (the long TTL is KILN_UPLOAD_TTL_SECONDS). */
  emptyUploadTtlMs: number;
}

export type LimitKey = keyof Limits;

export interface LimitSetting {
  key: LimitKey;
  env: string;
  /** Default in the setting's own unit. */
  fallback: number;
  unit: 'seconds' | 'count' | 'bytes/s';
  /** Zero is allowed (and turns the limit off). */
  zeroDisables?: boolean;
  meaning: string;
}

export const LIMIT_SETTINGS: readonly LimitSetting[] = [
  { key: 'headerTimeoutMs', env: 'KILN_HEADER_TIMEOUT_SECONDS', fallback: 20, unit: 'seconds', meaning: 'a request line and headers must arrive within this; a connection that sends nothing is closed after it too' },
  { key: 'keepAliveTimeoutMs', env: 'KILN_KEEPALIVE_TIMEOUT_SECONDS', fallback: 75, unit: 'seconds', meaning: 'an idle keep-alive connection is closed after this' },
  { key: 'requestTimeoutMs', env: 'KILN_REQUEST_TIMEOUT_SECONDS', fallback: 60, unit: 'seconds', meaning: 'the body of any request but a blob or build-source upload must arrive within this (408)' },
  { key: 'minBytesPerSecond', env: 'KILN_BLOB_MIN_BYTES_PER_SECOND', fallback: 1024, unit: 'bytes/s', zeroDisables: true, meaning: 'a blob upload or download slower than this over a window is cut off; 0 disables' },
  { key: 'rateWindowMs', env: 'KILN_BLOB_RATE_WINDOW_SECONDS', fallback: 30, unit: 'seconds', meaning: 'the window over which the blob rate is measured' },
  { key: 'maxConnections', env: 'KILN_MAX_CONNECTIONS', fallback: 8192, unit: 'count', meaning: 'open connections in all; more are answered 429 and closed' },
  { key: 'maxConnectionsPerAddress', env: 'KILN_MAX_CONNECTIONS_PER_ADDRESS', fallback: 512, unit: 'count', meaning: 'open connections from one client address; more are answered 429 and closed' },
  { key: 'maxUploadSessionsPerTenant', env: 'KILN_MAX_UPLOAD_SESSIONS_PER_TENANT', fallback: 1000, unit: 'count', meaning: 'upload sessions one tenant may have open (429)' },
  { key: 'maxUploadSessions', env: 'KILN_MAX_UPLOAD_SESSIONS', fallback: 20000, unit: 'count', meaning: 'upload sessions open in all (429)' },
  { key: 'maxConcurrentUploadsPerTenant', env: 'KILN_MAX_CONCURRENT_UPLOADS_PER_TENANT', fallback: 64, unit: 'count', meaning: 'upload bodies one tenant may stream at once (429)' },
  { key: 'maxConcurrentUploads', env: 'KILN_MAX_CONCURRENT_UPLOADS', fallback: 1024, unit: 'count', meaning: 'upload bodies streaming at once in all (429)' },
  { key: 'emptyUploadTtlMs', env: 'KILN_UPLOAD_EMPTY_TTL_SECONDS', fallback: 600, unit: 'seconds', meaning: 'an upload session that never received a byte is removed after this' },
];

export function limitSetting(key: LimitKey): LimitSetting {
  return LIMIT_SETTINGS.find((s) => s.key === key)!;
}

/** The environment variable that sets a limit, for error messages. */
export function limitEnv(key: LimitKey): string {
  return limitSetting(key).env;
}

export function loadLimits(env: NodeJS.ProcessEnv = process.env): Limits {
  const limits = {} as Limits;
  for (const setting of LIMIT_SETTINGS) {
    const raw = env[setting.env]?.trim();
    const value = raw === undefined || raw === '' ? setting.fallback : Number(raw);
    const ok = Number.isFinite(value) && (value > 0 || (value === 0 && setting.zeroDisables === true));
    if (!ok) {
      throw new Error(`${setting.env} must be a ${setting.zeroDisables ? 'non-negative' : 'positive'} number (${setting.unit}), got "${raw}"`);
    }
    if (setting.unit === 'count' && !Number.isInteger(value)) throw new Error(`${setting.env} must be a whole number, got "${raw}"`);
    limits[setting.key] = setting.unit === 'seconds' ? Math.round(value * 1000) : value;
  }
  return limits;
}

/** The limit as the README and /metrics state it: seconds, counts and bytes/s in their own unit. */
export function limitValue(limits: Limits, setting: LimitSetting): number {
  const value = limits[setting.key];
  return setting.unit === 'seconds' ? value / 1000 : value;
}
