/**
 * The kernel sandbox's seccomp profile, written as code.
 *
 * The profile is an allow-list: a system call that no rule names fails with `EPERM`
 * (`defaultAction: SCMP_ACT_ERRNO`, `defaultErrnoRet: 1`). It is tighter than Docker's built-in
 * default profile: every rule that Docker grants only to a container holding a capability is left
 * out (our containers hold none), and a further set of calls that a Python data-science kernel has
 * no use for is denied as well ({@link DENIED_SYSCALLS} lists them with the reason).
 *
 * `security/seccomp-profile.json` is this module's output, committed so that a reviewer can read
 * the profile without running code; `npx tsx security/generate-seccomp.ts` rewrites it, and a unit
 * test fails when the two differ. The Engine API wants the profile's JSON text, not a path
 * (`SecurityOpt: ["seccomp=<json>"]`): {@link seccompProfileJson} gives that text.
 *
 * Format: Docker's seccomp profile JSON (`types.Seccomp` in moby), read by the daemon and turned
 * into the OCI runtime spec's `linux.seccomp`; syscall names unknown to the host's libseccomp are
 * skipped by the runtime, so 32-bit and newer-kernel names are safe to list.
 *
 * @packageDocumentation
 *
 * Longer than 400 lines because it is the allow-list: one rule per system call, each with its purpose.
 */

/** A seccomp action as libseccomp names it. */
export type SeccompAction = 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO';

/** An argument comparison operator as libseccomp names it. */
export type SeccompOperator = 'SCMP_CMP_EQ' | 'SCMP_CMP_NE' | 'SCMP_CMP_MASKED_EQ';

/**
 * One condition on a system call argument. All conditions of a rule must hold (logical AND);
 * alternatives are written as separate rules.
 */
export interface SeccompArg {
  /** Zero-based argument position. */
  index: number;
  /** The value compared with (for `SCMP_CMP_MASKED_EQ`: the mask). */
  value: number;
  /** For `SCMP_CMP_MASKED_EQ`: the value `(arg & value)` must equal; otherwise 0. */
  valueTwo: number;
  /** The comparison. */
  op: SeccompOperator;
}

/** Docker's architecture filter on a rule (`includes.arches`, Go's `GOARCH` names). */
export interface SeccompIncludes {
  /** The rule applies only when the daemon's architecture is one of these. */
  arches: string[];
}

/** One rule: a set of system call names, what happens to them, and optional conditions. */
export interface SeccompRule {
  /** System call names (libseccomp spelling). */
  names: string[];
  /** What the kernel does when the rule matches. */
  action: SeccompAction;
  /** With `SCMP_ACT_ERRNO`: the errno returned instead of the default. */
  errnoRet?: number;
  /** Argument conditions, all of which must hold. */
  args?: SeccompArg[];
  /** Why the rule exists (carried into the JSON for readers of the committed file). */
  comment: string;
  /** Restrict the rule to some architectures. */
  includes?: SeccompIncludes;
}

/** A native architecture and the compat architectures allowed beside it. */
export interface SeccompArchMapEntry {
  /** Native architecture (libseccomp name). */
  architecture: string;
  /** 32-bit or ABI variants also accepted on that host. */
  subArchitectures: string[];
}

/** The whole profile in Docker's seccomp JSON format. */
export interface SeccompProfile {
  /** What happens to a system call no rule allows. */
  defaultAction: SeccompAction;
  /** The errno for {@link SeccompProfile.defaultAction} (1 = `EPERM`). */
  defaultErrnoRet: number;
  /** Architectures: Docker picks the entry matching the daemon's own architecture. */
  archMap: SeccompArchMapEntry[];
  /** The rules, in order. */
  syscalls: SeccompRule[];
}

const EPERM = 1;
const ENOSYS = 38;

/**
 * The namespace flags of `clone(2)`: CLONE_NEWNS 0x00020000, CLONE_NEWCGROUP 0x02000000,
 * CLONE_NEWUTS 0x04000000, CLONE_NEWIPC 0x08000000, CLONE_NEWUSER 0x10000000,
 * CLONE_NEWPID 0x20000000, CLONE_NEWNET 0x40000000. A `clone` with any of them set is refused.
 */
export const CLONE_NAMESPACE_FLAGS = 0x7e020000;

/**
 * The `personality(2)` values a process may set: PER_LINUX (0), PER_LINUX32 (0x8),
 * UNAME26 (0x20000), PER_LINUX32|UNAME26 (0x20008), and 0xffffffff, which only queries.
 * ADDR_NO_RANDOMIZE and the other flags that weaken the address space are refused.
 */
