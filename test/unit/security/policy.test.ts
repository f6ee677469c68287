import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { SECCOMP_PROFILE_PATH } from '../../../security/generate-seccomp.js';
import {
  DEFAULT_LIMITS,
  DEFAULT_NETWORK,
  DEFAULT_POLICY,
  KERNEL_DIR_IN_CONTAINER,
  SandboxPolicyError,
  buildContainerSpec,
  describeDisabledControls,
  kernelVolumeOptions,
  validateLimits,
  type SandboxPolicy,
  type SandboxSpecInput,
} from '../../../security/policy.js';

const MiB = 1024 * 1024;

function input(overrides: Partial<SandboxSpecInput> = {}): SandboxSpecInput {
  return {
    policy: DEFAULT_POLICY,
    image: 'aido-kernel:latest',
    kernelId: '6f1d2c3b-0000-4000-8000-000000000001',
    kernelVolume: 'aido-kd-6f1d2c3b0000',
    connectionFile: '{"key":"k"}',
    uid: 2_000_000_000,
    labels: { 'org.aido.kernel-gateway': '1', 'org.aido.kernel-gateway.kernel-id': '6f1d2c3b' },
    env: { KERNEL_USERNAME: 'alice', PYTHONUNBUFFERED: '1' },
    name: 'aido-k-6f1d2c3b-a1',
    hostHasAppArmor: false,
    ...overrides,
  };
}

function policy(overrides: Partial<SandboxPolicy>): SandboxPolicy {
  return { ...DEFAULT_POLICY, ...overrides };
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The seccomp option is compared by reference to the committed profile, not inlined. */
const SECCOMP_OPT = `seccomp=${readFileSync(SECCOMP_PROFILE_PATH, 'utf8')}`;

/** sha256 of security/seccomp-profile.json: a change to the allow-list must update it on purpose. */
const SECCOMP_PROFILE_SHA256 = 'd13e1daa20b6ba10b7011d55ff42f9c166609c2726d8e7af1ebcba35201d3293';

const GOLDEN = {
  name: 'aido-k-6f1d2c3b-a1',
  Image: 'aido-kernel:latest',
  Labels: { 'org.aido.kernel-gateway': '1', 'org.aido.kernel-gateway.kernel-id': '6f1d2c3b' },
  Env: ['KERNEL_USERNAME=alice', 'PYTHONUNBUFFERED=1', 'AIDO_CONNECTION={"key":"k"}'],
  User: '2000000000:2000000000',
  WorkingDir: '/workspace',
  Cmd: [
    'python3',
    '-c',
    [
      'import os, sys',
      "data = os.environ.pop('AIDO_CONNECTION').encode()",
      "fd = os.open('/run/kernel/connection.json', os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)",
      'view = memoryview(data)',
      'while view:',
      '    view = view[os.write(fd, view):]',
      'os.close(fd)',
      "if sys.argv[1:] == ['--egress']:",
      "    relay = os.posix_spawnp('python3', ['python3', '-I', '/usr/local/lib/aido/egress-relay.py', '--port', '3128', '--socket', '/run/kernel/egress.sock'], os.environ)",
      '    if os.waitpid(relay, 0)[1] != 0:',
      "        sys.exit('the egress relay did not start')",
      "os.execvp('python3', ['python3', '-m', 'ipykernel_launcher', '-f', '/run/kernel/connection.json'])",
    ].join('\n'),
  ],
  Healthcheck: {
    Test: ['CMD', '/usr/bin/test', '-S', '/run/kernel/k-1'],
    Interval: 60e9,
    Timeout: 5e9,
    StartPeriod: 60e9,
    Retries: 3,
  },
  NetworkDisabled: true,
  HostConfig: {
    NetworkMode: 'none',
    ReadonlyRootfs: true,
    CapDrop: ['ALL'],
    SecurityOpt: ['no-new-privileges:true', SECCOMP_OPT],
    Memory: 536870912,
    MemorySwap: 536870912,
    NanoCpus: 500000000,
    CpuShares: 256,
    PidsLimit: 50,
    Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 1024 }],
    Tmpfs: {
      '/tmp': 'rw,noexec,nosuid,nodev,size=67108864,mode=1777',
      '/workspace': 'rw,noexec,nosuid,nodev,size=104857600,uid=2000000000,gid=2000000000,mode=0700',
    },
    Mounts: [
      {
        Type: 'volume',
        Source: 'aido-kd-6f1d2c3b0000',
        Target: '/run/kernel',
        ReadOnly: false,
        VolumeOptions: { NoCopy: true },
      },
    ],
    Init: true,
    IpcMode: 'private',
    ShmSize: 4194304,
    ReadonlyPaths: [
      '/proc/bus',
      '/proc/fs',
      '/proc/irq',
      '/proc/sys',
      '/proc/sysrq-trigger',
      '/dev/mqueue',
    ],
    PidMode: '',
    CgroupnsMode: 'private',
    Privileged: false,
    AutoRemove: false,
    RestartPolicy: { Name: 'no' },
    Dns: ['127.0.0.1'],
    DnsSearch: ['.'],
    Devices: [],
    OomKillDisable: false,
    // A hostile kernel writing to its original stdout puts at most 2 MiB on the host disk.
    LogConfig: {
      Type: 'local',
      Config: { 'max-size': '1048576', 'max-file': '2', compress: 'false' },
    },
  },
};

