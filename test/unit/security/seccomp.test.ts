import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { SECCOMP_PROFILE_PATH } from '../../../security/generate-seccomp.js';
import {
  ALLOWED_SYSCALL_GROUPS,
  CLONE_NAMESPACE_FLAGS,
  DENIED_SYSCALLS,
  allowedSyscallNames,
  buildSeccompProfile,
  seccompProfileJson,
  type SeccompProfile,
  type SeccompRule,
} from '../../../security/seccomp.js';

function rulesFor(profile: SeccompProfile, name: string): SeccompRule[] {
  return profile.syscalls.filter((r) => r.names.includes(name));
}

describe('security/seccomp', () => {
  const profile = buildSeccompProfile();

  it('matches the committed security/seccomp-profile.json (run `npx tsx security/generate-seccomp.ts` after a change)', () => {
    const committed = readFileSync(SECCOMP_PROFILE_PATH, 'utf8');
    expect(committed).to.equal(seccompProfileJson());
  });

  it('the committed file parses to the built profile', () => {
    const parsed: unknown = JSON.parse(readFileSync(SECCOMP_PROFILE_PATH, 'utf8'));
    expect(parsed).to.deep.equal(profile);
  });

  it('is deterministic', () => {
    const hash = (s: string): string => createHash('sha256').update(s).digest('hex');
    expect(hash(seccompProfileJson())).to.equal(hash(seccompProfileJson()));
  });

  it('denies by default with EPERM, for x86-64 (+x86, x32) and aarch64 (+arm)', () => {
    expect(profile.defaultAction).to.equal('SCMP_ACT_ERRNO');
    expect(profile.defaultErrnoRet).to.equal(1);
    expect(profile.archMap).to.deep.equal([
      { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
      { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
    ]);
  });

  it('lists the required dangerous calls as denied', () => {
    const required = [
      'mount',
      'umount',
      'umount2',
      'unshare',
      'setns',
      'ptrace',
      'process_vm_readv',
      'process_vm_writev',
      'keyctl',
      'add_key',
      'request_key',
      'bpf',
      'perf_event_open',
      'userfaultfd',
      'kexec_load',
      'kexec_file_load',
      'init_module',
      'finit_module',
      'delete_module',
      'open_by_handle_at',
      'name_to_handle_at',
      'pivot_root',
      'swapon',
      'swapoff',
      'reboot',
      'syslog',
      'acct',
      'quotactl',
      'chroot',
      'clock_settime',
      'settimeofday',
      'adjtimex',
      'iopl',
      'ioperm',
      'io_uring_setup',
      'io_uring_enter',
      'io_uring_register',
      'fsopen',
      'fsmount',
      'move_mount',
      'open_tree',
      'fspick',
      'lookup_dcookie',
      'vhangup',
      'nfsservctl',
      'clone3',
    ];
    expect(DENIED_SYSCALLS).to.include.members(required);
  });

  it('allows none of the denied calls in any allow rule', () => {
    const allowed = new Set(allowedSyscallNames(profile));
    const leaks = DENIED_SYSCALLS.filter((n) => allowed.has(n));
    expect(leaks).to.deep.equal([]);
  });

  it('names no system call twice among the unconditional groups', () => {
    const names = ALLOWED_SYSCALL_GROUPS.flatMap((g) => g.names);
    const dupes = names.filter((n, i) => names.indexOf(n) !== i);
    expect(dupes).to.deep.equal([]);
  });

  it('is tighter than Docker: fewer names than the 361 Docker allows unconditionally', () => {
    expect(allowedSyscallNames(profile).length).to.be.below(361);
  });

  it('allows clone only without namespace flags (masked compare on flags)', () => {
    const clone = rulesFor(profile, 'clone');
    expect(clone).to.have.length(1);
    expect(clone[0]!.action).to.equal('SCMP_ACT_ALLOW');
    expect(clone[0]!.args).to.deep.equal([
      { index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' },
    ]);
    expect(CLONE_NAMESPACE_FLAGS).to.equal(2114060288);
  });

  it('answers clone3 with ENOSYS so that glibc falls back to clone', () => {
    const clone3 = rulesFor(profile, 'clone3');
    expect(clone3).to.deep.equal([
      {
        names: ['clone3'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: 38,
        comment: clone3[0]!.comment,
      },
    ]);
  });

  it('allows personality only with the default values', () => {
    const values = rulesFor(profile, 'personality').map((r) => {
      expect(r.names).to.deep.equal(['personality']);
      expect(r.args).to.have.length(1);
      expect(r.args![0]!.op).to.equal('SCMP_CMP_EQ');
      return r.args![0]!.value;
    });
    expect(values).to.deep.equal([0x0, 0x8, 0x20000, 0x20008, 0xffffffff]);
  });

  it('allows socket only for AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK (NETLINK_ROUTE)', () => {
    const rules = rulesFor(profile, 'socket');
    const byFamily = rules.map((r) => r.args);
    expect(byFamily).to.deep.equal([
      [{ index: 0, value: 1, valueTwo: 0, op: 'SCMP_CMP_EQ' }],
      [{ index: 0, value: 2, valueTwo: 0, op: 'SCMP_CMP_EQ' }],
      [{ index: 0, value: 10, valueTwo: 0, op: 'SCMP_CMP_EQ' }],
      [
        { index: 0, value: 16, valueTwo: 0, op: 'SCMP_CMP_EQ' },
        { index: 2, value: 0, valueTwo: 0, op: 'SCMP_CMP_EQ' },
      ],
    ]);
  });

  it('gives every conditional or arch-specific call a single purpose-stated rule', () => {
    for (const rule of profile.syscalls) {
      expect(rule.comment, rule.names.join(',')).to.be.a('string').and.not.be.empty;
      if (rule.includes) expect(rule.includes.arches).to.not.be.empty;
    }
  });
});
