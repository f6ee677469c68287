import { expect } from 'chai';
import {
  DEFAULT_POLICY,
  KERNEL_COMMAND,
  SandboxPolicyError,
  buildContainerSpec,
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
    uid: 2_000_000_123,
    labels: { 'org.aido.kernel-gateway': '1' },
    env: { KERNEL_USERNAME: 'alice', HTTPS_PROXY: 'http://evil.example:1' },
    name: 'aido-k-6f1d2c3b-a1',
    hostHasAppArmor: false,
    ...overrides,
  };
}

describe('security/policy: egress', () => {
  it('adds only the launcher flag that starts the relay, proxy and pip settings, and an exec-able /pkgs of the sandbox uid; the network stays none', () => {
    const base = buildContainerSpec(input());
    const spec = buildContainerSpec(input({ egress: { pipSizeBytes: 128 * MiB } }));
    // One launch path: the same launcher (connection file first), told to start the relay.
    expect(base.Cmd).to.deep.equal([...KERNEL_COMMAND]);
    expect(spec.Cmd).to.deep.equal([...KERNEL_COMMAND, '--egress']);
    // The gateway's proxy settings win over a client's.
    expect(spec.Env).to.deep.equal([
      'KERNEL_USERNAME=alice',
      'HTTPS_PROXY=http://127.0.0.1:3128',
      'HTTP_PROXY=http://127.0.0.1:3128',
      'http_proxy=http://127.0.0.1:3128',
      'https_proxy=http://127.0.0.1:3128',
      'PIP_PROXY=http://127.0.0.1:3128',
      'PYTHONUSERBASE=/pkgs',
      'PIP_USER=1',
      'PIP_BREAK_SYSTEM_PACKAGES=1',
      'PIP_NO_CACHE_DIR=1',
      'PIP_DISABLE_PIP_VERSION_CHECK=1',
      'PIP_NO_WARN_SCRIPT_LOCATION=1',
      'AIDO_CONNECTION={"key":"k"}',
    ]);
    expect(spec.HostConfig?.Tmpfs).to.deep.equal({
      ...base.HostConfig?.Tmpfs,
      '/pkgs': 'rw,exec,nosuid,nodev,size=134217728,uid=2000000123,gid=2000000123,mode=0700',
    });
    expect({ ...spec.HostConfig, Tmpfs: null }).to.deep.equal({ ...base.HostConfig, Tmpfs: null });
    expect(spec.HostConfig?.NetworkMode).to.equal('none');
    expect(spec.NetworkDisabled).to.equal(true);
  });

  it('refuses a /pkgs that does not fit in the memory limit with the other tmpfs mounts', () => {
    expect(() => buildContainerSpec(input({ egress: { pipSizeBytes: 400 * MiB } }))).to.throw(
      SandboxPolicyError,
      /the kernel directory \+ \/pkgs \(\d+\) must be below the memory limit/,
    );
    expect(() => buildContainerSpec(input({ egress: { pipSizeBytes: 0 } }))).to.throw(
      SandboxPolicyError,
      /pipSizeBytes must be a positive integer/,
    );
  });
});
