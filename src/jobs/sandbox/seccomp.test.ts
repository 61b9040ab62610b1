import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REFUSED_SYSCALLS, seccompFilter } from './seccomp.js';

const ALLOW = 0x7fff0000;
const EPERM = 0x00050001;
const KILL = 0x80000000;
const X86_64 = 0xc000003e;
const AARCH64 = 0xc00000b7;

/** Runs the classic BPF program the way the kernel would on struct seccomp_data { nr, arch }. */
function verdict(program: Buffer, nr: number, arch = X86_64): number {
  const data = Buffer.alloc(64);
  data.writeUInt32LE(nr >>> 0, 0);
  data.writeUInt32LE(arch >>> 0, 4);
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
    else if (code === 0x06) return k;
    else assert.fail(`unknown opcode ${code}`);
  }
  assert.fail('the program did not end');
}

describe('seccompFilter', () => {
  const program = seccompFilter('x64')!;

  const cases: Array<[string, number, number, number?]> = [
    ['read', 0, ALLOW],
    ['write', 1, ALLOW],
    ['mmap', 9, ALLOW],
    ['clone', 56, ALLOW],
    ['execve', 59, ALLOW],
    ['prctl', 157, ALLOW],
    ['clone3', 435, ALLOW],
    ['ptrace', 101, EPERM],
    ['mount', 165, EPERM],
    ['unshare', 272, EPERM],
    ['bpf', 321, EPERM],
    ['userfaultfd', 323, EPERM],
    ['io_uring_setup', 425, EPERM],
    ['mount_setattr', 442, EPERM],
    ['x32 read', 0x40000000, EPERM],
    ['x32 anything', 0x40000200, EPERM],
    ['read with the aarch64 ABI', 0, KILL, AARCH64],
  ];
  for (const [name, nr, expected, arch] of cases) {
    it(`${name} (${nr}) → ${expected.toString(16)}`, () => assert.equal(verdict(program, nr, arch), expected));
  }

  it('refuses every listed call and nothing next to them', () => {
    const refused = new Set(Object.values(REFUSED_SYSCALLS));
    for (let nr = 0; nr < 512; nr++) assert.equal(verdict(program, nr), refused.has(nr) ? EPERM : ALLOW, `syscall ${nr}`);
  });

  it('has no filter for other architectures', () => {
    assert.equal(seccompFilter('arm64'), null);
  });
});
