// The sandboxed bake (src/jobs/sandbox/): real child processes in real
// namespaces and cgroups. The disk equals bakeImage's; the sandbox reaches no
// network, writes nothing outside its disk, reads no data dir and is not
// root; attacks and limits fail the bake naming their setting; cancelling
// kills the sandbox and leaves nothing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { bakeImage, type BakeInput } from '../src/convert/bake.js';
import { BakeError } from '../src/convert/errors.js';
import { emptyFilesTar, gzipStream, imageFromBlobs, layerTar, makeImage, sha256, ustarHeader, type LayerEntry, type TestImage } from '../src/convert/testing.js';
import { cgroupPids, type BakeCgroups } from '../src/jobs/sandbox/cgroup.js';
import { checkSandbox, loadSandboxSettings, sandboxedBake, WarmBakes, type SandboxSettings } from '../src/jobs/sandbox/index.js';
import { BAKE_ENTRY, PROJECT_ROOT, startSandboxed } from '../src/jobs/sandbox/launcher.js';
import { OCI_LAYER_GZIP, OCI_LAYER_ZSTD } from '../src/oci/media-types.js';
import { fixtureImage } from './bake-fixture.js';
import { fsck } from './bake-helpers.js';

const MiB = 1024 * 1024;
const AS_ROOT = process.getuid?.() === 0;
const PROBE = path.join(PROJECT_ROOT, 'dist', 'test', 'helpers', 'sandbox-probe.js');
let root: string;
let counter = 0;

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kiln-sandbox-'));
  // Like a data dir: private to the user Kiln runs as.
  await chmod(root, 0o700);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const settingsFor = (env: Record<string, string> = {}): SandboxSettings => loadSandboxSettings({ KILN_BAKE_TIMEOUT: '2m', ...env });

function inputFor(image: TestImage, extra: Partial<BakeInput> = {}): BakeInput {
  const job = path.join(root, `job-${++counter}`);
  return {
    manifest: image.manifest,
    configBytes: image.configBytes,
    openBlob: async (digest) => Readable.from([image.blobs.get(digest) as Buffer]),
    workDir: path.join(job, 'work'),
    outputDir: path.join(job, 'out'),
    ...extra,
  };
}

/** No result and no temporary result left behind. */
function assertNothingLeft(input: BakeInput): void {
  assert.ok(typeof input.outputDir === 'string' && !existsSync(input.outputDir), 'no output');
  if (existsSync(input.workDir)) assert.deepEqual(readdirSync(input.workDir), [], 'no temporary result');
}

/** Bake processes of this test process still running: running our entry point, and descendants of us (other bakes of this checkout may run beside). */
function bakeProcesses(): number[] {
  const found: number[] = [];
  const parent = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
  const ours = (pid: number) => {
    for (let p = pid; p > 1; p = parent(p)) if (p === process.pid) return true;
    return false;
  };
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(BAKE_ENTRY) && ours(pid)) found.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

const fileHash = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

async function bakeErrorOf(promise: Promise<unknown>): Promise<BakeError> {
  const outcome = await promise.then(
    () => null,
    (err: unknown) => err,
  );
  assert.ok(outcome instanceof BakeError, `expected a BakeError, got ${String(outcome)}`);
  assert.ok(!outcome.message.includes(root), `no host path in: ${outcome.message}`);
  assert.ok(!/\bpid\b/.test(outcome.message), `no pid in: ${outcome.message}`);
  return outcome;
}

describe('the sandbox on this machine', () => {
  for (const mode of ['bwrap', 'none']) {
    it(`checkSandbox passes (${mode})`, async () => {
      await checkSandbox(settingsFor({ KILN_BAKE_SANDBOX: mode }));
    });
  }
});