const ALLOWED_PERSONALITIES: readonly number[] = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

/**
 * Socket address families a process may open: AF_UNIX (1) for ZeroMQ's ipc transport and
 * ipykernel, AF_INET (2) and AF_INET6 (10) because Python and libraries probe them (with network
 * `none` only loopback exists), AF_NETLINK (16, NETLINK_ROUTE only) for `getifaddrs`.
 * AF_PACKET, AF_ALG, AF_VSOCK, AF_BLUETOOTH, AF_KEY and the rest are refused.
 */
const ALLOWED_SOCKET_FAMILIES: Readonly<Record<string, number>> = {
  AF_UNIX: 1,
  AF_INET: 2,
  AF_INET6: 10,
  AF_NETLINK: 16,
};

const NETLINK_ROUTE = 0;

/**
 * A group of system calls deliberately left out of the allow-list, with the reason.
 * @see {@link DENIED_SYSCALLS}
 */
export interface DeniedSyscallGroup {
  /** System call names. */
  names: readonly string[];
  /** Why a kernel sandbox must not have them. */
  why: string;
}

/**
 * What the profile refuses on purpose (beyond the default deny), grouped by the reason. Each of
 * these names is absent from every allow rule; a unit test holds that. Most need a capability we
 * drop anyway; the filter is the second wall, and it also shrinks the kernel code reachable from
 * the sandbox when a capability check itself has a bug.
 */
const DENIED_SYSCALL_GROUPS: readonly DeniedSyscallGroup[] = [
  {
    names: [
      'mount',
      'umount',
      'umount2',
      'pivot_root',
      'chroot',
      'fsopen',
      'fsconfig',
      'fsmount',
      'fspick',
      'move_mount',
      'open_tree',
      'mount_setattr',
    ],
    why: 'mounting and re-rooting: the way out of a container file system view',
  },
  {
    names: ['unshare', 'setns', 'clone3'],
    why: 'new or foreign namespaces (user namespaces expose kernel code otherwise root-only); clone3 cannot be filtered by flags, so it answers ENOSYS and glibc falls back to clone',
  },
  {
    names: ['ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd'],
    why: 'reading or changing another process’s memory and file descriptors',
  },
  {
    names: ['keyctl', 'add_key', 'request_key'],
    why: 'the kernel keyring is not namespaced',
  },
  {
    names: ['bpf', 'perf_event_open', 'userfaultfd', 'lookup_dcookie'],
    why: 'kernel attack surface with a long exploit history (eBPF, perf, userfaultfd races)',
  },
  {
    names: ['io_uring_setup', 'io_uring_enter', 'io_uring_register'],
    why: 'io_uring bypasses per-syscall filtering and has a long exploit history',
  },
  {
    names: ['kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module'],
    why: 'loading kernels and kernel modules',
  },
  {
    names: ['open_by_handle_at', 'name_to_handle_at'],
    why: 'file handles reach files outside the container’s mount tree (the “shocker” escape)',
  },
  {
    names: ['reboot', 'swapon', 'swapoff', 'acct', 'quotactl', 'quotactl_fd', 'syslog', 'vhangup'],
    why: 'host administration',
  },
  {
    names: [
      'io_setup',
      'io_submit',
      'io_getevents',
      'io_pgetevents',
      'io_pgetevents_time64',
      'io_cancel',
      'io_destroy',
    ],
    why: 'Linux native AIO (libaio): unused by Python, ZeroMQ and the data stack, more kernel code in reach',
  },
  {
    names: [
      'nfsservctl',
      'uselib',
      'sysfs',
      '_sysctl',
      'ustat',
      'remap_file_pages',
      'epoll_ctl_old',
      'epoll_wait_old',
    ],
    why: 'obsolete interfaces nobody needs',
  },
  {
    names: [
      'clock_settime',
      'clock_settime64',
      'settimeofday',
      'stime',
      'adjtimex',
      'clock_adjtime',
      'clock_adjtime64',
    ],
    why: 'setting or tuning the host clock (the clock is not namespaced)',
  },
  {
    names: ['iopl', 'ioperm', 'modify_ldt'],
    why: 'raw I/O ports and segment descriptors',
  },
  {
    names: ['sethostname', 'setdomainname'],
    why: 'renaming the host',
  },
  {
    names: [
      'get_mempolicy',
      'set_mempolicy',
      'mbind',
      'set_mempolicy_home_node',
      'migrate_pages',
      'move_pages',
    ],
    why: 'NUMA placement: Docker grants it only with CAP_SYS_NICE; numpy, pandas and matplotlib run without it',
  },
  {
    names: ['fanotify_init', 'fanotify_mark'],
    why: 'file-system-wide event monitoring',
  },
  {
    names: ['socketcall', 'ipc'],
    why: '32-bit multiplexers whose arguments are behind a pointer, so the socket family and IPC filters could be bypassed through them',
  },
  {
    names: [
      'msgget',
      'msgsnd',
      'msgrcv',
      'msgctl',
      'mq_open',
      'mq_unlink',
      'mq_timedsend',
      'mq_timedsend_time64',
      'mq_timedreceive',
      'mq_timedreceive_time64',
      'mq_notify',
      'mq_getsetattr',
    ],
    why: 'System V and POSIX message queues: unused by Python, ZeroMQ and the data stack',
  },
  {
    names: ['vmsplice'],
    why: 'page-cache splicing from user memory, part of past privilege escalations; splice and tee stay',
  },
  {
    names: [
      'memfd_secret',
      'pkey_alloc',
      'pkey_free',
      'pkey_mprotect',
      'process_madvise',
      'process_mrelease',
    ],
    why: 'memory features no kernel workload needs',
  },
  {
    names: ['landlock_create_ruleset', 'landlock_add_rule', 'landlock_restrict_self', 'seccomp'],
    why: 'self-sandboxing interfaces: the sandbox is set from outside, and these are more kernel code in reach',
  },
  {
    names: ['sync', 'ioprio_set'],
    why: 'host-wide effects: flushing every file system, changing I/O priority',
  },
];

