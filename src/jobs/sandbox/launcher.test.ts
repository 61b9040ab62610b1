import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sandboxCommand, type SandboxTools } from './launcher.js';
import { loadSandboxSettings } from './settings.js';

const tools: SandboxTools = {
  sh: '/bin/sh', chrt: '/usr/bin/chrt', nice: '/usr/bin/nice', ionice: '/usr/bin/ionice', prlimit: '/usr/bin/prlimit', setpriv: '/usr/bin/setpriv',
  bwrap: '/usr/bin/bwrap', node: '/usr/bin/node', zstd: '/usr/bin/zstd',
  libDirs: ['/usr/lib/x86_64-linux-gnu', '/usr/lib64'], symlinks: [{ at: '/lib64', target: 'usr/lib64' }], nodeModules: '/srv/kiln/node_modules',
};
const settings = (env: Record<string, string> = {}) => loadSandboxSettings({ KILN_BAKE_TIMEOUT: '10m', KILN_BAKE_MEMORY: '1GiB', KILN_BAKE_MAX_DISK_BYTES: '4096000', ...env }, { uid: 0, gid: 0 });
const after = (argv: string[], flag: string) => argv[argv.indexOf(flag) + 1];

describe('sandboxCommand', () => {
  it('joins the cgroups, lowers priority, sets the rlimits, then bwrap with no network and a read-only view, then node', () => {
    const argv = sandboxCommand(settings(), tools, ['/srv/kiln/dist/src/jobs/sandbox/bake-entry.js'], ['/cg/memory/x/cgroup.procs'], true);
    const order = ['/bin/sh', '/usr/bin/chrt', '/usr/bin/nice', '/usr/bin/ionice', '/usr/bin/prlimit', '/usr/bin/setpriv', '/usr/bin/bwrap', '/usr/bin/node'].map((t) => argv.indexOf(t));
    assert.deepEqual([...order].sort((a, b) => a - b), order, `in order: ${order}`);
    assert.ok(order.every((i) => i >= 0));
    assert.ok(argv.includes('/cg/memory/x/cgroup.procs'));
    assert.deepEqual(argv.slice(argv.indexOf('/usr/bin/chrt'), argv.indexOf('/usr/bin/prlimit')), ['/usr/bin/chrt', '--idle', '0', '/usr/bin/nice', '-n', '19', '/usr/bin/ionice', '-c', '3']);
    for (const limit of ['--cpu=1200', '--fsize=4096000', `--data=${1024 ** 3}`, '--nofile=256', '--nproc=1024', '--core=0']) assert.ok(argv.includes(limit), limit);
    for (const flag of ['--unshare-user', '--unshare-net', '--unshare-pid', '--unshare-ipc', '--disable-userns', '--die-with-parent', '--new-session', '--clearenv']) assert.ok(argv.includes(flag), flag);
    assert.equal(after(argv, '--remount-ro'), '/');
    assert.equal(after(argv, '--tmpfs'), '/tmp');
    // The private /tmp comes before every bind, so a program that lives under /tmp stays visible.
    assert.ok(argv.indexOf('--tmpfs') < argv.indexOf('--ro-bind'), 'tmpfs /tmp before the binds');
    // Only read-only binds: nothing of the host is writable inside.
    assert.ok(!argv.includes('--bind') && !argv.includes('--dev-bind'));
    assert.ok(argv.includes('--max-old-space-size=768'));
    assert.equal(argv.at(-1), '/srv/kiln/dist/src/jobs/sandbox/bake-entry.js');
  });

  it('gives bwrap the seccomp filter fd when there is one, and none otherwise', () => {
    const program = ['/p.js'];
    const withFilter = sandboxCommand(settings(), tools, program, [], true, 4);
    assert.equal(after(withFilter, '--seccomp'), '4');
    assert.ok(withFilter.indexOf('--seccomp') < withFilter.lastIndexOf('/usr/bin/node'), 'a bwrap option, before the program');
    assert.ok(!sandboxCommand(settings(), tools, program, [], true).includes('--seccomp'));
    assert.ok(!sandboxCommand(settings({ KILN_BAKE_SANDBOX: 'none' }), tools, program, [], true, 4).includes('--seccomp'));
  });

  it('none: the same process limits and priority, no bwrap; no cgroup step without cgroups; no nproc unless root', () => {
    const argv = sandboxCommand(settings({ KILN_BAKE_SANDBOX: 'none' }), tools, ['/p.js'], [], false);
    assert.equal(argv[0], '/usr/bin/chrt');
    assert.ok(!argv.includes('/usr/bin/bwrap'));
    assert.ok(!argv.some((a) => a.startsWith('--nproc')));
    assert.deepEqual(argv.slice(argv.indexOf('/usr/bin/setpriv'), argv.indexOf('/usr/bin/node')), ['/usr/bin/setpriv', '--no-new-privs', '--pdeathsig', 'KILL', '--']);
  });
});
