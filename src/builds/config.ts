// Build settings from the environment. Pure.
//
// KILN_MAX_CONCURRENT_BUILDS     builds running at once (default 2)
// KILN_BUILDS_PER_TENANT         builds of one tenant running at once (default half the slots, at least 1)
// KILN_BUILD_QUEUE_PER_TENANT    builds of one tenant waiting (default 10)
// KILN_REGISTRY_HOST             host[:port] where builders reach this registry
//                                (default: the address the server is bound to; 0.0.0.0 and :: become loopback)
// KILN_REGISTRY_INSECURE         the builders talk plain HTTP to it (default true: Kiln serves plain HTTP)
// KILN_BUILDKIT_DIR              directory holding buildkitd and buildctl (default: PATH)
// BUILDKIT_HOST                  long-running BuildKit daemons to use instead of one per build (comma-separated)
// KILN_CNI_BIN_DIR               CNI plugins for the RUN steps' bridge (default /usr/lib/cni, else /opt/cni/bin)
// KILN_BUILD_SUBNET              the RUN steps' bridges take /24s of it (default 10.213.0.0/16)
// KILN_BUILDKIT_START_TIMEOUT_SECONDS  how long a new daemon may take to answer (default 60)
// KILN_BUILD_TIMEOUT_SECONDS     timeout of a build that asks for none (default 1800)
// KILN_BUILD_MAX_TIMEOUT_SECONDS the most a tenant may ask for (default 3600)
// KILN_BUILD_ADMIN_MAX_TIMEOUT_SECONDS  the most an admin may ask for (default 86400)
// KILN_BUILD_MAX_SOURCE_BYTES    size cap of the uploaded source archive (default 256 MiB)
// KILN_BUILD_LOG_MAX_BYTES       size cap of a build's log (default 16 MiB)
// KILN_BUILD_RETENTION           how long an ended build's files (source, log) are kept (default 7d; 0 keeps them)
// KILN_BUILD_SSE_HEARTBEAT_SECONDS  a comment on a quiet log stream this often (default 15)
// KILN_BUILD_LOG_POLL_SECONDS    how often a log stream of a build another process runs reads the log and status (default 0.5)
// KILN_BUILD_LOG_PUBLISH_SECONDS on a store without local files (S3), how often a running build's grown log is stored whole, for followers on other servers (default 2)
import { parseDuration } from '../auth/duration.js';
import { parseSubnet } from './buildkit/daemon-config.js';
import { normalizeRegistryHost } from './plan.js';

export interface BuildsConfig {
  maxConcurrent: number;
  runningPerTenant: number;
  queuedPerTenant: number;
  /** null: the listen address actually bound. */
  registryHost: string | null;
  registryInsecure: boolean;
  buildkitDir: string | undefined;
  /** BUILDKIT_HOST addresses; empty: an ephemeral daemon per build. */
  buildkitPool: string[];
  cniBinDir: string | undefined;
  buildSubnet: string;
  daemonStartTimeoutMs: number;
  defaultTimeoutSeconds: number;
  maxTimeoutSeconds: number;
  adminMaxTimeoutSeconds: number;
  maxSourceBytes: number;
  logMaxBytes: number;
  /** null: ended builds' files are kept. */
  retentionMs: number | null;
  sseHeartbeatMs: number;
  /** A followed log of a build run by another process (a shared database) is read this often. */
  logPollMs: number;
  /** On a store without local files (S3), a running build's log is published this often while it grows. */
  logPublishMs: number;
}

