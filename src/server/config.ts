// Server configuration from flags and environment, with the embedded defaults.
import { decideAuthMode, type AuthMode } from '../auth/mode.js';
import { DEFAULT_PUBLIC_REPOS_SETTING, parsePublicRepos, type PublicRepos } from '../auth/public-repos.js';
import { loadBuildsConfig, type BuildsConfig } from '../builds/config.js';
import { loadGcConfig, type GcConfig } from '../gc/config.js';
import { loadJobSettings, type JobSettings } from '../jobs/settings.js';
import { loadLimits, type Limits } from './limits.js';
import { loadS3Config, type S3Config } from '../store/s3/config.js';

export interface ServerConfig {
  host: string;
  port: number;
  dataDir: string;
  /** `postgres://…` (KILN_DATABASE_URL, --database-url): metadata in PostgreSQL, shared by several processes; unset: SQLite in the data dir. */
  databaseUrl?: string;
  /** Connections of the PostgreSQL pool (KILN_DATABASE_POOL). */
  databasePool: number;
  logLevel: string;
  /** fsync blobs before acknowledging them. */
  durable: boolean;
  /** Platforms of a multi-platform index to bake. */
  platforms: string[];
  /** Worker processes, job leases and attempts: KILN_WORKERS, KILN_JOB_LEASE, KILN_JOB_MAX_ATTEMPTS (src/jobs/settings.ts). */
  jobs: JobSettings;
  /** The KILN_* settings the configuration was read from, handed on to the worker processes. */
  settingsEnv: Record<string, string>;
  authMode: AuthMode;
  /** An operator-provided signing key; otherwise one is generated in the data dir. */
  authKeyFile?: string;
  /** KILN_PUBLIC_REPOS: repos every tenant may pull and only admins push (platform base images). */
  publicRepos: PublicRepos;
  /** Garbage collection: KILN_GC_GRACE, KILN_GC_INTERVAL, KILN_CACHE_MAX_AGE, KILN_CACHE_KEEP_GLOBAL. */
  gc: GcConfig;
  /** S3 for every byte Kiln keeps (KILN_S3_BUCKET, …; src/store/s3/config.ts); null: the data directory. */
  s3: S3Config | null;
  /** Builds: KILN_MAX_CONCURRENT_BUILDS, KILN_REGISTRY_HOST, KILN_REGISTRY_INSECURE, KILN_BUILDKIT_DIR, … (src/builds/config.ts). */
  builds: BuildsConfig;
  /** Timeouts, rates and quotas that protect the server (src/server/limits.ts). */
  limits: Limits;
}

export interface ConfigFlags {
  listen?: string;
  dataDir?: string;
  databaseUrl?: string;
  logLevel?: string;
  insecureNoAuth?: boolean;
  workers?: string;
}

export const DEFAULT_LISTEN = '127.0.0.1:5000';

export function loadConfig(flags: ConfigFlags = {}, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const { host, port } = parseListen(flags.listen ?? env.KILN_LISTEN ?? DEFAULT_LISTEN);
  return {
    host,
    port,
    dataDir: flags.dataDir ?? env.KILN_DATA_DIR ?? './kiln-data',
    databaseUrl: databaseUrlFrom(flags.databaseUrl, env),
    databasePool: positiveNumber(env.KILN_DATABASE_POOL, 20, 'KILN_DATABASE_POOL'),
    logLevel: flags.logLevel ?? env.KILN_LOG_LEVEL ?? 'info',
    durable: env.KILN_FSYNC !== 'false',
    platforms: (env.KILN_PLATFORMS ?? 'linux/amd64').split(',').map((p) => p.trim()).filter(Boolean),
    jobs: loadJobSettings(env, { workers: flags.workers }),
    settingsEnv: Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[0].startsWith('KILN_') && e[1] !== undefined)),
    authMode: decideAuthMode({ setting: env.KILN_AUTH, host, insecureNoAuth: flags.insecureNoAuth ?? false }),
    authKeyFile: env.KILN_AUTH_KEY_FILE || undefined,
    publicRepos: parsePublicRepos(env.KILN_PUBLIC_REPOS ?? DEFAULT_PUBLIC_REPOS_SETTING),
    gc: loadGcConfig(env),
    s3: loadS3Config(env),
    builds: loadBuildsConfig(env),
    limits: loadLimits(env),
  };
}

/** The database URL from the flag or KILN_DATABASE_URL; only PostgreSQL URLs are understood. */
export function databaseUrlFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const url = flag ?? env.KILN_DATABASE_URL;
  if (url === undefined || url === '') return undefined;
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new Error('--database-url / KILN_DATABASE_URL must be a postgres:// (or postgresql://) URL; leave it unset for SQLite in the data directory');
  }
  return url;
}

/** `host:port`, `[v6]:port` or `:port` (all interfaces). */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value.trim());
  if (!m) throw new Error(`--listen "${value}" must look like 127.0.0.1:5000, [::1]:5000 or :5000`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`--listen port ${port} is out of range`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function positiveNumber(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${value}"`);
  return n;
}