describe('sandboxed bakes', () => {
  for (const mode of ['bwrap', 'none']) {
    it(`the fixture image gives bakeImage's disk and config.json, e2fsck clean (${mode})`, async () => {
      const image = await fixtureImage();
      const direct = await bakeImage(inputFor(image));
      const progress: Array<[number, number]> = [];
      const boxed = await sandboxedBake(inputFor(image, { onProgress: (d, t) => progress.push([d, t]) }), settingsFor({ KILN_BAKE_SANDBOX: mode }));
      assert.equal(boxed.diskSizeBytes, direct.diskSizeBytes);
      assert.deepEqual(boxed.runConfig, direct.runConfig);
      assert.equal(fileHash(boxed.diskPath), fileHash(direct.diskPath), 'the same disk bytes');
      assert.equal(readFileSync(boxed.configPath, 'utf8'), readFileSync(direct.configPath, 'utf8'));
      assert.ok(fsck(boxed.diskPath).clean, fsck(boxed.diskPath).output);
      const total = image.manifest.layers.reduce((s, l) => s + l.size, 0);
      assert.deepEqual(progress.at(-1), [total, total]);
      assert.deepEqual(bakeProcesses(), []);
    });
  }

  it('bakes a zstd layer (zstd runs inside the sandbox) and a corrupt blob fails as in bakeImage', async () => {
    const image = await fixtureImage(['zstd', 'zstd', 'gzip']);
    const boxed = await sandboxedBake(inputFor(image), settingsFor());
    assert.ok(fsck(boxed.diskPath).clean);
    // A blob whose bytes are not what the manifest says: the child re-reads it to tell a damaged blob from a bad tar.
    const damaged = new Map(image.blobs);
    const first = image.manifest.layers[0].digest;
    const bytes = Buffer.from(damaged.get(first) as Buffer);
    bytes[20] ^= 0xff;
    damaged.set(first, bytes);
    const input = inputFor(image, { openBlob: async (d) => Readable.from([damaged.get(d) as Buffer]) });
    const direct = await bakeErrorOf(bakeImage(inputFor(image, { openBlob: input.openBlob })));
    const err = await bakeErrorOf(sandboxedBake(input, settingsFor()));
    assert.equal(err.code, direct.code);
    assert.equal(err.message, direct.message);
    assertNothingLeft(input);
  });
});

