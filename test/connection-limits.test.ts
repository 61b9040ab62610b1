// Hostile connections: half-sent request heads, silent sockets, bodies that
// trickle, and one address opening too many connections. Each is cut off by
// its limit while real clients keep working. No timing thresholds: the tests
// wait for each connection to be closed, within generous bounds.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { isolatedContainersEnv } from './helpers/containers.js';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { BASE_IMAGE, writeBaseImageLayout } from './helpers/layout.js';
import { waitFor } from './helpers/registry.js';

const run = promisify(execFile);
const servers: TestKiln[] = [];
const sockets: Socket[] = [];
after(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) await s.close();
});

async function kilnWith(env: Record<string, string>): Promise<TestKiln> {
  const s = await startKiln({ env });
  servers.push(s);
  return s;
}

interface Probe {
  socket: Socket;
  closed: Promise<void>;
  isClosed(): boolean;
  /** Everything the server sent. */
  received(): string;
}

/** A raw connection from `localAddress` that sends `initial` (maybe nothing) and then waits. */
async function probe(s: TestKiln, initial: string, localAddress = '127.0.0.1'): Promise<Probe> {
  const port = Number(new URL(s.url).port);
  const socket = connect({ host: '127.0.0.1', port, localAddress });
  sockets.push(socket);
  let data = '';
  let closed = false;
  socket.on('data', (d: Buffer) => (data += d.toString()));
  socket.on('error', () => undefined);
  const closedP = new Promise<void>((resolve) => socket.once('close', () => ((closed = true), resolve())));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  if (initial) socket.write(initial);
  return { socket, closed: closedP, isClosed: () => closed, received: () => data };
}

async function metric(s: TestKiln, setting: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const m = new RegExp(`^kiln_limit_hits_total\\{setting="${setting}"\\} (\\d+)$`, 'm').exec(text);
  assert.ok(m, `no kiln_limit_hits_total for ${setting}`);
  return Number(m[1]);
}

describe('request heads', () => {
  it('a half-sent request line and a silent connection are both closed after the header timeout', async () => {
    const s = await kilnWith({ KILN_HEADER_TIMEOUT_SECONDS: '1' });
    const half = await Promise.all(Array.from({ length: 50 }, () => probe(s, 'GET /v2/ HT')));
    const silent = await Promise.all(Array.from({ length: 50 }, () => probe(s, '')));
    const trickle = await probe(s, 'G');
    const dribble = setInterval(() => trickle.socket.write('E'), 200);
    const all = [...half, ...silent, trickle];
    try {
      // Bounded only so a regression fails instead of hanging (Node's own default would be 60 s, and never for silent ones).
      await waitFor(() => all.every((p) => p.isClosed()), 30_000, 'every hostile connection to be closed');
    } finally {
      clearInterval(dribble);
    }
    // Node answers a timed-out head with 408 before it closes.
    assert.match(half[0]!.received(), /^HTTP\/1\.1 408/);
    assert.equal((await fetch(`${s.url}/v2/`)).status, 200);
    assert.ok((await metric(s, 'KILN_HEADER_TIMEOUT_SECONDS')) >= 100);
  });
});

describe('request bodies', () => {
  it('a blob body trickling below the minimum rate is cut off; a normal one is not', async () => {
    const s = await kilnWith({ KILN_BLOB_MIN_BYTES_PER_SECOND: '1000', KILN_BLOB_RATE_WINDOW_SECONDS: '1' });
    const post = await fetch(`${s.url}/v2/slow/app/blobs/uploads/`, { method: 'POST' });
    const location = post.headers.get('location')!;
    const slow = await probe(s, `PATCH ${location} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\n\r\n`);
    const drip = setInterval(() => slow.socket.write('x'), 100);
    try {
      await slow.closed;
    } finally {
      clearInterval(drip);
    }
    assert.equal(slow.received(), '', 'cut off mid-body: no answer');
    assert.ok((await metric(s, 'KILN_BLOB_MIN_BYTES_PER_SECOND')) >= 1);
    // The session survives, holding what arrived; a client at a normal rate resumes it.
    const status = await fetch(new URL(location, s.url));
    assert.equal(status.status, 204);
    // "0-0" is also what an empty upload reports; the trickle (under the writer's 1 MiB batch) left none on disk.
    const end = Number(/^0-(\d+)$/.exec(status.headers.get('range') ?? '')?.[1]);
    const next = end === 0 ? 0 : end + 1;
    const chunk = Buffer.alloc(1024 * 1024);
    const patch = await fetch(new URL(location, s.url), { method: 'PATCH', body: chunk, headers: { 'content-range': `${next}-${next + chunk.length - 1}` } });
    assert.equal(patch.status, 202, await patch.text());
  });

  it('a manifest (any non-blob request) whose body does not arrive within the request timeout gets 408 naming the setting', async () => {
    const s = await kilnWith({ KILN_REQUEST_TIMEOUT_SECONDS: '1' });
    const stalled = await probe(s, 'PUT /v2/slow/app/manifests/v1 HTTP/1.1\r\nhost: x\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ncontent-length: 500\r\n\r\n{"schema');
    await stalled.closed;
    assert.match(stalled.received(), /^HTTP\/1\.1 408 /);
    assert.match(stalled.received(), /KILN_REQUEST_TIMEOUT_SECONDS/);
    assert.equal((await fetch(`${s.url}/v2/`)).status, 200);
  });
});

