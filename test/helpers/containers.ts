// An environment for skopeo and buildah that reads no host configuration or
// credentials and writes only below `work`: tests pass credentials by flag.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface ContainersEnv {
  env: NodeJS.ProcessEnv;
  /** A signature policy accepting anything (`--policy` / `--signature-policy`). */
  policy: string;
}

export async function isolatedContainersEnv(work: string, options: { vfsStorage?: boolean } = {}): Promise<ContainersEnv> {
  const policy = path.join(work, 'policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  await writeFile(path.join(work, 'auth.json'), '{"auths":{}}');
  await writeFile(path.join(work, 'registries.conf'), '');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: work,
    TMPDIR: work,
    XDG_RUNTIME_DIR: path.join(work, 'xdg'),
    XDG_CONFIG_HOME: path.join(work, 'config'),
    REGISTRY_AUTH_FILE: path.join(work, 'auth.json'),
    CONTAINERS_REGISTRIES_CONF: path.join(work, 'registries.conf'),
  };
  if (options.vfsStorage) {
    await writeFile(path.join(work, 'storage.conf'), `[storage]\ndriver = "vfs"\nrunroot = "${work}/runroot"\ngraphroot = "${work}/root"\n`);
    env.CONTAINERS_STORAGE_CONF = path.join(work, 'storage.conf');
  }
  await mkdir(env.XDG_RUNTIME_DIR!, { recursive: true, mode: 0o700 });
  return { env, policy };
}
