// What a build request may carry to the builder, checked before any of it
// reaches a command line or the builder's environment. Pure.
import { invalidInput } from './errors.js';

export interface CacheUse {
  /** Dockerfile steps that change the filesystem (RUN, COPY, ADD, WORKDIR): the ones BuildKit lists. */
  totalSteps: number;
  /** Of those, the steps the builder took from a cache instead of running them. */
  cachedSteps: number;
}

export type BuildPhase = 'building' | 'pushing';

const BUILD_ARG_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PLATFORM = /^[a-z0-9_]+\/[a-z0-9_]+(?:\/[a-z0-9_.]+)?$/;
// What BuildKit takes as a secret id and a Dockerfile can name in --mount=type=secret,id=….
const SECRET_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const MAX_SECRETS = 16;
export const MAX_SECRET_BYTES = 64 * 1024;

/** Checks build args and platform before they reach a builder's command line. */
export function checkBuildOptions(buildArgs: Record<string, string>, platform: string | undefined): void {
  for (const [name, value] of Object.entries(buildArgs)) {
    if (!BUILD_ARG_NAME.test(name)) {
      throw invalidInput(`build arg name "${name}" must be letters, digits and "_", not starting with a digit`);
    }
    if (typeof value !== 'string') throw invalidInput(`build arg "${name}" must have a string value`);
  }
  if (platform !== undefined && !PLATFORM.test(platform)) {
    throw invalidInput(`platform "${platform}" must look like os/arch or os/arch/variant, e.g. linux/amd64`);
  }
}

/** Checks build secrets (id → value); the messages name ids, never values. */
export function checkSecrets(secrets: Record<string, string>): void {
  const ids = Object.keys(secrets);
  if (ids.length > MAX_SECRETS) throw invalidInput(`a build may carry at most ${MAX_SECRETS} secrets, not ${ids.length}`);
  for (const id of ids) {
    if (!SECRET_ID.test(id)) throw invalidInput(`secret id "${id}" must be 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit`);
    const value = secrets[id];
    if (typeof value !== 'string' || value === '') throw invalidInput(`secret "${id}" must have a non-empty string value`);
    if (Buffer.byteLength(value) > MAX_SECRET_BYTES) throw invalidInput(`secret "${id}" is larger than ${MAX_SECRET_BYTES} bytes`);
  }
}
