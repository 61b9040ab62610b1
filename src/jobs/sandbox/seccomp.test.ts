import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REFUSED_SYSCALLS, seccompFilter } from './seccomp.js';

const ALLOW = 0x7fff0000;
const EPERM = 0x00050001;
const ENOSYS = 0x00050026;
const EAFNOSUPPORT = 0x00050061;
const KILL = 0x80000000;
const X86_64 = 0xc000003e;
const AARCH64 = 0xc00000b7;

/** Runs the classic BPF program the way the kernel would on struct seccomp_data { nr, arch, ip, args }. */
function verdict(program: Buffer, nr: number, arg0 = 0, arch = X86_64): number {
  const data = Buffer.alloc(64);
  data.writeUInt32LE(nr >>> 0, 0);
  data.writeUInt32LE(arch >>> 0, 4);
  data.writeUInt32LE(arg0 >>> 0, 16);
  let a = 0;
  for (let pc = 0, steps = 0; steps < 1000; steps++) {
    assert.ok(pc * 8 < program.length, `jumped past the end (pc ${pc})`);
    const code = program.readUInt16LE(pc * 8);
    const jt = program.readUInt8(pc * 8 + 2);
    const jf = program.readUInt8(pc * 8 + 3);
    const k = program.readUInt32LE(pc * 8 + 4);
    pc++;
    if (code === 0x20) a = data.readUInt32LE(k);
    else if (code === 0x15) pc += a === k ? jt : jf;
    else if (code === 0x35) pc += a >= k ? jt : jf;
    else if (code === 0x45) pc += (a & k) !== 0 ? jt : jf;
    else if (code === 0x06) return k;
    else assert.fail(`unknown opcode ${code}`);
  }
  assert.fail('the program did not end');
}

const CLONE_THREAD_FLAGS = 0x003d0f00; // what glibc's pthread_create passes
const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWNET = 0x40000000;
const CLONE_NEWNS = 0x00020000;

describe('seccompFilter', () => {
  const program = seccompFilter('x64')!;

  const cases: Array<[string, number, number, number, number?]> = [
    ['read', 0, 0, ALLOW],
    ['write', 1, 0, ALLOW],
    ['mmap', 9, 0, ALLOW],
    ['execve', 59, 0, ALLOW],
    ['prctl', 157, 0, ALLOW],
    ['clone for a thread', 56, CLONE_THREAD_FLAGS, ALLOW],
    ['clone for fork', 56, 0x01200011, ALLOW],
    ['clone with CLONE_NEWUSER', 56, CLONE_THREAD_FLAGS | CLONE_NEWUSER, EPERM],
    ['clone with CLONE_NEWNET', 56, CLONE_NEWNET | 17, EPERM],
    ['clone with CLONE_NEWNS', 56, CLONE_NEWNS, EPERM],
    ['clone3 (its flags cannot be read: libc falls back to clone)', 435, 0, ENOSYS],
    ['socket AF_UNIX', 41, 1, ALLOW],
    ['socket AF_INET', 41, 2, ALLOW],
    ['socket AF_INET6', 41, 10, ALLOW],
    ['socket AF_NETLINK', 41, 16, ALLOW],
    ['socket AF_VSOCK', 41, 40, EAFNOSUPPORT],
    ['socket AF_PACKET', 41, 17, EAFNOSUPPORT],
    ['socket AF_ALG', 41, 38, EAFNOSUPPORT],
    ['socketpair AF_UNIX', 53, 1, ALLOW],
    ['socketpair AF_VSOCK', 53, 40, EAFNOSUPPORT],
    ['ptrace', 101, 0, EPERM],
    ['mount', 165, 0, EPERM],
    ['unshare', 272, 0, EPERM],
    ['bpf', 321, 0, EPERM],
    ['userfaultfd', 323, 0, EPERM],
    ['io_uring_setup', 425, 0, EPERM],
    ['pidfd_getfd', 438, 0, EPERM],
    ['set_mempolicy', 238, 0, EPERM],
    ['futex_waitv', 449, 0, ALLOW],
    ['set_mempolicy_home_node, the last vetted', 450, 0, EPERM],
    ['the first unvetted number', 451, 0, ENOSYS],
    ['open_tree_attr (Linux 6.15)', 467, 0, ENOSYS],
    ['x32 read', 0x40000000, 0, EPERM],
    ['x32 anything', 0x40000200, 0, EPERM],
    ['read with the aarch64 ABI', 0, 0, KILL, AARCH64],
  ];
  for (const [name, nr, arg0, expected, arch] of cases) {
    it(`${name} (${nr}, ${arg0.toString(16)}) → ${expected.toString(16)}`, () => assert.equal(verdict(program, nr, arg0, arch), expected));
  }

  it('refuses every listed call and nothing next to them', () => {
    const refused = new Set(Object.values(REFUSED_SYSCALLS));
    for (let nr = 0; nr < 600; nr++) {
      const expected = refused.has(nr) ? EPERM : nr === 435 || nr >= 451 ? ENOSYS : ALLOW;
      // socket and socketpair are judged by family (AF_UNIX here).
      assert.equal(verdict(program, nr, 1), expected, `syscall ${nr}`);
    }
  });

  it('has no filter for other architectures', () => {
    assert.equal(seccompFilter('arm64'), null);
  });
});