/** Every name in {@link DENIED_SYSCALL_GROUPS}, flattened and sorted. */
export const DENIED_SYSCALLS: readonly string[] = DENIED_SYSCALL_GROUPS.flatMap((g) => g.names)
  .slice()
  .sort();

/**
 * A group of system calls allowed without conditions, with what needs them.
 * @see {@link ALLOWED_SYSCALL_GROUPS}
 */
export interface AllowedSyscallGroup {
  /** What the group is for. */
  purpose: string;
  /** System call names (64-bit, 32-bit compat and time64 spellings alike). */
  names: readonly string[];
}

/**
 * The unconditional allow-list, grouped by purpose. Conditional rules (`clone`, `personality`,
 * `socket`) and per-architecture rules are built in {@link buildSeccompProfile}.
 */
export const ALLOWED_SYSCALL_GROUPS: readonly AllowedSyscallGroup[] = [
  {
    purpose: 'processes: fork/exec (Python subprocess uses vfork), wait, exit, identity queries',
    names: [
      'execve',
      'execveat',
      'fork',
      'vfork',
      'exit',
      'exit_group',
      'wait4',
      'waitid',
      'waitpid',
      'getpid',
      'getppid',
      'gettid',
      'getpgid',
      'getpgrp',
      'setpgid',
      'getsid',
      'setsid',
      'pidfd_open',
      'pidfd_send_signal',
    ],
  },
  {
    purpose: 'threads and the C runtime: TLS, robust futex lists, restartable sequences, prctl',
    names: [
      'set_tid_address',
      'set_robust_list',
      'get_robust_list',
      'rseq',
      'prctl',
      'membarrier',
      'set_thread_area',
      'get_thread_area',
    ],
  },
  {
    purpose:
      'credentials: reading ids; the set* calls only succeed within the ids already held (no capabilities, no-new-privileges)',
    names: [
      'getuid',
      'getuid32',
      'geteuid',
      'geteuid32',
      'getgid',
      'getgid32',
      'getegid',
      'getegid32',
      'getresuid',
      'getresuid32',
      'getresgid',
      'getresgid32',
      'getgroups',
      'getgroups32',
      'setuid',
      'setuid32',
      'setgid',
      'setgid32',
      'setreuid',
      'setreuid32',
      'setregid',
      'setregid32',
      'setresuid',
      'setresuid32',
      'setresgid',
      'setresgid32',
      'setgroups',
      'setgroups32',
      'setfsuid',
      'setfsuid32',
      'setfsgid',
      'setfsgid32',
      'capget',
      'capset',
    ],
  },
  {
    purpose: 'resource limits and scheduling (OpenBLAS threads query and pin CPUs)',
    names: [
      'getrlimit',
      'ugetrlimit',
      'setrlimit',
      'prlimit64',
      'getrusage',
      'times',
      'getpriority',
      'setpriority',
      'ioprio_get',
      'sched_yield',
      'sched_getaffinity',
      'sched_setaffinity',
      'sched_getattr',
      'sched_setattr',
      'sched_getparam',
      'sched_setparam',
      'sched_getscheduler',
      'sched_setscheduler',
      'sched_get_priority_max',
      'sched_get_priority_min',
      'sched_rr_get_interval',
      'sched_rr_get_interval_time64',
      'getcpu',
      'sysinfo',
      'uname',
      'umask',
    ],
  },
  {
    purpose: 'memory: the allocator, numpy buffers, mapped shared libraries, libffi trampolines',
    names: [
      'brk',
      'mmap',
      'mmap2',
      'munmap',
      'mremap',
      'mprotect',
      'madvise',
      'mincore',
      'msync',
      'mlock',
      'mlock2',
      'mlockall',
      'munlock',
      'munlockall',
      'memfd_create',
    ],
  },
  {
    purpose: 'signals: handlers, masks, delivery within the sandbox’s own PID namespace',
    names: [
      'rt_sigaction',
      'rt_sigprocmask',
      'rt_sigreturn',
      'rt_sigsuspend',
      'rt_sigpending',
      'rt_sigtimedwait',
      'rt_sigtimedwait_time64',
      'rt_sigqueueinfo',
      'rt_tgsigqueueinfo',
      'sigaltstack',
      'sigreturn',
      'sigprocmask',
      'signalfd',
      'signalfd4',
      'kill',
      'tkill',
      'tgkill',
      'pause',
      'restart_syscall',
    ],
  },
  {
    purpose: 'time: clocks, sleeps, timers',
    names: [
      'clock_gettime',
      'clock_gettime64',
      'clock_getres',
      'clock_getres_time64',
      'clock_nanosleep',
      'clock_nanosleep_time64',
      'gettimeofday',
      'time',
      'nanosleep',
      'alarm',
      'getitimer',
      'setitimer',
      'timer_create',
      'timer_delete',
      'timer_getoverrun',
      'timer_gettime',
      'timer_gettime64',
      'timer_settime',
      'timer_settime64',
      'timerfd_create',
      'timerfd_gettime',
      'timerfd_gettime64',
      'timerfd_settime',
      'timerfd_settime64',
    ],
  },
  {
    purpose:
      'waiting and waking: futexes (threads, locks), poll/select/epoll (ZeroMQ, asyncio), eventfd, pipes',
    names: [
      'futex',
      'futex_time64',
      'futex_waitv',
      'poll',
      'ppoll',
      'ppoll_time64',
      'select',
      '_newselect',
      'pselect6',
      'pselect6_time64',
      'epoll_create',
      'epoll_create1',
      'epoll_ctl',
      'epoll_wait',
      'epoll_pwait',
      'epoll_pwait2',
      'eventfd',
      'eventfd2',
      'pipe',
      'pipe2',
    ],
  },
  {
    purpose: 'file descriptors and file I/O',
    names: [
      'read',
      'write',
      'readv',
      'writev',
      'pread64',
      'pwrite64',
      'preadv',
      'preadv2',
      'pwritev',
      'pwritev2',
      'open',
      'openat',
      'openat2',
      'creat',
      'close',
      'close_range',
      'lseek',
      '_llseek',
      'dup',
      'dup2',
      'dup3',
      'fcntl',
      'fcntl64',
      'flock',
      'ioctl',
      'fsync',
      'fdatasync',
      'syncfs',
      'sync_file_range',
      'fallocate',
      'ftruncate',
      'ftruncate64',
      'truncate',
      'truncate64',
      'fadvise64',
      'fadvise64_64',
      'readahead',
      'sendfile',
      'sendfile64',
      'copy_file_range',
      'splice',
      'tee',
    ],
  },
  {
    purpose: 'file system metadata and names (writes land only where the mounts allow)',
    names: [
      'stat',
      'stat64',
      'lstat',
      'lstat64',
      'fstat',
      'fstat64',
      'fstatat64',
      'newfstatat',
      'statx',
      'statfs',
      'statfs64',
      'fstatfs',
      'fstatfs64',
      'access',
      'faccessat',
      'faccessat2',
      'getdents',
      'getdents64',
      'getcwd',
      'chdir',
      'fchdir',
      'mkdir',
      'mkdirat',
      'rmdir',
      'rename',
      'renameat',
      'renameat2',
      'link',
      'linkat',
      'symlink',
      'symlinkat',
      'unlink',
      'unlinkat',
      'readlink',
      'readlinkat',
      'mknod',
      'mknodat',
      'chmod',
      'fchmod',
      'fchmodat',
      'fchmodat2',
      'chown',
      'chown32',
      'fchown',
      'fchown32',
      'fchownat',
      'lchown',
      'lchown32',
      'utime',
      'utimes',
      'utimensat',
      'utimensat_time64',
      'futimesat',
      'getxattr',
      'lgetxattr',
      'fgetxattr',
      'listxattr',
      'llistxattr',
      'flistxattr',
      'setxattr',
      'lsetxattr',
      'fsetxattr',
      'removexattr',
      'lremovexattr',
      'fremovexattr',
      'inotify_init',
      'inotify_init1',
      'inotify_add_watch',
      'inotify_rm_watch',
    ],
  },
  {
    purpose:
      'sockets (creation is filtered by family separately): ZeroMQ ipc, socketpair for subprocess and asyncio',
    names: [
      'socketpair',
      'bind',
      'listen',
      'accept',
      'accept4',
      'connect',
      'shutdown',
      'getsockname',
      'getpeername',
      'getsockopt',
      'setsockopt',
      'send',
      'sendto',
      'sendmsg',
      'sendmmsg',
      'recv',
      'recvfrom',
      'recvmsg',
      'recvmmsg',
      'recvmmsg_time64',
    ],
  },
  {
    purpose: 'System V shared memory and semaphores (private IPC namespace)',
    names: [
      'shmget',
      'shmat',
      'shmdt',
      'shmctl',
      'semget',
      'semop',
      'semtimedop',
      'semtimedop_time64',
      'semctl',
    ],
  },
  {
    purpose: 'randomness',
    names: ['getrandom'],
  },
];

