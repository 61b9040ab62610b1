// Kiln's bake status, read the way a client reads it: `GET /api/v1/images/{digest}`.
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from './oci.js';

export const POLL_MS = 20;

interface ImageStatus {
  status?: string;
  error?: string | null;
}

/** The image's bake status (`pending`, `running`, `ready`, `failed`, …), or undefined while Kiln has no record of it (404). */
export async function bakeStatus(host: string, digest: string): Promise<string | undefined> {
  const url = `http://${host}/api/v1/images/${digest}`;
  const res = await request('GET', url);
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status} ${res.body.slice(0, 300)}`);
  const image = JSON.parse(res.body) as ImageStatus;
  if (image.status === 'failed') throw new Error(`Kiln failed to bake ${digest}: ${image.error ?? '(no error given)'}`);
  return image.status;
}

/**
 * Poll every POLL_MS until the image is `ready`. A `failed` bake is an error;
 * so is a 404 that lasts more than 10 s (right after the manifest PUT a 404
 * may only mean that the image record is not written yet).
 */
export async function waitBaked(host: string, digest: string, timeoutMs = 30 * 60_000): Promise<void> {
  const started = Date.now();
  for (;;) {
    const status = await bakeStatus(host, digest);
    if (status === 'ready') return;
    if (status === undefined && Date.now() - started > 10_000) {
      throw new Error(`GET /api/v1/images/${digest} still 404 after 10 s (is the bake API implemented?)`);
    }
    if (Date.now() - started > timeoutMs) throw new Error(`${digest} not baked after ${timeoutMs / 1000} s`);
    await sleep(POLL_MS);
  }
}
