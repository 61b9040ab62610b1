// The `kiln` command line and auth: `kiln serve` will not run an open
// registry on a reachable address unless told so, and `kiln token create` /
// `kiln token revoke` manage the keys a server on the same data dir accepts.
// Needs the compiled CLI (dist/). Traffic only ever goes to 127.0.0.1; the
// 0.0.0.0 server is stopped as soon as it says it listens.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { basic, expectRefusal, jwtPayload } from './helpers/auth.js';
import { repoRoot, spawnKiln, tempDir, type SpawnedKiln } from './helpers/kiln.js';

const run = promisify(execFile);
const CLI = path.join(repoRoot, 'bin', 'kiln.js');

/** The environment of every child: ours without any KILN_ setting that could change the outcome. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KILN_')) env[k] = v;
  return { ...env, ...extra };
}

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function kiln(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: childEnv(env), timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

interface ServeOutcome {
  /** The exit code when it exited on its own; null when it started listening (and was stopped). */
  code: number | null;
  stdout: string;
  stderr: string;
  /** The code it exited with after SIGTERM, when it had started. */
  stoppedWith?: number | null;
}

/**
 * Runs `kiln serve` and waits until it either exits or says it listens; a
 * listening server gets SIGTERM at once and nothing is ever sent to it.
 */
function serveOnce(args: string[], env: Record<string, string>): Promise<ServeOutcome> {
  const proc = spawn(process.execPath, [CLI, 'serve', ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    let listening = false;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`kiln serve neither exited nor listened in 20 s: ${stdout}${stderr}`));
    }, 20_000);
    proc.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!listening && /listening on /.test(stdout)) {
        listening = true;
        proc.kill('SIGTERM');
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve(listening ? { code: null, stdout, stderr, stoppedWith: code } : { code, stdout, stderr });
    });
  });
}

