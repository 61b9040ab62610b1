// The seccomp filter bwrap loads before it runs the bake's program
// (`--seccomp FD`): a classic BPF program that refuses, with EPERM, the
// system calls a bake never needs and a kernel exploit often does — tracing
// other processes, mounting, kernel modules and keyrings, namespaces, eBPF,
// perf events, userfaultfd and io_uring (libuv falls back to its thread
// pool). Everything else is allowed: the namespaces, rlimits and cgroups do
// the confining; this takes away kernel surface. Pure.
//
// x86_64 only (the program checks the architecture and kills a process that
// calls with another ABI; x32 calls are refused). Elsewhere there is no filter.

/** AUDIT_ARCH_X86_64. */
const ARCH_X86_64 = 0xc000003e;
/** System call numbers at or above this are the x32 ABI. */
const X32_SYSCALL_BIT = 0x40000000;
const EPERM = 1;

const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const RET_ALLOW = 0x7fff0000;

// struct seccomp_data: nr (u32) at 0, arch (u32) at 4.
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;

// BPF opcodes: BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_JMP|BPF_JGE|BPF_K, BPF_RET|BPF_K.
const BPF = { LOAD: 0x20, JEQ: 0x15, JGE: 0x35, RET: 0x06 } as const;

/** x86_64 numbers (asm/unistd_64.h) of the calls refused. */
export const REFUSED_SYSCALLS: Readonly<Record<string, number>> = {
  ptrace: 101, syslog: 103, uselib: 134, vhangup: 153, pivot_root: 155, _sysctl: 156, adjtimex: 159,
  chroot: 161, acct: 163, settimeofday: 164, mount: 165, umount2: 166, swapon: 167, swapoff: 168,
  reboot: 169, sethostname: 170, setdomainname: 171, iopl: 172, ioperm: 173, create_module: 174,
  init_module: 175, delete_module: 176, get_kernel_syms: 177, query_module: 178, quotactl: 179,
  nfsservctl: 180, lookup_dcookie: 212, clock_settime: 227, kexec_load: 246, add_key: 248,
  request_key: 249, keyctl: 250, unshare: 272, perf_event_open: 298, fanotify_init: 300,
  name_to_handle_at: 303, open_by_handle_at: 304, clock_adjtime: 305, setns: 308,
  process_vm_readv: 310, process_vm_writev: 311, kcmp: 312, finit_module: 313, kexec_file_load: 320,
  bpf: 321, userfaultfd: 323, io_uring_setup: 425, io_uring_enter: 426, io_uring_register: 427,
  open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433,
  mount_setattr: 442,
};

interface Instruction {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** The filter as bwrap reads it (struct sock_filter[], native byte order); null where there is none for this machine. */
export function seccompFilter(arch: string = process.arch): Buffer | null {
  if (arch !== 'x64') return null;
  const refused = Object.values(REFUSED_SYSCALLS);
  // Layout: check arch, load nr, refuse x32, one JEQ per refused call, ALLOW, ERRNO.
  const errnoAt = 5 + refused.length + 1;
  const program: Instruction[] = [
    { code: BPF.LOAD, jt: 0, jf: 0, k: OFFSET_ARCH },
    { code: BPF.JEQ, jt: 1, jf: 0, k: ARCH_X86_64 },
    { code: BPF.RET, jt: 0, jf: 0, k: RET_KILL_PROCESS },
    { code: BPF.LOAD, jt: 0, jf: 0, k: OFFSET_NR },
  ];
  const jumpToErrno = () => errnoAt - (program.length + 1);
  program.push({ code: BPF.JGE, jt: jumpToErrno(), jf: 0, k: X32_SYSCALL_BIT });
  for (const nr of refused) program.push({ code: BPF.JEQ, jt: jumpToErrno(), jf: 0, k: nr });
  program.push({ code: BPF.RET, jt: 0, jf: 0, k: RET_ALLOW });
  program.push({ code: BPF.RET, jt: 0, jf: 0, k: RET_ERRNO | EPERM });
  if (program.length !== errnoAt + 1 || program.some((i) => i.jt > 255)) throw new Error('the seccomp program is malformed');
  const out = Buffer.alloc(program.length * 8);
  program.forEach((i, n) => {
    out.writeUInt16LE(i.code, n * 8);
    out.writeUInt8(i.jt, n * 8 + 2);
    out.writeUInt8(i.jf, n * 8 + 3);
    out.writeUInt32LE(i.k, n * 8 + 4);
  });
  return out;
}