describe('connections per client address and in all', () => {
  it('one address past its cap gets 429 with Retry-After and is closed; other addresses are served', async () => {
    const s = await kilnWith({ KILN_MAX_CONNECTIONS_PER_ADDRESS: '5', KILN_MAX_CONNECTIONS: '8' });
    const held = await Promise.all(Array.from({ length: 5 }, () => probe(s, '', '127.0.0.2')));
    const refused = await probe(s, 'GET /v2/ HTTP/1.1\r\nhost: x\r\n\r\n', '127.0.0.2');
    await refused.closed;
    assert.match(refused.received(), /^HTTP\/1\.1 429 Too Many Requests\r\n/);
    assert.match(refused.received(), /\r\nretry-after: \d+\r\n/);
    assert.match(refused.received(), /KILN_MAX_CONNECTIONS_PER_ADDRESS/);
    assert.equal(held.filter((p) => p.isClosed()).length, 0, 'admitted connections are untouched');
    // 127.0.0.1 is another client: served.
    assert.equal((await fetch(`${s.url}/v2/`)).status, 200);
    // Two more from a third address fill the server (5 + 1 keep-alive from fetch may be open, so fill up to the cap).
    const more = await Promise.all(Array.from({ length: 3 }, () => probe(s, '', '127.0.0.3')));
    const over = await probe(s, 'GET /v2/ HTTP/1.1\r\nhost: x\r\n\r\n', '127.0.0.4');
    await over.closed;
    assert.match(over.received(), /^HTTP\/1\.1 429 /);
    assert.match(over.received(), /KILN_MAX_CONNECTIONS\b/);
    for (const p of [...held, ...more]) p.socket.destroy();
    await waitFor(async () => (await fetch(`${s.url}/v2/`).then((r) => r.status).catch(() => 0)) === 200, 10_000, 'room again');
    assert.ok((await metric(s, 'KILN_MAX_CONNECTIONS_PER_ADDRESS')) >= 1);
  });
});

describe('slowloris', () => {
  it('2,000 half-open connections do not stop skopeo pushing and pulling, and are all closed within the header timeout', async () => {
    const work = await tempDir('kiln-slowloris-');
    try {
      const headerTimeoutSeconds = 10;
      const s = await kilnWith({ KILN_HEADER_TIMEOUT_SECONDS: String(headerTimeoutSeconds) });
      const { env, policy } = await isolatedContainersEnv(work);
      const layout = path.join(work, 'layout');
      await writeBaseImageLayout(layout);

      // Four attacking addresses, 500 connections each (under the 512 per address):
      // half a request line, or nothing at all.
      const opened = Date.now();
      const attackers: Probe[] = [];
      for (let i = 0; i < 2000; i += 100) {
        const batch = Array.from({ length: 100 }, (_, j) => probe(s, (i + j) % 2 ? 'GET /v2/_catalog HTTP/1.1\r\nHo' : '', `127.0.1.${1 + ((i + j) % 4)}`));
        attackers.push(...(await Promise.all(batch)));
      }

      const skopeo = (...args: string[]) => run('skopeo', ['--policy', policy, ...args], { env, cwd: work, timeout: 120_000 });
      await skopeo('copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${s.host}/loris/app:v1`);
      const pulled = path.join(work, 'pulled');
      await skopeo('copy', '--src-tls-verify=false', `docker://${s.host}/loris/app:v1`, `oci:${pulled}:v1`);
      const layer = await readFile(path.join(pulled, 'blobs', 'sha256', BASE_IMAGE.layerHex));
      assert.deepEqual(layer, await readFile(path.join(BASE_IMAGE.blobsDir, BASE_IMAGE.layerHex)));

      // A bound only so a regression fails instead of hanging: far above the header timeout.
      const bound = new Promise<void>((resolve) => setTimeout(resolve, (3 * headerTimeoutSeconds + 60) * 1000).unref());
      await Promise.race([Promise.all(attackers.map((p) => p.closed)), bound]);
      const closedAfterSeconds = (Date.now() - opened) / 1000;
      // Closed by the server, not left open: "within the header timeout" plus
      // Node's check period and the time it took to open them all.
      assert.equal(attackers.filter((p) => !p.isClosed()).length, 0);
      process.stdout.write(`# slowloris: 2000 connections closed ${closedAfterSeconds.toFixed(1)} s after the first opened (header timeout ${headerTimeoutSeconds} s)\n`);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