describe('a bake process started ahead of its job (WarmBakes)', () => {
  /** Waits (no time limit but the test's) until a spare bake process is running, and returns its processes. */
  async function spareProcesses(): Promise<number[]> {
    for (;;) {
      const found = bakeProcesses();
      if (found.length > 0) return found;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it('serves one bake only: each bake runs in its own process, which exits; a spare with other limits is not used', async () => {
    const image = await fixtureImage();
    const direct = await bakeImage(inputFor(image));
    const scratch = path.join(root, 'warm-scratch');
    const settings = settingsFor();
    const warm = new WarmBakes(scratch, (err) => assert.fail(String(err)));
    try {
      warm.prepare(settings);
      const first = await spareProcesses();
      const boxed = await sandboxedBake(inputFor(image), settings, warm);
      assert.equal(fileHash(boxed.diskPath), fileHash(direct.diskPath), 'the same disk bytes as bakeImage');
      assert.ok(fsck(boxed.diskPath).clean);
      // The process that baked is gone; the one waiting now is another.
      const second = await spareProcesses();
      assert.deepEqual(second.filter((pid) => first.includes(pid)), [], 'the next bake gets a new process');
      const again = await sandboxedBake(inputFor(image), settings, warm);
      assert.equal(fileHash(again.diskPath), fileHash(direct.diskPath));
      const third = await spareProcesses();
      assert.deepEqual(third.filter((pid) => second.includes(pid) || first.includes(pid)), []);
      // Other limits make another command line (the file-size rlimit follows them): the spare is dropped, not used.
      const other = await sandboxedBake(inputFor(image), settingsFor({ KILN_BAKE_MAX_BYTES: String(64 * MiB) }), warm);
      assert.equal(fileHash(other.diskPath), fileHash(direct.diskPath));
      const fourth = await spareProcesses();
      assert.deepEqual(fourth.filter((pid) => third.includes(pid)), []);
    } finally {
      await warm.close();
    }
    assert.deepEqual(bakeProcesses(), [], 'close stops the waiting process');
    assert.deepEqual(readdirSync(scratch), [], 'and removes its disk file');
  });
});

describe('what the sandbox can reach', () => {
  interface ProbeReport {
    uid: number;
    connect: string;
    writes: Record<string, string>;
    reads: Record<string, string>;
    noNewPrivs: string;
    seccomp: string;
    env: string[];
  }

  /** Runs the probe in the sandbox; `look` runs on the host while it is alive. */
  async function probe(settings: SandboxSettings, orders: { port: number; writes: string[]; reads: string[] }, look: (pids: number[], cgroups: BakeCgroups) => void): Promise<ProbeReport> {
    const box = await startSandboxed(settings, [PROBE]);
    let out = '';
    const report = new Promise<ProbeReport>((resolve, reject) => {
      box.child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8');
        if (out.includes('\n')) resolve((JSON.parse(out.slice(0, out.indexOf('\n'))) as { report: ProbeReport }).report);
      });
      void box.done.then((exit) => reject(new Error(`probe exited early: ${exit.code ?? exit.signal} ${exit.stderr}`)));
    });
    box.child.stdin?.write(`${JSON.stringify(orders)}\n`);
    try {
      const result = await report;
      look(await cgroupPids(box.cgroups), box.cgroups);
      return result;
    } finally {
      box.child.stdin?.end();
      const exit = await box.done;
      assert.equal(exit.code, 0, exit.stderr);
    }
  }

  it('no network, no writes outside, no data dir, not root, inside its cgroups (bwrap)', async () => {
    const connections: net.Socket[] = [];
    const server = net.createServer((s) => connections.push(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const dataDir = path.join(root, 'data');
    await mkdir(dataDir, { mode: 0o700 });
    const hostTmp = path.join(os.tmpdir(), `kiln-sandbox-probe-${process.pid}`);
    const targets = [path.join(dataDir, 'planted'), hostTmp, path.join(PROJECT_ROOT, 'dist', 'planted'), path.join(PROJECT_ROOT, 'planted'), '/planted'];
    try {
      // The control: the host itself reaches the server.
      const control = net.connect(port, '127.0.0.1');
      await new Promise((resolve, reject) => control.once('connect', resolve).once('error', reject));
      control.destroy();
      await new Promise((resolve) => setTimeout(resolve, 50));
      const before = connections.length;

      process.env.KILN_SANDBOX_TEST_SECRET = 'not for the sandbox';
      const settings = settingsFor();
      const report = await probe(settings, { port, writes: targets, reads: [dataDir, root] }, (pids, cgroups) => {
        if (!AS_ROOT) return; // no writable cgroups: the rlimits are all there is
        assert.ok(cgroups.memoryDir && cgroups.pidsDir, 'memory and pids cgroups made');
        assert.equal(Number(readFileSync(path.join(cgroups.memoryDir, 'memory.limit_in_bytes'), 'utf8')), settings.memoryBytes);
        assert.equal(readFileSync(path.join(cgroups.pidsDir, 'pids.max'), 'utf8').trim(), '64');
        const node = pids.find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith(`${process.execPath}\0`));
        assert.ok(node, 'the sandboxed node process is in the cgroup');
        const limits = readFileSync(`/proc/${node}/limits`, 'utf8');
        assert.match(readFileSync(`/proc/${node}/sched`, 'utf8'), /^policy\s+:\s+5$/m, 'SCHED_IDLE');
        assert.equal(readFileSync(`/proc/${node}/stat`, 'utf8').split(') ')[1].split(' ')[16], '19', 'nice 19');
        if (existsSync(`/proc/${node}/autogroup`)) assert.match(readFileSync(`/proc/${node}/autogroup`, 'utf8'), /nice 19$/m, 'its session\'s autogroup at nice 19');
        assert.match(limits, new RegExp(`Max file size\\s+${settings.limits.maxDiskBytes}\\s`));
        assert.match(limits, new RegExp(`Max data size\\s+${settings.memoryBytes}\\s`));
        assert.match(limits, /Max open files\s+256\s/);
        assert.match(limits, /Max core file size\s+0\s/);
        assert.ok(pids.length >= 2, `bwrap and the sandboxed node are in the bake's cgroup: ${pids.join(',')}`);
        const programs = pids.map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
        assert.ok(programs.some((p) => p.includes(PROBE)), 'the sandboxed program itself is in the cgroup');
        for (const pid of pids) {
          const uid = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
          assert.deepEqual(uid?.slice(1).map(Number), [65534, 65534, 65534], `host view of pid ${pid}`);
        }
      });
      assert.notEqual(report.connect, 'ok', 'the sandbox reached the host network');
      assert.equal(connections.length, before, 'no connection arrived');
      for (const target of targets) {
        // /tmp inside is a tmpfs of its own: a write below it (the host's /tmp, or a checkout
        // living there) may succeed inside, never on the host.
        if (!target.startsWith(`${os.tmpdir()}/`) && !target.startsWith('/tmp/')) assert.notEqual(report.writes[target], 'ok', `wrote ${target}`);
        assert.ok(!existsSync(target), `${target} exists on the host`);
      }
      assert.notEqual(report.reads[dataDir], 'ok', 'read the data dir');
      assert.notEqual(report.reads[root], 'ok', 'read the dir above it');
      assert.notEqual(report.uid, 0);
      assert.equal(report.uid, settings.uid);
      if (AS_ROOT) assert.equal(report.uid, 65534);
      assert.equal(report.noNewPrivs, '1');
      if (process.arch === 'x64') assert.equal(report.seccomp, '2', 'under the seccomp filter (src/jobs/sandbox/seccomp.ts)');
      assert.deepEqual(report.env.filter((k) => k !== 'PWD'), ['PATH'], 'nothing of the worker\'s environment');
    } finally {
      for (const s of connections) s.destroy();
      server.close();
      delete process.env.KILN_SANDBOX_TEST_SECRET;
      await rm(hostTmp, { force: true });
    }
  });

  it('without namespaces (none): still not root, no data dir, inside its cgroups', async () => {
    const dataDir = path.join(root, 'data-none');
    await mkdir(dataDir, { mode: 0o700 });
    const settings = settingsFor({ KILN_BAKE_SANDBOX: 'none' });
    const report = await probe(settings, { port: 1, writes: [path.join(dataDir, 'planted')], reads: [dataDir] }, (pids) => {
      if (AS_ROOT) assert.ok(pids.map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8')).some((p) => p.includes(PROBE)));
    });
    assert.notEqual(report.uid, 0);
    if (AS_ROOT) {
      assert.equal(report.reads[dataDir], 'EACCES');
      assert.equal(report.writes[path.join(dataDir, 'planted')], 'EACCES');
    }
    assert.equal(report.noNewPrivs, '1');
  });
});

describe('attacks and limits, in the sandbox', () => {
  const PIECE = 8191;

  it('long xattr and FIFO names carrying !touch are refused by name; no canary', async () => {
    const canary = path.join(os.tmpdir(), `kiln-sandbox-canary-${process.pid}`);
    const xattr = `user.${'a'.repeat(PIECE - 100)}!touch ${canary};#`;
    const fifo = `${'f'.repeat(PIECE - 'mknod "'.length)}!touch ${canary.replaceAll('/', '_')};#`;
    for (const [layer, pattern] of [
      [[{ name: 'victim', content: 'x', xattrs: { [xattr]: 'v' } }], /entry "victim" has an extended attribute name of \d+ bytes/],
      [[{ name: fifo, type: 'fifo', mode: 0o644 }], /Linux paths hold at most 4095$/],
    ] as Array<[LayerEntry[], RegExp]>) {
      const image = makeImage([{ tar: await layerTar(layer), compression: 'gzip' }]);
      const input = inputFor(image);
      const err = await bakeErrorOf(sandboxedBake(input, settingsFor()));
      assert.equal(err.code, 'UNSUPPORTED_ENTRY');
      assert.match(err.message, /^layer 1 \(sha256:[0-9a-f]{64}\): /);
      assert.match(err.message, pattern);
      assert.ok(!existsSync(canary), 'the command in the name ran');
      assertNothingLeft(input);
    }
  });

  it('a zstd bomb over KILN_BAKE_MAX_BYTES fails naming it', async () => {
    const member = Buffer.concat([ustarHeader({ name: 'f', typeflag: '0', size: MiB }), Buffer.alloc(MiB)]);
    const frame = spawnSync('zstd', ['-q', '-c', '-19'], { input: member }).stdout;
    const blob = Buffer.concat(Array.from({ length: 256 }, () => frame));
    const image = imageFromBlobs([{ blob, mediaType: OCI_LAYER_ZSTD, diffId: sha256(member) }]);
    const input = inputFor(image);
    const err = await bakeErrorOf(sandboxedBake(input, settingsFor({ KILN_BAKE_MAX_BYTES: String(16 * MiB) })));
    assert.equal(err.code, 'LIMIT_EXCEEDED');
    assert.match(err.message, new RegExp(`the limit of unpacked bytes per image is ${16 * MiB} bytes .*; raise KILN_BAKE_MAX_BYTES to allow more`));
    assertNothingLeft(input);
  });

  /** A gzip layer whose blob arrives a little at a time and never ends. */
  function trickling(onChunk?: (n: number) => void): { image: TestImage; openBlob: BakeInput['openBlob'] } {
    const image = imageFromBlobs([{ blob: Buffer.alloc(1), mediaType: OCI_LAYER_GZIP, diffId: sha256(Buffer.alloc(0)) }]);
    const openBlob = async () =>
      Readable.from((async function* () {
        for (let n = 1; ; n++) {
          onChunk?.(n);
          yield Buffer.alloc(4096);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      })());
    return { image, openBlob };
  }

  it('a bake slower than KILN_BAKE_TIMEOUT is killed and fails naming it and its value', async () => {
    const { image, openBlob } = trickling();
    const input = inputFor(image, { openBlob });
    const err = await bakeErrorOf(sandboxedBake(input, settingsFor({ KILN_BAKE_TIMEOUT: '2s' })));
    assert.equal(err.code, 'LIMIT_EXCEEDED');
    assert.match(err.message, /took longer than 2s.*raise KILN_BAKE_TIMEOUT/);
    assertNothingLeft(input);
    assert.deepEqual(bakeProcesses(), []);
  });

  it('cancelling mid-bake kills the sandbox at once and leaves no result', async () => {
    const controller = new AbortController();
    const seen: number[][] = [];
    const { image, openBlob } = trickling((n) => {
      if (n === 5) {
        seen.push(bakeProcesses());
        controller.abort(new Error('cancelled by the test'));
      }
    });
    const input = inputFor(image, { openBlob, signal: controller.signal });
    await assert.rejects(sandboxedBake(input, settingsFor()), /cancelled by the test/);
    assert.ok((seen[0]?.length ?? 0) > 0, 'the bake process was running when cancelled');
    assertNothingLeft(input);
    assert.deepEqual(bakeProcesses(), [], 'the bake process is gone');
  });

  it('a bake process killed from outside fails the bake with a plain Error (no pid, no path); the worker carries on', async () => {
    const { image, openBlob } = trickling((n) => {
      if (n !== 5) return;
      // The sandboxed node itself (not bwrap): the first process running node on our entry.
      for (const pid of bakeProcesses()) {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith(`${process.execPath}\0`)) process.kill(pid, 'SIGKILL');
      }
    });
    const input = inputFor(image, { openBlob });
    const outcome = await sandboxedBake(input, settingsFor()).catch((err: unknown) => err);
    assert.ok(outcome instanceof Error && !(outcome instanceof BakeError), String(outcome));
    assert.match(outcome.message, /killed by SIGKILL/);
    assert.ok(!outcome.message.includes(root) && !/\d{3,}/.test(outcome.message), outcome.message);
    assertNothingLeft(input);
    assert.deepEqual(bakeProcesses(), []);
    // And the next bake works.
    assert.ok(fsck((await sandboxedBake(inputFor(await fixtureImage()), settingsFor())).diskPath).clean);
  });

  it('the memory cgroup holds the whole sandbox: two processes under their own RLIMIT_DATA that together pass KILN_BAKE_MEMORY are OOM-killed', { skip: !AS_ROOT && 'cgroups need root' }, async () => {
    // Each child stays under the per-process RLIMIT_DATA (128 MiB); both together do not fit the cgroup's 128 MiB.
    const hog = `const b=Buffer.alloc(80*1024*1024,1);setTimeout(()=>console.log(b.length),60000)`;
    const script = `const {spawn}=require('child_process');for(let i=0;i<2;i++)spawn(process.execPath,['-e',${JSON.stringify(hog)}],{stdio:'inherit'}).on('exit',()=>process.exit(1));setTimeout(()=>{},60000)`;
    const box = await startSandboxed(settingsFor({ KILN_BAKE_MEMORY: '128MiB' }), ['-e', script]);
    const timer = setTimeout(() => box.kill(), 30_000);
    const exit = await box.done.finally(() => clearTimeout(timer));
    assert.equal(exit.oomKilled, true, `exit ${exit.code ?? exit.signal}: ${exit.stderr}`);
    assert.ok(!existsSync(box.cgroups.memoryDir as string), 'the cgroup is removed');
  });

  for (const mode of ['bwrap', 'none']) {
    it(`a bake over KILN_BAKE_MEMORY fails naming it (${mode})`, async () => {
      const { blob, diffId } = await gzipStream(emptyFilesTar(450_000, 1000));
      const image = imageFromBlobs([{ blob, mediaType: OCI_LAYER_GZIP, diffId }]);
      const input = inputFor(image);
      const err = await bakeErrorOf(sandboxedBake(input, settingsFor({ KILN_BAKE_MEMORY: '128MiB', KILN_BAKE_SANDBOX: mode })));
      assert.equal(err.code, 'LIMIT_EXCEEDED');
      assert.match(err.message, new RegExp(`more memory than the limit of ${128 * MiB} bytes \\(128\\.0 MiB\\); raise KILN_BAKE_MEMORY to allow more`));
      assertNothingLeft(input);
    });
  }
});
