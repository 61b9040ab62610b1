// Where a build's BuildKit comes from, and running buildctl against it.
//
// - Ephemeral (the default): Kiln starts a buildkitd for the build (root,
//   socket, buildkitd.toml of its own, a bridge and /24 of its own for RUN
//   steps, the host's INPUT closed to that bridge), runs buildctl, and stops
//   and wipes the daemon whatever happened. An empty daemon has no cache of
//   its own: every hit comes from the registry cache of the plan.
// - Pool (BUILDKIT_HOST, comma-separated): daemons an operator runs; builds
//   take them in turn. A daemon whose worker runs RUN steps on the host
//   network is refused. The operator configures its registries and networking.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { CacheUse } from '../build-options.js';
import { BuildError } from '../errors.js';
import { captureCommand } from '../process.js';
import { runBuildctl, parseBuildctlVersion, type BuildctlInput } from './buildctl.js';
import { buildkitdToml, parseProcRoutes, pickBridgeNetwork, type BridgeNetwork } from './daemon-config.js';
import { startEphemeralDaemon, type DaemonTools } from './daemon.js';
import { isolateBridge, removeStaleRules } from './host-firewall.js';

export interface BuildkitEngineConfig {
  tools: DaemonTools;
  /** BUILDKIT_HOST addresses; empty: an ephemeral daemon per build. */
  pool: readonly string[];
  /** CNI plugins for the bridge of RUN steps (KILN_CNI_BIN_DIR). */
  cniBinDir: string;
  /** Where the bridges' /24s come from (KILN_BUILD_SUBNET). */
  subnet: string;
  /** KILN_BUILDKIT_START_TIMEOUT_SECONDS, in ms. */
  startTimeoutMs: number;
  /** The daemons' own log lines (server log, never a tenant's). */
  onDaemonLog?: (line: string) => void;
}

export interface EngineJob {
  /** The build's private scratch dir; the daemon's directory goes in it. */
  workDir: string;
  input: Omit<BuildctlInput, 'secretIds' | 'metadataFile'>;
  secrets: Readonly<Record<string, string>>;
  dockerConfigDir: string;
  signal: AbortSignal;
  onLine: (line: string) => void;
  onPushing: () => void;
  /** Kiln's own lines about the builder (`==> …`). */
  note: (line: string) => void;
}

export class BuildkitEngine {
  readonly name = 'buildkit' as const;
  /** /24s of the daemons running now. */
  private readonly networks = new Set<string>();
  private nextInPool = 0;
  private readonly poolChecks = new Map<string, Promise<void>>();

  constructor(readonly config: BuildkitEngineConfig) {}

  async version(): Promise<string> {
    return parseBuildctlVersion(await captureCommand(this.config.tools.buildctl, ['--version']));
  }

  /** Cleans up after a process that died with daemons running: firewall rules of bridges that are gone. */
  async recover(): Promise<void> {
    if (this.config.pool.length > 0) return;
    await removeStaleRules((name) => existsSync(`/sys/class/net/${name}`));
  }

  async build(job: EngineJob): Promise<{ digest: string; cache: CacheUse }> {
    const metadataFile = path.join(job.workDir, 'buildkit-metadata.json');
    const run = (addr: string) =>
      runBuildctl({
        buildctl: this.config.tools.buildctl,
        addr,
        input: { ...job.input, metadataFile },
        secrets: job.secrets,
        dockerConfigDir: job.dockerConfigDir,
        signal: job.signal,
        onLine: job.onLine,
        onPushing: job.onPushing,
      });
    if (this.config.pool.length > 0) {
      const addr = this.config.pool[this.nextInPool++ % this.config.pool.length]!;
      await this.checkPoolDaemon(addr);
      job.note(`==> BuildKit daemon from the pool (BUILDKIT_HOST): ${addr}`);
      return run(addr);
    }
    return this.withEphemeralDaemon(job, run);
  }

  private async withEphemeralDaemon<T>(job: EngineJob, use: (addr: string) => Promise<T>): Promise<T> {
    const bridge = await this.reserveNetwork();
    try {
      const config = buildkitdToml({ registry: job.input.plan.registry, insecure: job.input.plan.insecure, bridge, cniBinDir: this.config.cniBinDir });
      const started = Date.now();
      const daemon = await startEphemeralDaemon({
        tools: this.config.tools,
        dir: path.join(job.workDir, 'buildkitd'),
        config,
        startTimeoutMs: this.config.startTimeoutMs,
        signal: job.signal,
        onLog: this.config.onDaemonLog,
      });
      let reopen: (() => Promise<void>) | null = null;
      try {
        reopen = await isolateBridge(bridge.name);
        job.note(`==> BuildKit: a new daemon for this build, ready in ${((Date.now() - started) / 1000).toFixed(1)} s; RUN steps on bridge ${bridge.name} (${bridge.subnet}), no host network`);
        return await use(daemon.addr);
      } finally {
        const report = await daemon.stop();
        await reopen?.();
        if (report.killedProcesses > 0 || report.unmounted.length > 0) {
          this.config.onDaemonLog?.(`stopped daemon left ${report.killedProcesses} processes and ${report.unmounted.length} mounts; removed`);
        }
      }
    } finally {
      this.networks.delete(bridge.subnet);
    }
  }

  private async reserveNetwork(): Promise<BridgeNetwork> {
    const routes = parseProcRoutes(await readFile('/proc/net/route', 'utf8').catch(() => ''));
    const bridge = pickBridgeNetwork(this.config.subnet, routes, this.networks, (n) => Math.floor(Math.random() * n));
    if (bridge === null) {
      throw new BuildError('build-failed', `no free /24 left in KILN_BUILD_SUBNET=${this.config.subnet} for the build's bridge; choose a larger or unused subnet`);
    }
    this.networks.add(bridge.subnet);
    return bridge;
  }

  /** A pool daemon must not run RUN steps on the host network. */
  private checkPoolDaemon(addr: string): Promise<void> {
    let check = this.poolChecks.get(addr);
    if (check === undefined) {
      check = captureCommand(this.config.tools.buildctl, ['--addr', addr, 'debug', 'workers', '-v'], 15_000).then((out) => {
        const network = workerNetworks(out);
        if (network.length === 0) throw new BuildError('build-failed', `the BuildKit daemon at ${addr} reports no worker`);
        if (network.includes('host')) {
          throw new BuildError('build-failed', `the BuildKit daemon at ${addr} runs RUN steps on the host network; start it with --oci-worker-net=bridge (or cni)`);
        }
      });
      // A failed check is tried again with the next build.
      check.catch(() => this.poolChecks.delete(addr));
      this.poolChecks.set(addr, check);
    }
    return check;
  }
}

/** The `org.mobyproject.buildkit.worker.network` label of each worker in `buildctl debug workers -v`. Pure. */
export function workerNetworks(output: string): string[] {
  return [...output.matchAll(/org\.mobyproject\.buildkit\.worker\.network:\s*(\S+)/g)].map((m) => m[1]!);
}