export function loadBuildsConfig(env: NodeJS.ProcessEnv): BuildsConfig {
  const host = env.KILN_REGISTRY_HOST?.trim();
  const maxConcurrent = positiveInteger(env.KILN_MAX_CONCURRENT_BUILDS, 2, 'KILN_MAX_CONCURRENT_BUILDS');
  const adminMaxTimeoutSeconds = positiveInteger(env.KILN_BUILD_ADMIN_MAX_TIMEOUT_SECONDS, 86_400, 'KILN_BUILD_ADMIN_MAX_TIMEOUT_SECONDS');
  const maxTimeoutSeconds = positiveInteger(env.KILN_BUILD_MAX_TIMEOUT_SECONDS, Math.min(3600, adminMaxTimeoutSeconds), 'KILN_BUILD_MAX_TIMEOUT_SECONDS');
  const defaultTimeoutSeconds = positiveInteger(env.KILN_BUILD_TIMEOUT_SECONDS, Math.min(1800, maxTimeoutSeconds), 'KILN_BUILD_TIMEOUT_SECONDS');
  if (defaultTimeoutSeconds > maxTimeoutSeconds) {
    throw new Error(`KILN_BUILD_TIMEOUT_SECONDS (${defaultTimeoutSeconds}) is above KILN_BUILD_MAX_TIMEOUT_SECONDS (${maxTimeoutSeconds})`);
  }
  if (maxTimeoutSeconds > adminMaxTimeoutSeconds) {
    throw new Error(`KILN_BUILD_MAX_TIMEOUT_SECONDS (${maxTimeoutSeconds}) is above KILN_BUILD_ADMIN_MAX_TIMEOUT_SECONDS (${adminMaxTimeoutSeconds})`);
  }
  const subnet = env.KILN_BUILD_SUBNET?.trim() || '10.213.0.0/16';
  parseSubnet(subnet);
  const retentionMs = retention(env.KILN_BUILD_RETENTION);
  return {
    maxConcurrent,
    runningPerTenant: positiveInteger(env.KILN_BUILDS_PER_TENANT, Math.max(1, Math.floor(maxConcurrent / 2)), 'KILN_BUILDS_PER_TENANT'),
    queuedPerTenant: positiveInteger(env.KILN_BUILD_QUEUE_PER_TENANT, 10, 'KILN_BUILD_QUEUE_PER_TENANT'),
    registryHost: host ? checkedHost(host) : null,
    registryInsecure: flag(env.KILN_REGISTRY_INSECURE, true, 'KILN_REGISTRY_INSECURE'),
    buildkitDir: env.KILN_BUILDKIT_DIR?.trim() || undefined,
    buildkitPool: (env.BUILDKIT_HOST ?? '').split(',').map((a) => a.trim()).filter(Boolean),
    cniBinDir: env.KILN_CNI_BIN_DIR?.trim() || undefined,
    buildSubnet: subnet,
    daemonStartTimeoutMs: positiveInteger(env.KILN_BUILDKIT_START_TIMEOUT_SECONDS, 60, 'KILN_BUILDKIT_START_TIMEOUT_SECONDS') * 1000,
    defaultTimeoutSeconds,
    maxTimeoutSeconds,
    adminMaxTimeoutSeconds,
    maxSourceBytes: positiveInteger(env.KILN_BUILD_MAX_SOURCE_BYTES, 256 * 1024 * 1024, 'KILN_BUILD_MAX_SOURCE_BYTES'),
    logMaxBytes: positiveInteger(env.KILN_BUILD_LOG_MAX_BYTES, 16 * 1024 * 1024, 'KILN_BUILD_LOG_MAX_BYTES'),
    retentionMs,
    sseHeartbeatMs: positiveNumber(env.KILN_BUILD_SSE_HEARTBEAT_SECONDS, 15, 'KILN_BUILD_SSE_HEARTBEAT_SECONDS') * 1000,
    logPollMs: positiveNumber(env.KILN_BUILD_LOG_POLL_SECONDS, 0.5, 'KILN_BUILD_LOG_POLL_SECONDS') * 1000,
    logPublishMs: positiveNumber(env.KILN_BUILD_LOG_PUBLISH_SECONDS, 2, 'KILN_BUILD_LOG_PUBLISH_SECONDS') * 1000,
  };
}

/**
 * `host:port` for builders from the address the server is bound to: the
 * wildcard addresses are not reachable as such, so they become loopback. Pure.
 */
export function registryHostFromAddress(address: { address: string; port: number }): string {
  let host = address.address;
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  if (host === '::' || host === '::0') host = '[::1]';
  else if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `${host}:${address.port}`;
}

function checkedHost(value: string): string {
  try {
    return normalizeRegistryHost(value);
  } catch (err) {
    throw new Error(`KILN_REGISTRY_HOST: ${(err as Error).message}`);
  }
}

function positiveInteger(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value.trim() === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive whole number, got "${value}"`);
  return n;
}

/** KILN_BUILD_RETENTION: a duration like 7d or 12h; `0` or `off` keeps the files for good. */
function retention(value: string | undefined): number | null {
  const text = (value ?? '').trim().toLowerCase();
  if (text === '0' || text === 'off') return null;
  try {
    return parseDuration(text === '' ? '7d' : text) * 1000;
  } catch (err) {
    throw new Error(`KILN_BUILD_RETENTION="${value}" ${(err as Error).message.replace(/^"[^"]*" /, '')}; 0 keeps ended builds' files`);
  }
}

function positiveNumber(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value.trim() === '') return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${value}"`);
  return n;
}

function flag(value: string | undefined, fallback: boolean, name: string): boolean {
  if (value === undefined || value.trim() === '') return fallback;
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new Error(`${name} must be true or false, got "${value}"`);
}
