// What an ephemeral buildkitd is told: its buildkitd.toml (written per build)
// and the bridge its RUN steps are attached to. Pure.
//
// - Workers: the OCI worker (runc) only; no containerd worker; its own GC off
//   (the daemon lives for one build).
// - RUN steps: `networkMode = "bridge"`, BuildKit's own CNI bridge with the
//   CNI plugins of the host (`cniBinaryPath`), on a bridge and /24 of this
//   daemon's own, so two daemons never share (or remove) each other's bridge.
//   Never host networking, and no insecure entitlements (`network.host`,
//   `security.insecure`) the client could ask for.
// - Registries: TLS is off only for this registry when it speaks plain HTTP;
//   every other registry (FROM images elsewhere) keeps BuildKit's defaults.
import { normalizeRegistryHost } from '../plan.js';

export interface BridgeNetwork {
  /** Interface name, at most 15 characters. */
  name: string;
  /** `a.b.c.0/24`. */
  subnet: string;
}

export interface DaemonConfigInput {
  /** `host:port` of this registry. */
  registry: string;
  /** The registry speaks plain HTTP. */
  insecure: boolean;
  bridge: BridgeNetwork;
  /** Directory of the CNI plugins (`bridge`, `host-local`, `loopback`, `firewall`). */
  cniBinDir: string;
}

export function buildkitdToml(input: DaemonConfigInput): string {
  const q = (value: string) => JSON.stringify(value);
  const lines = [
    '# Written by Kiln for one build (src/builds/buildkit/daemon-config.ts).',
    'insecure-entitlements = []',
    '',
    '[worker.oci]',
    '  enabled = true',
    '  gc = false',
    '  noProcessSandbox = false',
    '  networkMode = "bridge"',
    `  cniBinaryPath = ${q(input.cniBinDir)}`,
    `  bridgeName = ${q(input.bridge.name)}`,
    `  bridgeSubnet = ${q(input.bridge.subnet)}`,
    '',
    '[worker.containerd]',
    '  enabled = false',
    '',
    '[cdi]',
    '  disabled = true',
  ];
  if (input.insecure) {
    lines.push('', `[registry.${q(normalizeRegistryHost(input.registry))}]`, '  http = true');
  }
  return `${lines.join('\n')}\n`;
}

export interface Route {
  /** IPv4 destination and mask as 32-bit unsigned numbers. */
  destination: number;
  mask: number;
}

/** The routes of `/proc/net/route` (hex, host byte order as the kernel writes it on little-endian machines). */
export function parseProcRoutes(text: string): Route[] {
  const routes: Route[] = [];
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8) continue;
    const destination = littleEndianHex(fields[1]!);
    const mask = littleEndianHex(fields[7]!);
    if (destination !== null && mask !== null) routes.push({ destination, mask });
  }
  return routes;
}

function littleEndianHex(hex: string): number | null {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return null;
  return Buffer.from(hex, 'hex').readUInt32LE(0);
}

/** `10.213.0.0/16` → its network and prefix length; throws naming KILN_BUILD_SUBNET. */
export function parseSubnet(value: string): { network: number; prefix: number } {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(value.trim());
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const prefix = m ? Number(m[5]) : NaN;
  if (!m || octets.some((o) => o > 255) || prefix < 8 || prefix > 24) {
    throw new Error(`KILN_BUILD_SUBNET "${value}" must be an IPv4 network from /8 to /24, e.g. 10.213.0.0/16`);
  }
  const network = ipNumber(octets) & maskOf(prefix);
  return { network, prefix };
}

/**
 * A /24 inside `subnet` for a new daemon's bridge: not `taken` by this
 * process and overlapping no route of the host (another process's bridge, a
 * real network). `pick` chooses among the free ones (random in use, so two
 * processes starting at once rarely pick the same). Null when none is free.
 */
export function pickBridgeNetwork(
  subnet: string,
  routes: readonly Route[],
  taken: ReadonlySet<string>,
  pick: (count: number) => number,
): BridgeNetwork | null {
  const { network, prefix } = parseSubnet(subnet);
  const count = 2 ** (24 - prefix);
  const free: number[] = [];
  for (let i = 0; i < count; i++) {
    const candidate = (network + i * 256) >>> 0;
    const cidr = `${formatIp(candidate)}/24`;
    if (taken.has(cidr)) continue;
    if (routes.some((r) => overlaps(candidate, maskOf(24), r.destination, r.mask) && r.mask !== 0)) continue;
    free.push(candidate);
  }
  if (free.length === 0) return null;
  const chosen = free[pick(free.length) % free.length]!;
  // kbk + the two low octets in hex: unique per /24 within a /16, and short enough for IFNAMSIZ.
  const name = `kbk${((chosen >>> 8) & 0xffff).toString(16).padStart(4, '0')}`;
  return { name, subnet: `${formatIp(chosen)}/24` };
}

function overlaps(a: number, aMask: number, b: number, bMask: number): boolean {
  const mask = (aMask & bMask) >>> 0;
  return ((a & mask) >>> 0) === ((b & mask) >>> 0);
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

function ipNumber(octets: number[]): number {
  return (((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0);
}

function formatIp(n: number): string {
  return [24, 16, 8, 0].map((shift) => (n >>> shift) & 0xff).join('.');
}
