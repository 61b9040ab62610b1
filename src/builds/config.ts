// Build settings from the environment. Pure.
//
// KILN_MAX_CONCURRENT_BUILDS   builds that run at once (default 2); the rest wait, FIFO
// KILN_REGISTRY_HOST           host[:port] where builders reach this registry
//                              (default: the address the server is bound to; 0.0.0.0 and :: become loopback)
// KILN_REGISTRY_INSECURE       the builders talk plain HTTP to it (default true: Kiln serves plain HTTP)
// KILN_BUILDER                 buildkit | buildah | auto (default auto; see selectBuilder)
// BUILDKIT_HOST                the BuildKit daemon for the buildkit builder
// KILN_BUILD_TIMEOUT_SECONDS   default timeout of a build (default 3600)
// KILN_BUILD_MAX_TIMEOUT_SECONDS  the most a request may ask for (default 86400)
// KILN_BUILD_MAX_SOURCE_BYTES  size cap of the uploaded source archive (default 256 MiB)
import { normalizeRegistryHost } from './plan.js';

export interface BuildsConfig {
  maxConcurrent: number;
  /** null: the listen address actually bound. */
  registryHost: string | null;
  registryInsecure: boolean;
  builder: string | undefined;
  buildkitHost: string | undefined;
  defaultTimeoutSeconds: number;
  maxTimeoutSeconds: number;
  maxSourceBytes: number;
}

export function loadBuildsConfig(env: NodeJS.ProcessEnv): BuildsConfig {
  const host = env.KILN_REGISTRY_HOST?.trim();
  const maxTimeoutSeconds = positiveInteger(env.KILN_BUILD_MAX_TIMEOUT_SECONDS, 86_400, 'KILN_BUILD_MAX_TIMEOUT_SECONDS');
  const defaultTimeoutSeconds = positiveInteger(env.KILN_BUILD_TIMEOUT_SECONDS, Math.min(3600, maxTimeoutSeconds), 'KILN_BUILD_TIMEOUT_SECONDS');
  if (defaultTimeoutSeconds > maxTimeoutSeconds) {
    throw new Error(`KILN_BUILD_TIMEOUT_SECONDS (${defaultTimeoutSeconds}) is above KILN_BUILD_MAX_TIMEOUT_SECONDS (${maxTimeoutSeconds})`);
  }
  return {
    maxConcurrent: positiveInteger(env.KILN_MAX_CONCURRENT_BUILDS, 2, 'KILN_MAX_CONCURRENT_BUILDS'),
    registryHost: host ? checkedHost(host) : null,
    registryInsecure: flag(env.KILN_REGISTRY_INSECURE, true, 'KILN_REGISTRY_INSECURE'),
    builder: env.KILN_BUILDER?.trim() || undefined,
    buildkitHost: env.BUILDKIT_HOST?.trim() || undefined,
    defaultTimeoutSeconds,
    maxTimeoutSeconds,
    maxSourceBytes: positiveInteger(env.KILN_BUILD_MAX_SOURCE_BYTES, 256 * 1024 * 1024, 'KILN_BUILD_MAX_SOURCE_BYTES'),
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

function flag(value: string | undefined, fallback: boolean, name: string): boolean {
  if (value === undefined || value.trim() === '') return fallback;
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new Error(`${name} must be true or false, got "${value}"`);
}
