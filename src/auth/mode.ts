// Whether Kiln checks credentials (issue 4, "Modes"). Pure.
import { BlockList, isIPv4, isIPv6 } from 'node:net';

export type AuthMode = 'off' | 'token';

export interface AuthModeInput {
  /** The `KILN_AUTH` setting as given, if any. */
  setting: string | undefined;
  /** The address `kiln serve` listens on. */
  host: string;
  /** `--insecure-no-auth`: the operator accepts an open registry on a reachable address. */
  insecureNoAuth: boolean;
}

/** A configuration Kiln refuses to start with; the message says what to change. */
export class AuthModeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthModeError';
  }
}

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** 127.0.0.0/8, ::1 (also IPv4-mapped or bracketed) and `localhost`: reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.trim().replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (bare === 'localhost' || bare === 'localhost.') return true;
  if (isIPv4(bare)) return loopback.check(bare, 'ipv4');
  if (isIPv6(bare)) return loopback.check(bare, 'ipv6');
  return false;
}

/**
 * Default: off on loopback, token elsewhere. `off` on a reachable address
 * needs `--insecure-no-auth`, which alone also turns auth off there.
 */
export function decideAuthMode({ setting, host, insecureNoAuth }: AuthModeInput): AuthMode {
  const wanted = setting?.trim().toLowerCase() || undefined;
  if (wanted !== undefined && wanted !== 'off' && wanted !== 'token') {
    throw new AuthModeError(`KILN_AUTH must be "off" or "token", not "${setting}"`);
  }
  const local = isLoopbackHost(host);
  if (wanted === 'token') return 'token';
  if (wanted === undefined) return local ? 'off' : insecureNoAuth ? 'off' : 'token';
  if (local || insecureNoAuth) return 'off';
  throw new AuthModeError(
    `refusing to start with KILN_AUTH=off on ${host}: that address is reachable from other machines, and anyone ` +
      'could push, pull and delete every image. Set KILN_AUTH=token (or leave it unset), listen on 127.0.0.1, ' +
      'or pass --insecure-no-auth if the network is trusted.',
  );
}