describe('security/policy', () => {
  describe('buildContainerSpec', () => {
    it('matches the golden spec for the default policy', () => {
      expect(buildContainerSpec(input())).to.deep.equal(GOLDEN);
    });

    it('embeds the committed seccomp profile text (sha256 pinned)', () => {
      const opts = buildContainerSpec(input()).HostConfig?.SecurityOpt as string[];
      const seccomp = opts.find((o) => o.startsWith('seccomp='));
      expect(seccomp).to.equal(SECCOMP_OPT);
      // Pins the profile: a change to the allow-list must update this hash on purpose.
      expect(sha256(seccomp!.slice('seccomp='.length))).to.equal(SECCOMP_PROFILE_SHA256);
    });

    it('is pure: same input, same output, input untouched', () => {
      const i = input();
      const before = JSON.stringify(i);
      expect(buildContainerSpec(i)).to.deep.equal(buildContainerSpec(i));
      expect(JSON.stringify(i)).to.equal(before);
    });

    it('applies the AppArmor profile only when the host has AppArmor', () => {
      const withAa: unknown = buildContainerSpec(input({ hostHasAppArmor: true })).HostConfig
        ?.SecurityOpt;
      expect(withAa).to.deep.equal(['no-new-privileges:true', SECCOMP_OPT, 'apparmor=aido-kernel']);
      const noProfile: unknown = buildContainerSpec(
        input({ hostHasAppArmor: true, policy: policy({ appArmorProfile: null }) }),
      ).HostConfig?.SecurityOpt;
      expect(noProfile).to.deep.equal(['no-new-privileges:true', SECCOMP_OPT]);
    });

    it('leaves out switched-off controls, never weakening to unconfined', () => {
      const spec = buildContainerSpec(
        input({
          policy: policy({ seccomp: false, noNewPrivileges: false, readOnlyRootfs: false }),
        }),
      );
      expect(spec.HostConfig?.SecurityOpt).to.deep.equal([]);
      expect(spec.HostConfig?.ReadonlyRootfs).to.equal(false);
      expect(spec.HostConfig?.CapDrop).to.deep.equal(['ALL']);
      expect(spec.HostConfig?.NetworkMode).to.equal('none');
    });

    it('sets Runtime only when the policy names one', () => {
      expect(buildContainerSpec(input()).HostConfig).to.not.have.property('Runtime');
      const spec = buildContainerSpec(input({ policy: policy({ runtime: 'runsc' }) }));
      expect(spec.HostConfig?.Runtime).to.equal('runsc');
    });

    it('mounts nothing of the host: only its own kernel-directory volume, at /run/kernel', () => {
      const spec = buildContainerSpec(input());
      expect(spec.HostConfig?.Binds).to.equal(undefined);
      expect(spec.HostConfig?.Mounts?.map((m) => [m.Type, m.Source, m.Target])).to.deep.equal([
        ['volume', 'aido-kd-6f1d2c3b0000', KERNEL_DIR_IN_CONTAINER],
      ]);
    });

    it('makes the kernel-directory volume a capped, noexec, root-owned sticky tmpfs', () => {
      expect(kernelVolumeOptions()).to.deep.equal({
        type: 'tmpfs',
        device: 'tmpfs',
        o: 'size=1048576,nr_inodes=64,mode=1777,uid=0,gid=0,noexec,nosuid,nodev',
      });
    });

    it("runs as its own uid from the policy's range, and the workspace belongs to it", () => {
      const spec = buildContainerSpec(input({ uid: 2_000_012_345 }));
      expect(spec.User).to.equal('2000012345:2000012345');
      expect(spec.HostConfig?.Tmpfs?.['/workspace']).to.include('uid=2000012345,gid=2000012345,');
      expect(DEFAULT_POLICY.uidRange).to.deep.equal({ first: 2_000_000_000, count: 65536 });
    });

    it('converts custom limits', () => {
      const limits = {
        memoryBytes: 1024 * MiB,
        cpus: 1.25,
        cpuShares: 512,
        pids: 200,
        nofile: 4096,
        tmpSizeBytes: 10 * MiB,
        workspaceSizeBytes: 20 * MiB,
      };
      const hc = buildContainerSpec(input({ policy: policy({ limits }) })).HostConfig!;
      expect(hc.Memory).to.equal(1073741824);
      expect(hc.MemorySwap).to.equal(1073741824);
      expect(hc).to.not.have.property('MemorySwappiness');
      expect(hc.NanoCpus).to.equal(1250000000);
      expect(hc.CpuShares).to.equal(512);
      expect(hc.PidsLimit).to.equal(200);
      expect(hc.Ulimits).to.deep.equal([{ Name: 'nofile', Soft: 4096, Hard: 4096 }]);
      expect(hc.Tmpfs).to.deep.equal({
        '/tmp': 'rw,noexec,nosuid,nodev,size=10485760,mode=1777',
        '/workspace':
          'rw,noexec,nosuid,nodev,size=20971520,uid=2000000000,gid=2000000000,mode=0700',
      });
    });

    const bad: [string, Partial<SandboxSpecInput>, RegExp][] = [
      [
        'negative memory',
        { policy: policy({ limits: { ...DEFAULT_LIMITS, memoryBytes: -1 } }) },
        /memoryBytes must be a positive integer/,
      ],
      [
        'fractional pids',
        { policy: policy({ limits: { ...DEFAULT_LIMITS, pids: 2.5 } }) },
        /pids must be a positive integer/,
      ],
      [
        'zero nofile',
        { policy: policy({ limits: { ...DEFAULT_LIMITS, nofile: 0 } }) },
        /nofile must be a positive integer/,
      ],
      [
        'NaN cpus',
        { policy: policy({ limits: { ...DEFAULT_LIMITS, cpus: Number.NaN } }) },
        /cpus must be a positive number/,
      ],
      [
        'tiny cpus',
        { policy: policy({ limits: { ...DEFAULT_LIMITS, cpus: 0.001 } }) },
        /cpus must be at least 0.01/,
      ],
      [
        'memory under Docker minimum',
        {
          policy: policy({
            limits: { ...DEFAULT_LIMITS, memoryBytes: MiB, tmpSizeBytes: 1, workspaceSizeBytes: 1 },
          }),
        },
        /at least 6291456/,
      ],
      [
        'tmpfs exceeding memory',
        { policy: policy({ limits: { ...DEFAULT_LIMITS, workspaceSizeBytes: 500 * MiB } }) },
        /tmpfs pages count against the memory limit/,
      ],
      ['a path as kernel volume', { kernelVolume: '/k/1' }, /not a valid volume name/],
      ['root as the sandbox uid', { uid: 0 }, /uid must be in the policy's range/],
      ['a uid past the range', { uid: 2_000_065_536 }, /uid must be in the policy's range/],
      [
        'a range that includes root',
        { policy: policy({ uidRange: { first: 0, count: 10 } }), uid: 1 },
        /uidRange must lie in/,
      ],
      [
        'an env that sets the connection',
        { env: { AIDO_CONNECTION: '{}' } },
        /must not set AIDO_CONNECTION/,
      ],
      ['bad container name', { name: '-x y' }, /not a valid container name/],
      ['bad env name', { env: { 'A=B': '1' } }, /env name "A=B"/],
      ['env with NUL', { env: { A: 'x\0y' } }, /contains a NUL byte/],
      [
        'AppArmor name with options',
        { policy: policy({ appArmorProfile: 'x,y' }) },
        /not a valid profile name/,
      ],
      ['empty runtime', { policy: policy({ runtime: '' }) }, /runtime must be null/],
      ['empty image', { image: '' }, /image must not be empty/],
    ];
    for (const [what, overrides, message] of bad) {
      it(`refuses ${what} with a SandboxPolicyError`, () => {
        expect(() => buildContainerSpec(input(overrides)))
          .to.throw(SandboxPolicyError, message)
          .with.property('code', 'INVALID_SANDBOX_POLICY');
      });
    }

    it('names the kernel and every problem in one error', () => {
      const limits = { ...DEFAULT_LIMITS, pids: 0, nofile: -5 };
      expect(() => buildContainerSpec(input({ policy: policy({ limits }) }))).to.throw(
        /kernel 6f1d2c3b-0000-4000-8000-000000000001: pids .*; nofile /,
      );
    });
  });

  describe('DEFAULT_LIMITS', () => {
    it('are the documented defaults and valid', () => {
      expect(DEFAULT_LIMITS).to.deep.equal({
        memoryBytes: 512 * MiB,
        cpus: 0.5,
        cpuShares: 256,
        pids: 50,
        nofile: 1024,
        tmpSizeBytes: 64 * MiB,
        workspaceSizeBytes: 100 * MiB,
      });
      expect(validateLimits(DEFAULT_LIMITS)).to.deep.equal([]);
    });
  });

  describe('describeDisabledControls', () => {
    it('is empty for the default policy', () => {
      expect(describeDisabledControls(DEFAULT_POLICY)).to.deep.equal([]);
    });

    it('names every control turned off and every limit loosened', () => {
      const p: SandboxPolicy = {
        limits: { ...DEFAULT_LIMITS, memoryBytes: 2048 * MiB, pids: 500 },
        network: DEFAULT_NETWORK,
        seccomp: false,
        appArmorProfile: null,
        noNewPrivileges: false,
        readOnlyRootfs: false,
        runtime: 'runsc',
        uidRange: { first: 2_000_000_000, count: 65536 },
      };
      const off = describeDisabledControls(p);
      expect(off).to.have.length(6);
      for (const word of [
        'seccomp',
        'apparmor',
        'no-new-privileges',
        'read-only',
        'memory limit',
        'pids limit',
      ]) {
        expect(
          off.some((s) => s.startsWith(word)),
          word,
        ).to.equal(true);
      }
    });

    it('warns that another runtime may not enforce the seccomp profile', () => {
      expect(describeDisabledControls(policy({ runtime: 'runsc' }))).to.deep.equal([
        'seccomp: runtime runsc may not enforce the profile (gVisor needs --oci-seccomp)',
      ]);
    });

    it('does not report tighter limits', () => {
      const p = policy({ limits: { ...DEFAULT_LIMITS, memoryBytes: 256 * MiB, cpus: 0.25 } });
      expect(describeDisabledControls(p)).to.deep.equal([]);
    });
  });
});
