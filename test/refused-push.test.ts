// What each real client prints when Kiln refuses its push: the reason (who
// may not do what to which repository), never a bare "403 (Forbidden)".
// Clients check blobs with HEAD first, and a HEAD answer has no body; the
// reason must still get through (see src/auth/token-authorizer.ts).
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { isolatedContainersEnv } from './helpers/containers.js';
import { dockerUnavailable, startDocker, type TestDocker } from './helpers/docker.js';
import { sharedDir, startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { writeBaseImageLayout } from './helpers/layout.js';

const run = promisify(execFile);
/** The image in podman's and buildah's (shared, vfs) local storage. */
const LOCAL_IMAGE = 'localhost/kiln/refused:v1';

let server: TestKiln;
let work: string;
let layout: string;
let env: NodeJS.ProcessEnv;
let policy: string;
let umbrellaKey: string;
let docker: TestDocker | null = null;
let dockerSkip: string | null = null;

/** The client's combined output; it must fail. */
async function refused(cmd: string, args: string[], extraEnv: NodeJS.ProcessEnv = env): Promise<string> {
  try {
    const { stdout, stderr } = await run(cmd, args, { env: extraEnv, cwd: work, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
    assert.fail(`${cmd} ${args.join(' ')} succeeded but must be refused:\n${stdout}${stderr}`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    const e = err as { stderr?: string; stdout?: string; message: string };
    return `${e.stdout ?? ''}${e.stderr ?? ''}`;
  }
}

const FOREIGN = /tenant umbrella may not (pull|push) acme\/app/;
const ANONYMOUS = /authentication required: an anonymous caller .*may not (pull|push) acme\/app/;

function saysWhy(output: string, reason: RegExp, client: string): void {
  assert.match(output, reason, `${client} did not print the reason:\n${output}`);
}

before(async () => {
  work = await tempDir('kiln-refused-push-');
  ({ env, policy } = await isolatedContainersEnv(work, { vfsStorage: true }));
  layout = path.join(work, 'layout');
  await writeBaseImageLayout(layout);
  server = await startKiln({ env: { KILN_AUTH: 'token' } });
  umbrellaKey = (await server.kiln.auth.tokens.createApiKey({ tenant: 'umbrella', ttlSeconds: 3600 })).token;
  // podman and buildah push from their local storage: load the image there once.
  await run('skopeo', ['--policy', policy, 'copy', `oci:${layout}:v1`, `containers-storage:${LOCAL_IMAGE}`], { env, timeout: 120_000 });
  dockerSkip = await dockerUnavailable();
  if (dockerSkip === null) {
    docker = await startDocker(work);
    const archive = path.join(work, 'image.tar');
    await run('skopeo', ['--policy', policy, 'copy', `oci:${layout}:v1`, `docker-archive:${archive}:${server.host}/acme/app:v1`], { env, timeout: 120_000 });
    await run('docker', ['load', '-i', archive], { env: docker.env, timeout: 120_000 });
    await run('ctr', ['-a', docker.containerdSocket, '-n', 'kiln-test', 'images', 'import', archive], { timeout: 120_000 });
  }
});

after(async () => {
  await docker?.stop();
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

const dest = () => `docker://${server.host}/acme/app:v1`;

describe('a refused push says why, in every client', () => {
  it('skopeo', async () => {
    const copy = (...creds: string[]) => refused('skopeo', ['--policy', policy, 'copy', '--dest-tls-verify=false', ...creds, `oci:${layout}:v1`, dest()]);
    saysWhy(await copy('--dest-creds', `ci:${umbrellaKey}`), FOREIGN, 'skopeo');
    saysWhy(await copy(), ANONYMOUS, 'skopeo');
  });

  it('podman', async () => {
    const push = (...creds: string[]) => refused('podman', ['push', '--tls-verify=false', ...creds, LOCAL_IMAGE, dest()]);
    saysWhy(await push('--creds', `ci:${umbrellaKey}`), FOREIGN, 'podman');
    saysWhy(await push(), ANONYMOUS, 'podman');
  });

  it('buildah', async () => {
    const push = (...creds: string[]) => refused('buildah', ['push', '--tls-verify=false', ...creds, LOCAL_IMAGE, dest()]);
    saysWhy(await push('--creds', `ci:${umbrellaKey}`), FOREIGN, 'buildah');
    saysWhy(await push(), ANONYMOUS, 'buildah');
  });

  it('docker', async (t) => {
    if (!docker) return t.skip(`docker did not run: ${dockerSkip}`);
    const image = `${server.host}/acme/app:v1`;
    const login = run('docker', ['login', '-u', 'ci', '--password-stdin', server.host], { env: docker.env });
    login.child.stdin!.end(umbrellaKey);
    await login;
    saysWhy(await refused('docker', ['push', image], docker.env), FOREIGN, 'docker');
    await run('docker', ['logout', server.host], { env: docker.env });
    saysWhy(await refused('docker', ['push', image], docker.env), ANONYMOUS, 'docker');
  });

  it('BuildKit (buildctl, pushing a build)', async (t) => {
    const tarball = path.join(sharedDir, 'tools', 'buildkit', 'buildkit-v0.20.2-linux-amd64.tar.gz');
    if (!existsSync(tarball)) return t.skip(`no BuildKit at ${tarball}`);
    if (process.getuid?.() !== 0) return t.skip('buildkitd needs root');
    const bk = path.join(work, 'buildkit');
    await mkdir(path.join(bk, 'ctx'), { recursive: true });
    await run('tar', ['-xzf', tarball, '-C', bk]);
    await writeFile(path.join(bk, 'ctx', 'data.txt'), 'data\n');
    await writeFile(path.join(bk, 'ctx', 'Dockerfile'), 'FROM scratch\nCOPY data.txt /data.txt\n');
    await writeFile(path.join(bk, 'buildkitd.toml'), '[worker.oci]\n  enabled = true\n  gc = false\n[worker.containerd]\n  enabled = false\n');
    const socket = `unix://${path.join(bk, 'buildkitd.sock')}`;
    const daemon: ChildProcess = spawn(path.join(bk, 'buildkitd'), ['--root', path.join(bk, 'state'), '--addr', socket, '--config', path.join(bk, 'buildkitd.toml')], {
      stdio: 'ignore',
    });
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    try {
      const buildctl = path.join(bk, 'buildctl');
      for (let i = 0; ; i++) {
        if (await run(buildctl, ['--addr', socket, 'debug', 'workers']).then(() => true, () => false)) break;
        if (i > 240) assert.fail('buildkitd did not answer within a minute');
        await new Promise((r) => setTimeout(r, 250));
      }
      const build = async (auths: Record<string, { auth: string }>) => {
        const config = path.join(bk, `docker-${Object.keys(auths).length}`);
        await mkdir(config, { recursive: true });
        await writeFile(path.join(config, 'config.json'), JSON.stringify({ auths }));
        const ctx = path.join(bk, 'ctx');
        const output = `type=image,name=${server.host}/acme/app:v1,push=true,registry.insecure=true`;
        return refused(buildctl, ['--addr', socket, 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--output', output], {
          ...process.env,
          DOCKER_CONFIG: config,
        });
      };
      saysWhy(await build({ [server.host]: { auth: Buffer.from(`ci:${umbrellaKey}`).toString('base64') } }), FOREIGN, 'buildctl');
      saysWhy(await build({}), ANONYMOUS, 'buildctl');
    } finally {
      daemon.kill('SIGTERM');
      await exited;
    }
  });

  it("containerd's ctr", async (t) => {
    if (!docker) return t.skip(`containerd (run by dockerd) did not run: ${dockerSkip}`);
    const push = (...creds: string[]) =>
      refused('ctr', ['-a', docker!.containerdSocket, '-n', 'kiln-test', 'images', 'push', '--plain-http', ...creds, `${server.host}/acme/app:v1`], process.env);
    saysWhy(await push('-u', `ci:${umbrellaKey}`), FOREIGN, 'ctr');
    saysWhy(await push(), ANONYMOUS, 'ctr');
  });
});
