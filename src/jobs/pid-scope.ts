// Where a pid means something: this host and this pid namespace. The names
// of what a worker leaves behind (scratch directories, bake cgroups) carry
// it, so that whoever finds them later can tell whether their maker is dead,
// and never judges by a pid of another host (a data directory on a shared
// disk) or of another container (a cgroup tree several containers see).
import { readlinkSync } from 'node:fs';
import os from 'node:os';

function pidNamespace(): string {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '0';
  } catch {
    return '0';
  }
}

/** `<host>_<pid namespace inode>`, with anything a file name should not hold replaced. */
export const PID_SCOPE = `${os.hostname().replace(/[^A-Za-z0-9.-]/g, '_') || 'localhost'}_${pidNamespace()}`;

/** The process that made a name. */
export interface PidOwner {
  scope: string;
  pid: number;
}

/** Who made a name, where `pattern` captures the scope and then the pid; null when it does not match. */
export function ownerOf(pattern: RegExp, name: string): PidOwner | null {
  const m = pattern.exec(name);
  return m ? { scope: m[1]!, pid: Number(m[2]) } : null;
}
