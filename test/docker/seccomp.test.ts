/**
 * Proves the seccomp profile against real workloads: the kernel image runs under the full sandbox
 * spec from buildContainerSpec (only Cmd replaced), numpy/pandas/matplotlib/ipykernel/zmq work,
 * and the denied system calls fail with EPERM (clone3 with ENOSYS).
 *
 * Needs Docker and the kernel image (`bash kernel-image/build.sh`; the tag is AIDO_KERNEL_IMAGE or
 * `build.sh --print-tag`). Set AIDO_SKIP_DOCKER=1 to skip.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import Docker from 'dockerode';
import {
  DEFAULT_POLICY,
  KERNEL_DIR_IN_CONTAINER,
  buildContainerSpec,
  type SandboxPolicy,
} from '../../security/policy.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const skip = process.env.AIDO_SKIP_DOCKER === '1';
const RUN_TIMEOUT_MS = 240_000;

interface ProbeResult {
  workloads: Record<string, string>;
  denied: Record<string, string>;
  seccompMode: string | null;
  uid: number;
}

interface KernelResult {
  replies: { status: string; stdout: string; mimetypes: string[] }[];
}

/** Splits Docker's multiplexed log stream (8-byte frame headers) into stdout and stderr. */
function demux(buf: Buffer): { stdout: string; stderr: string } {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let off = 0;
  while (off + 8 <= buf.length) {
    const stream = buf[off];
    const size = buf.readUInt32BE(off + 4);
    const end = Math.min(off + 8 + size, buf.length);
    (stream === 2 ? err : out).push(buf.subarray(off + 8, end));
    off = end;
  }
  return {
    stdout: Buffer.concat(out).toString('utf8'),
    stderr: Buffer.concat(err).toString('utf8'),
  };
}

