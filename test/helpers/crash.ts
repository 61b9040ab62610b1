// The crash tests' workload: parallel pushes (each upload done one of the three
// ways clients do it) until enough manifests are acknowledged, then kill -9
// while pushes are still in flight. What was acknowledged must survive.
import type { SpawnedKiln } from './kiln.js';
import { OCI_LAYER_GZIP, OCI_MANIFEST, TEST_CONFIG, blob, descriptor, manifestBlob, randomBlob, type Blob, type RegistryClient } from './registry.js';

export interface Acked {
  blobs: { repo: string; blob: Blob }[];
  manifests: { repo: string; tag: string; manifest: Blob }[];
}

/** Uploads with one of the three ways clients do it; resolves true on 201. */
async function upload(c: RegistryClient, repo: string, b: Blob, how: number): Promise<boolean> {
  if (how === 0) return (await c.pushBlobMonolithic(repo, b)).status === 201;
  if (how === 1) return (await c.pushBlob(repo, b)).status === 201;
  return (await c.pushBlobChunked(repo, b)).status === 201;
}

export interface CrashLoad {
  workers: number;
  /** Kill once this many manifests are acknowledged. */
  killAfter: number;
  /** A layer every push shares. */
  shared: Blob;
  /** The size of push `i` of worker `w`'s own layer. */
  layerSize(w: number, i: number): number;
}

/** Pushes through `c` until `load.killAfter` manifests are acknowledged, then kill -9s `server`. */
export async function pushUntilKilled(c: RegistryClient, server: SpawnedKiln, load: CrashLoad): Promise<{ acked: Acked; inFlightAtKill: number }> {
  const acked: Acked = { blobs: [], manifests: [] };
  let stop = false;
  let inFlight = 0;
  let killed!: () => void;
  const killNow = new Promise<void>((resolve) => (killed = resolve));
  const worker = async (w: number) => {
    const repo = `crash/w${w}`;
    for (let i = 0; !stop; i++) {
      inFlight++;
      try {
        const layers = [load.shared, randomBlob(load.layerSize(w, i))];
        const config = blob(JSON.stringify({ worker: w, i, r: Math.random() }));
        for (const [k, b] of [config, ...layers].entries()) {
          if (await upload(c, repo, b, (w + i + k) % 3)) acked.blobs.push({ repo, blob: b });
          else return;
        }
        const manifest = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(config, TEST_CONFIG), layers: layers.map((l) => descriptor(l, OCI_LAYER_GZIP)) });
        const tag = `t${i}`;
        if ((await c.putManifest(repo, tag, manifest.bytes, OCI_MANIFEST)).status !== 201) return;
        acked.manifests.push({ repo, tag, manifest });
        if (acked.manifests.length === load.killAfter) killed();
      } catch {
        return; // the server is gone
      } finally {
        inFlight--;
      }
    }
  };
  const workers = Array.from({ length: load.workers }, (_, w) => worker(w));
  await killNow;
  const inFlightAtKill = inFlight;
  await server.kill9();
  stop = true;
  await Promise.all(workers);
  return { acked, inFlightAtKill };
}
