// Builds the configured builder backend from the environment (KILN_BUILDER,
// BUILDKIT_HOST, PATH). The choice itself is the pure selectBuilder().
import { selectBuilder, type BuilderBackend } from './backend.js';
import { BuildahBackend } from './buildah-backend.js';
import { BuildkitBackend } from './buildkit-backend.js';
import { isOnPath } from './process.js';

export async function createBuilderBackend(env: NodeJS.ProcessEnv = process.env): Promise<BuilderBackend> {
  const name = selectBuilder({
    requested: env.KILN_BUILDER,
    buildkitHost: env.BUILDKIT_HOST,
    hasBuildctl: await isOnPath('buildctl', env.PATH ?? ''),
  });
  if (name === 'buildah') return new BuildahBackend();
  const host = env.BUILDKIT_HOST?.trim();
  return new BuildkitBackend(host ? { host } : {});
}
