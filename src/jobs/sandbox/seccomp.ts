// The seccomp filter bwrap loads before it runs the bake's program
// (`--seccomp FD`): a classic BPF program that refuses the system calls a
// bake never needs and a kernel exploit often does — tracing other
// processes, mounting, kernel modules and keyrings, namespaces (clone with a
// namespace flag too), eBPF, perf events, userfaultfd, NUMA policy and
// io_uring (libuv falls back to its thread pool) — and sockets of any family
// but Unix, IP and netlink: the network namespace does not cover vsock,
// which reaches the host's vsock ports and the hypervisor. The namespaces,
// rlimits and cgroups do the confining; this takes away kernel surface. Pure.
//
// Calls newer than the newest vetted here (and clone3, whose flags the
// filter cannot read) get ENOSYS, so that libc falls back to an older call;
// calls with another ABI kill the process; x32 calls are refused. x86_64
// only: elsewhere there is no filter.

/** AUDIT_ARCH_X86_64. */
const ARCH_X86_64 = 0xc000003e;
/** System call numbers at or above this are the x32 ABI. */
const X32_SYSCALL_BIT = 0x40000000;
const EPERM = 1;
const ENOSYS = 38;
const EAFNOSUPPORT = 97;

const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const RET_ALLOW = 0x7fff0000;

// struct seccomp_data: nr (u32) at 0, arch (u32) at 4, args[0] at 16 (its low 32 bits, little-endian).
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
const OFFSET_ARG0 = 16;

// BPF opcodes: BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_JMP|BPF_JGE|BPF_K, BPF_JMP|BPF_JSET|BPF_K, BPF_RET|BPF_K.
const BPF = { LOAD: 0x20, JEQ: 0x15, JGE: 0x35, JSET: 0x45, RET: 0x06 } as const;

/** The first call number not vetted here (set_mempolicy_home_node, 450, is the last one in Linux 6.1's table). */
const FIRST_UNVETTED = 451;
const CLONE = 56;
const CLONE3 = 435;
/** CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET. */
const CLONE_NAMESPACES = 0x7e020000;
const SOCKET = 41;
const SOCKETPAIR = 53;
/** AF_UNIX, AF_INET, AF_INET6, AF_NETLINK: what Node and libuv open. */
const SOCKET_FAMILIES = [1, 2, 10, 16];

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
  mount_setattr: 442, ustat: 136, sysfs: 139, mbind: 237, set_mempolicy: 238, get_mempolicy: 239,
  migrate_pages: 256, move_pages: 279, pidfd_getfd: 438, process_madvise: 440, quotactl_fd: 443,
  set_mempolicy_home_node: 450,
};

/** The filter as bwrap reads it (struct sock_filter[], native byte order); null where there is none for this machine. */
export function seccompFilter(arch: string = process.arch): Buffer | null {
  if (arch !== 'x64') return null;
  // Jumps are relative and forward only: the program is written with labels, resolved at the end.
  const program: Array<{ code: number; k: number; jt?: string; jf?: string; label?: string }> = [];
  let nextLabel: string | undefined;
  const op = (code: number, k: number, jt?: string, jf?: string) => {
    program.push({ code, k, jt, jf, label: nextLabel });
    nextLabel = undefined;
  };
  const label = (name: string) => (nextLabel = name);

  op(BPF.LOAD, OFFSET_ARCH);
  op(BPF.JEQ, ARCH_X86_64, undefined, 'kill');
  op(BPF.LOAD, OFFSET_NR);
  op(BPF.JGE, X32_SYSCALL_BIT, 'eperm');
  op(BPF.JGE, FIRST_UNVETTED, 'enosys');
  op(BPF.JEQ, CLONE3, 'enosys');
  for (const nr of Object.values(REFUSED_SYSCALLS)) op(BPF.JEQ, nr, 'eperm');
  op(BPF.JEQ, CLONE, 'clone');
  op(BPF.JEQ, SOCKET, 'socket');
  op(BPF.JEQ, SOCKETPAIR, 'socket');
  op(BPF.RET, RET_ALLOW);
  label('clone');
  op(BPF.LOAD, OFFSET_ARG0);
  op(BPF.JSET, CLONE_NAMESPACES, 'eperm');
  op(BPF.RET, RET_ALLOW);
  label('socket');
  op(BPF.LOAD, OFFSET_ARG0);
  for (const family of SOCKET_FAMILIES) op(BPF.JEQ, family, 'family allowed');
  op(BPF.RET, RET_ERRNO | EAFNOSUPPORT);
  label('family allowed');
  op(BPF.RET, RET_ALLOW);
  label('eperm');
  op(BPF.RET, RET_ERRNO | EPERM);
  label('enosys');
  op(BPF.RET, RET_ERRNO | ENOSYS);
  label('kill');
  op(BPF.RET, RET_KILL_PROCESS);

  const at = new Map(program.flatMap((i, n) => (i.label ? [[i.label, n] as const] : [])));
  const offset = (from: number, target: string | undefined) => {
    if (target === undefined) return 0;
    const to = at.get(target);
    const jump = to === undefined ? -1 : to - (from + 1);
    if (jump < 0 || jump > 255) throw new Error(`the seccomp program cannot jump from ${from} to ${target}`);
    return jump;
  };
  const out = Buffer.alloc(program.length * 8);
  program.forEach((i, n) => {
    out.writeUInt16LE(i.code, n * 8);
    out.writeUInt8(offset(n, i.jt), n * 8 + 2);
    out.writeUInt8(offset(n, i.jf), n * 8 + 3);
    out.writeUInt32LE(i.k >>> 0, n * 8 + 4);
  });
  return out;
}
