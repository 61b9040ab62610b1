// RUN steps of a build must not reach the build host. Their own network
// namespace keeps them off the host's loopback, but the host answers on the
// bridge's gateway address for every service bound to all interfaces. One
// rule per bridge turns that away: packets that come in on the bridge for the
// host itself (INPUT) are rejected, while traffic the host forwards elsewhere
// (FORWARD) is untouched.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BuildError } from '../errors.js';

const run = promisify(execFile);

/** The iptables rule for `bridge`, after `-I`/`-D INPUT`. Pure. */
export function inputRejectRule(bridge: string): string[] {
  if (!/^[a-z0-9]{1,15}$/.test(bridge)) throw new Error(`"${bridge}" is not a bridge name Kiln makes`);
  return ['-i', bridge, '-m', 'comment', '--comment', `kiln-build ${bridge}`, '-j', 'REJECT'];
}

async function iptables(tool: 'iptables' | 'ip6tables', args: string[]): Promise<void> {
  await run(tool, ['-w', '10', ...args], { timeout: 20_000 });
}

/**
 * Rejects what comes in on `bridge` for the host; resolves with a function
 * that removes the rules again. IPv4 must work (or the build does not run);
 * IPv6 is covered where the host has ip6tables.
 */
export async function isolateBridge(bridge: string): Promise<() => Promise<void>> {
  const rule = inputRejectRule(bridge);
  try {
    await iptables('iptables', ['-I', 'INPUT', '1', ...rule]);
  } catch (err) {
    throw new BuildError(
      'build-failed',
      `could not keep RUN steps away from the host: iptables failed (${(err as Error).message.split('\n')[0]}); install iptables and run Kiln as root`,
    );
  }
  const v6 = await iptables('ip6tables', ['-I', 'INPUT', '1', ...rule]).then(
    () => true,
    () => false,
  );
  return async () => {
    await iptables('iptables', ['-D', 'INPUT', ...rule]).catch(() => undefined);
    if (v6) await iptables('ip6tables', ['-D', 'INPUT', ...rule]).catch(() => undefined);
  };
}

/** Removes rules that stopped processes left for bridges that no longer exist. */
export async function removeStaleRules(bridgeExists: (name: string) => boolean): Promise<number> {
  let removed = 0;
  for (const tool of ['iptables', 'ip6tables'] as const) {
    const listing = await run(tool, ['-w', '10', '-S', 'INPUT'], { timeout: 20_000 }).then(
      (r) => r.stdout,
      () => '',
    );
    for (const bridge of staleBridges(listing)) {
      if (bridgeExists(bridge)) continue;
      await iptables(tool, ['-D', 'INPUT', ...inputRejectRule(bridge)]).then(
        () => removed++,
        () => undefined,
      );
    }
  }
  return removed;
}

/** Bridges named by Kiln's rules in `iptables -S INPUT` output. Pure. */
export function staleBridges(listing: string): string[] {
  const found = new Set<string>();
  for (const m of listing.matchAll(/--comment "?kiln-build ([a-z0-9]{1,15})"?/g)) found.add(m[1]!);
  return [...found];
}