let work: string;
before(async () => {
  work = await tempDir('kiln-auth-serve-');
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('kiln serve on a reachable address', () => {
  it('refuses KILN_AUTH=off on 0.0.0.0 without --insecure-no-auth, and says so', async () => {
    const dataDir = path.join(work, 'refused');
    const out = await serveOnce(['--listen', '0.0.0.0:0', '--data-dir', dataDir, '--log-level', 'warn'], { KILN_AUTH: 'off' });
    assert.notEqual(out.code, null, `it started: ${out.stdout}`);
    assert.notEqual(out.code, 0);
    assert.match(out.stderr, /KILN_AUTH=off/);
    assert.match(out.stderr, /0\.0\.0\.0/);
    assert.match(out.stderr, /--insecure-no-auth/);
    // It refused before touching anything.
    await assert.rejects(stat(dataDir), /ENOENT/);
  });

  it('starts with --insecure-no-auth, auth off', async () => {
    const out = await serveOnce(['--listen', '0.0.0.0:0', '--data-dir', path.join(work, 'insecure'), '--log-level', 'warn', '--insecure-no-auth'], { KILN_AUTH: 'off' });
    assert.equal(out.code, null, `it did not start: ${out.stderr}`);
    assert.match(out.stdout, /listening on http:\/\/0\.0\.0\.0:\d+ .*auth off/);
    assert.equal(out.stoppedWith, 0, out.stderr);
  });

  it('defaults to token auth there', async () => {
    const out = await serveOnce(['--listen', '0.0.0.0:0', '--data-dir', path.join(work, 'default'), '--log-level', 'warn'], {});
    assert.equal(out.code, null, `it did not start: ${out.stderr}`);
    assert.match(out.stdout, /auth token/);
    assert.equal(out.stoppedWith, 0, out.stderr);
  });

  it('rejects a KILN_AUTH it does not know', async () => {
    const out = await serveOnce(['--listen', '127.0.0.1:0', '--data-dir', path.join(work, 'bad-mode'), '--log-level', 'warn'], { KILN_AUTH: 'maybe' });
    assert.notEqual(out.code, null, 'it started');
    assert.notEqual(out.code, 0);
    assert.match(out.stderr, /KILN_AUTH must be "off" or "token"/);
  });
});

describe('kiln token create / revoke against a data dir', () => {
  let dataDir: string;
  let server: SpawnedKiln | undefined;
  before(async () => {
    dataDir = path.join(work, 'keys');
  });
  after(async () => {
    await server?.stop();
  });

  const v2 = (key: string, p = '/v2/') => fetch(`${server!.url}${p}`, { headers: { authorization: basic('me', key) } });

  it('creates keys that a server on the data dir accepts, and revokes them while it runs', async () => {
    // The directory is new: --init makes it a data directory (without it the CLI refuses, see token-cli.test.ts).
    const created = await kiln(['token', 'create', '--tenant', 'acme', '--ttl', '30d', '--data-dir', dataDir, '--init']);
    assert.equal(created.code, 0, created.stderr);
    const key = created.stdout.trim();
    assert.equal(key.split('\n').length, 1, 'stdout is the key alone');
    const claims = jwtPayload(key);
    assert.equal(claims.tenant, 'acme');
    assert.equal(claims.role, 'tenant');
    assert.equal((claims.exp as number) - (claims.iat as number), 30 * 86_400);
    const jti = claims.jti as string;
    assert.match(created.stderr, new RegExp(`API key ${jti} for tenant acme, expires .*kiln token revoke ${jti}`));
    // The signing key was generated owner-only.
    assert.equal((await stat(path.join(dataDir, 'auth-key.json'))).mode & 0o777, 0o600);

    const admin = await kiln(['token', 'create', '--admin', '--data-dir', dataDir]);
    assert.equal(admin.code, 0, admin.stderr);
    assert.equal(jwtPayload(admin.stdout.trim()).role, 'admin');

    server = await spawnKiln(dataDir, { KILN_AUTH: 'token' });
    const ok = await v2(key);
    assert.equal(ok.status, 200, await ok.text());
    const own = await v2(key, '/v2/acme/app/tags/list');
    assert.equal(own.status, 404, 'the key reaches its own (empty) namespace');
    await own.arrayBuffer();
    const foreign = await v2(key, '/v2/umbrella/app/tags/list');
    await expectRefusal(foreign, server.url, { status: 403, code: 'DENIED' });

    const revoked = await kiln(['token', 'revoke', jti, '--data-dir', dataDir]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(revoked.stdout.trim(), `revoked ${jti}`);
    await expectRefusal(await v2(key), server.url, { status: 401, code: 'UNAUTHORIZED', error: 'invalid_token', message: new RegExp(`API key ${jti} was revoked`) });
    // The admin key is untouched.
    const stillOk = await v2(admin.stdout.trim());
    assert.equal(stillOk.status, 200);
    await stillOk.arrayBuffer();

    const again = await kiln(['token', 'revoke', jti, '--data-dir', dataDir]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.trim(), `${jti} was already revoked`);
  });

  it('says what is wrong with bad requests', async () => {
    const unknown = await kiln(['token', 'revoke', 'no-such-key', '--data-dir', dataDir]);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /no API key has the id no-such-key/);
    const noTenant = await kiln(['token', 'create', '--data-dir', dataDir]);
    assert.notEqual(noTenant.code, 0);
    assert.match(noTenant.stderr, /--tenant/);
    const badTtl = await kiln(['token', 'create', '--tenant', 'acme', '--ttl', 'forever', '--data-dir', dataDir]);
    assert.notEqual(badTtl.code, 0);
    assert.match(badTtl.stderr, /--ttl: "forever" is not a duration/);
    const reserved = await kiln(['token', 'create', '--tenant', 'cache', '--data-dir', dataDir]);
    assert.notEqual(reserved.code, 0);
    assert.match(reserved.stderr, /reserved/);
  });
});