/** The kernel image: AIDO_KERNEL_IMAGE when set (scripts/test.sh sets it), else build.sh's tag. */
function imageTag(): string {
  const fromEnv = process.env.AIDO_KERNEL_IMAGE;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  try {
    return execFileSync('bash', [path.join(repoRoot, 'kernel-image/build.sh'), '--print-tag'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  } catch (err) {
    throw new Error(
      `cannot get the kernel image tag from kernel-image/build.sh --print-tag: ${String(err)}`,
    );
  }
}

describe('seccomp profile against real workloads (Docker)', function () {
  this.timeout(RUN_TIMEOUT_MS + 30_000);
  const docker = new Docker();
  let image = '';

  before(async function () {
    if (skip) this.skip();
    image = imageTag();
    try {
      await docker.ping();
    } catch (err) {
      throw new Error(
        `Docker is not answering on its socket (run bash scripts/ensure-docker.sh): ${String(err)}`,
      );
    }
    try {
      await docker.getImage(image).inspect();
    } catch {
      throw new Error(`kernel image ${image} is missing: build it with bash kernel-image/build.sh`);
    }
  });

  /** Runs a probe script from test/docker/ in a sandbox built by buildContainerSpec; returns its JSON line. */
  async function runProbe(
    script: string,
    policy: SandboxPolicy = DEFAULT_POLICY,
  ): Promise<{ json: unknown; stderr: string }> {
    // The probe travels in a plain volume of its own, mounted where the kernel directory goes.
    const volume = `aido-test-seccomp-${process.pid}-${Date.now()}`;
    await docker.createVolume({ Name: volume, Labels: { 'org.aido.test': 'seccomp' } });
    const { Mountpoint } = (await docker.getVolume(volume).inspect()) as { Mountpoint: string };
    copyFileSync(path.join(here, script), path.join(Mountpoint, script));
    // Writable for the sandbox as its real kernel directory is (root-owned, sticky, 1777).
    chmodSync(Mountpoint, 0o1777);
    const spec = buildContainerSpec({
      policy,
      image,
      kernelId: `seccomp-probe-${process.pid}`,
      kernelVolume: volume,
      connectionFile: '{}',
      uid: policy.uidRange.first,
      labels: { 'org.aido.test': 'seccomp' },
      env: { MPLBACKEND: 'Agg', MPLCONFIGDIR: '/tmp/mpl', PYTHONDONTWRITEBYTECODE: '1' },
      name: `aido-test-seccomp-${process.pid}-${Date.now()}`,
      hostHasAppArmor: false,
    });
    spec.Cmd = ['python3', `${KERNEL_DIR_IN_CONTAINER}/${script}`];
    const container = await docker.createContainer(spec);
    try {
      await container.start();
      const waited = (await Promise.race([
        container.wait(),
        new Promise((_, reject) =>
          setTimeout(() => {
            reject(new Error(`timed out after ${RUN_TIMEOUT_MS} ms waiting for ${script} to exit`));
          }, RUN_TIMEOUT_MS).unref(),
        ),
      ])) as { StatusCode: number };
      const logs = demux(await container.logs({ stdout: true, stderr: true, follow: false }));
      const last = logs.stdout.trim().split('\n').pop() ?? '';
      expect(waited.StatusCode, `${script} exited ${waited.StatusCode}:\n${logs.stderr}`).to.equal(
        0,
      );
      return { json: JSON.parse(last) as unknown, stderr: logs.stderr };
    } finally {
      await container.remove({ force: true });
      await docker.getVolume(volume).remove();
    }
  }

  describe('probe: workloads and denied system calls', () => {
    let result: ProbeResult;
    before(async function () {
      if (skip) this.skip();
      result = (await runProbe('seccomp-probe.py')).json as ProbeResult;
    });

    it('runs as the sandbox uid under a seccomp filter', () => {
      expect(result.uid).to.equal(DEFAULT_POLICY.uidRange.first);
      expect(result.seccompMode).to.equal('2');
    });

    for (const name of [
      'numpy matrix multiply',
      'pandas groupby',
      'matplotlib Agg png in /tmp',
      'import ipykernel, zmq; ipc bind in /tmp and /run/kernel',
      'threads',
      "subprocess.run(['true'])",
      'multiprocessing pool (fork, POSIX semaphores in /dev/shm)',
      'asyncio with a subprocess',
      'loopback inet socket and netlink interface list',
      'write /workspace, refuse writes to the root file system',
    ]) {
      it(`allows: ${name}`, () => {
        expect(result.workloads[name], name).to.equal('ok');
      });
    }

    const eperm = [
      'unshare(CLONE_NEWUSER)',
      'unshare(CLONE_NEWNS)',
      'setns',
      'mount tmpfs',
      'pivot_root',
      'chroot',
      'ptrace(PTRACE_PEEKDATA, parent)',
      'process_vm_readv',
      'keyctl',
      'add_key',
      'bpf',
      'perf_event_open',
      'userfaultfd',
      'io_uring_setup',
      'kexec_load',
      'init_module',
      'open_by_handle_at',
      'name_to_handle_at',
      'fsopen',
      'settimeofday',
      'adjtimex',
      'syslog',
      'personality(ADDR_NO_RANDOMIZE)',
      'clone(CLONE_NEWUSER)',
      'clone(CLONE_NEWNET)',
      'socket(AF_ALG)',
      'socket(AF_VSOCK)',
      'socket(AF_PACKET)',
      'socket(AF_NETLINK, NETLINK_AUDIT)',
    ];
    for (const name of eperm) {
      it(`denies with EPERM: ${name}`, () => {
        expect(result.denied[name], name).to.equal('EPERM');
      });
    }

    it('answers clone3 with ENOSYS (glibc falls back to clone)', () => {
      expect(result.denied.clone3).to.equal('ENOSYS');
    });

    it('lets the allowed argument values through (personality query, plain clone)', () => {
      expect(result.denied['personality(query) [allowed]']).to.equal('OK');
      expect(result.denied['clone(SIGCHLD) [allowed]']).to.equal('OK');
    });
  });

  describe("the same probe under Docker's default profile (seccomp: false)", () => {
    let result: ProbeResult;
    before(async function () {
      if (skip) this.skip();
      result = (await runProbe('seccomp-probe.py', { ...DEFAULT_POLICY, seccomp: false }))
        .json as ProbeResult;
    });

    it('reaches calls our profile stops, so the probe tells the two profiles apart', () => {
      // Docker's default lets these through to the kernel (which then answers ESRCH, EFAULT, or
      // succeeds); ours stops them at the filter with EPERM.
      const passedFilter = [
        'ptrace(PTRACE_PEEKDATA, parent)',
        'io_uring_setup',
        'adjtimex',
        'socket(AF_VSOCK)',
        'socket(AF_NETLINK, NETLINK_AUDIT)',
      ].filter((name) => result.denied[name] !== 'EPERM');
      expect(passedFilter).to.have.length.above(0);
      // Docker's default allows ptrace on kernels >= 4.8 in every version: the kernel answers.
      expect(result.denied['ptrace(PTRACE_PEEKDATA, parent)']).to.equal('ESRCH');
      expect(Object.values(result.workloads).every((v) => v === 'ok')).to.equal(true);
    });
  });

  describe('a real ipykernel under the profile', () => {
    let result: KernelResult;
    before(async function () {
      if (skip) this.skip();
      result = (await runProbe('seccomp-kernel-probe.py')).json as KernelResult;
    });

    it('executes numpy, pandas, inline matplotlib and subprocess cells', () => {
      expect(result.replies.map((r) => r.status)).to.deep.equal(['ok', 'ok', 'ok', 'ok']);
      expect(result.replies[0]!.stdout.trim()).to.equal('64');
      expect(result.replies[1]!.stdout.trim()).to.equal('{1: 3, 2: 3}');
      expect(result.replies[2]!.mimetypes).to.include('image/png');
      expect(result.replies[3]!.stdout.trim()).to.equal('0');
    });
  });
});
