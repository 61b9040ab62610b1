// The per-build registry credentials file: the Docker `config.json` buildctl
// reads (DOCKER_CONFIG=<dir>) to answer the daemon's auth requests. It lives
// in the build's private scratch dir on the host, readable by root only; no
// RUN step sees a host path.
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface RegistryCredentials {
  username: string;
  /** The build's short-lived token. */
  password: string;
}

/** config.json text granting `credentials` on `registry` (host[:port]); none → anonymous. Pure. */
export function dockerConfigJson(registry: string, credentials: RegistryCredentials | null): string {
  if (credentials === null) return JSON.stringify({ auths: {} });
  const auth = Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64');
  return JSON.stringify({ auths: { [registry]: { auth } } });
}

/** Writes `<dir>/config.json` (dir 0700, file 0600) and returns `dir`, the value for DOCKER_CONFIG. */
export async function writeDockerConfig(dir: string, registry: string, credentials: RegistryCredentials | null): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const file = path.join(dir, 'config.json');
  await writeFile(file, dockerConfigJson(registry, credentials), { mode: 0o600 });
  await chmod(file, 0o600);
  return dir;
}
