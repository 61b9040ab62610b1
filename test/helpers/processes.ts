// Finds processes a test expects to be gone (builders after cancel or timeout).
import { readdir, readFile } from 'node:fs/promises';

/** Live (non-zombie) processes whose command line mentions `needle`. */
export async function processesMentioning(needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((n) => /^\d+$/.test(n))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (cmdline.includes(needle) && !/^\d+ \(.*\) Z/.test(stat)) found.push(`${pid}: ${cmdline.replaceAll('\0', ' ')}`);
  }
  return found;
}
