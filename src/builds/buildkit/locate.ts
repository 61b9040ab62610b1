// Finding what an ephemeral BuildKit needs on this host, or saying what is
// missing: buildkitd and buildctl (KILN_BUILDKIT_DIR, else PATH), runc, the
// CNI plugins of the RUN steps' bridge, and root.
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { isOnPath } from '../process.js';
import type { DaemonTools } from './daemon.js';

export const CNI_PLUGINS = ['bridge', 'host-local', 'loopback', 'firewall'] as const;
/** Where distributions put CNI plugins (Debian's containernetworking-plugins: /usr/lib/cni). */
export const CNI_DIRS = ['/usr/lib/cni', '/opt/cni/bin'] as const;

export interface LocateOptions {
  /** KILN_BUILDKIT_DIR: a directory holding buildkitd and buildctl. */
  dir?: string;
  /** BUILDKIT_HOST is set: only buildctl is needed here. */
  usesPool: boolean;
  /** KILN_CNI_BIN_DIR. */
  cniBinDir?: string;
  pathVariable?: string;
  uid?: number;
}

export type Located = { tools: DaemonTools; cniBinDir: string } | { problem: string };

export async function locateBuildkit(options: LocateOptions): Promise<Located> {
  const pathVariable = options.pathVariable ?? process.env.PATH ?? '';
  const find = async (name: string): Promise<string | null> => {
    if (options.dir !== undefined) {
      const file = path.join(options.dir, name);
      return (await executable(file)) ? file : null;
    }
    for (const dir of pathVariable.split(path.delimiter)) {
      if (dir !== '' && (await executable(path.join(dir, name)))) return path.join(dir, name);
    }
    return null;
  };
  const where = options.dir !== undefined ? `in KILN_BUILDKIT_DIR=${options.dir}` : 'on PATH';
  const buildctl = await find('buildctl');
  if (buildctl === null) return { problem: `buildctl is not ${where} (BuildKit v0.20 or later: see the README, "Builds")` };
  if (options.usesPool) return { tools: { buildctl, buildkitd: '' }, cniBinDir: '' };

  const buildkitd = await find('buildkitd');
  if (buildkitd === null) return { problem: `buildkitd is not ${where} (BuildKit v0.20 or later: see the README, "Builds")` };
  if ((options.uid ?? process.getuid?.() ?? 0) !== 0) {
    return { problem: 'Kiln starts a BuildKit daemon per build, which needs root; run as root or point BUILDKIT_HOST at daemons you run' };
  }
  if (!(await isOnPath('runc', pathVariable)) && !(await isOnPath('buildkit-runc', pathVariable))) {
    return { problem: 'runc is not on PATH (apt-get install runc); BuildKit runs RUN steps with it' };
  }
  const cniDirs = options.cniBinDir !== undefined ? [options.cniBinDir] : [...CNI_DIRS];
  for (const dir of cniDirs) {
    const present = await Promise.all(CNI_PLUGINS.map((p) => executable(path.join(dir, p))));
    if (present.every(Boolean)) return { tools: { buildctl, buildkitd }, cniBinDir: dir };
  }
  return {
    problem: `the CNI plugins ${CNI_PLUGINS.join(', ')} are not in ${cniDirs.join(' or ')} (apt-get install containernetworking-plugins, or set KILN_CNI_BIN_DIR); RUN steps get their own network through them`,
  };
}

async function executable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