function allow(
  names: readonly string[],
  comment: string,
  extra: Partial<SeccompRule> = {},
): SeccompRule {
  return { names: [...names], action: 'SCMP_ACT_ALLOW', comment, ...extra };
}

function eq(index: number, value: number): SeccompArg {
  return { index, value, valueTwo: 0, op: 'SCMP_CMP_EQ' };
}

/**
 * Builds the profile. Pure and deterministic: the same code always yields the same JSON, which is
 * what the drift test and the golden container spec rely on.
 */
export function buildSeccompProfile(): SeccompProfile {
  const rules: SeccompRule[] = ALLOWED_SYSCALL_GROUPS.map((g) => allow(g.names, g.purpose));

  rules.push(
    allow(['clone'], 'threads and fork, but no namespace flags (CLONE_NEW*)', {
      args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
    }),
    {
      names: ['clone3'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: ENOSYS,
      comment:
        'clone3 passes its flags in memory, out of the filter’s reach: ENOSYS makes glibc fall back to clone',
    },
  );

  for (const persona of ALLOWED_PERSONALITIES) {
    rules.push(
      allow(['personality'], `personality 0x${persona.toString(16)} only`, {
        args: [eq(0, persona)],
      }),
    );
  }

  for (const [family, number] of Object.entries(ALLOWED_SOCKET_FAMILIES)) {
    const args = family === 'AF_NETLINK' ? [eq(0, number), eq(2, NETLINK_ROUTE)] : [eq(0, number)];
    const comment =
      family === 'AF_NETLINK' ? 'socket: AF_NETLINK, NETLINK_ROUTE only' : `socket: ${family} only`;
    rules.push(allow(['socket'], comment, { args }));
  }

  rules.push(
    allow(['arch_prctl'], 'x86-64 TLS setup', { includes: { arches: ['amd64', 'x32'] } }),
    allow(
      [
        'set_tls',
        'cacheflush',
        'breakpoint',
        'arm_fadvise64_64',
        'arm_sync_file_range',
        'sync_file_range2',
      ],
      'ARM runtime support',
      { includes: { arches: ['arm', 'arm64'] } },
    ),
  );

  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    archMap: [
      { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
      { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
    ],
    syscalls: rules,
  };
}

/**
 * The profile as the JSON text the Engine API takes in `SecurityOpt: ["seccomp=<json>"]`, and
 * the committed file holds (two-space indent, trailing newline).
 */
export function seccompProfileJson(): string {
  return `${JSON.stringify(buildSeccompProfile(), null, 2)}\n`;
}

/** Every system call name that some rule allows (conditionally or not), sorted, without duplicates. */
export function allowedSyscallNames(profile: SeccompProfile = buildSeccompProfile()): string[] {
  const names = new Set<string>();
  for (const rule of profile.syscalls) {
    if (rule.action === 'SCMP_ACT_ALLOW') for (const n of rule.names) names.add(n);
  }
  return [...names].sort();
}
