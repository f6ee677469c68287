import { expect } from 'chai';
import fc from 'fast-check';
import type { ContainerCreateOptions } from 'dockerode';
import type { Pod } from 'kubernetes-types/core/v1.js';
import { LABEL_APP, LABEL_KERNEL_ID, LABEL_STATE_DIR } from '../../../security/labels.js';
import { parityExampleInput } from '../../../security/generate-k8s.js';
import { kernelNodeKubeletConfig } from '../../../security/k8s-manifests.js';
import {
  PARITY_CONTROLS,
  POD_PLACEMENT_FIELDS,
  covers,
  formatPath,
  leafPaths,
  parityRows,
  resolvePath,
  type SpecPath,
} from '../../../security/parity.js';
import {
  CONNECTION_FILE_KEY,
  KERNEL_NAMESPACE,
  KERNEL_POD_SELECTOR,
  KERNEL_TCP_PORTS,
  buildKernelPod,
} from '../../../security/pod-spec.js';
import {
  CONNECTION_ENV,
  DEFAULT_POLICY,
  KERNEL_DIR_IN_CONTAINER,
  buildContainerSpec,
  kernelVolumeOptions,
  validateLimits,
  type SandboxLimits,
  type SandboxPolicy,
  type SandboxSpecInput,
} from '../../../security/policy.js';

const MiB = 1024 * 1024;

function both(input: SandboxSpecInput): {
  docker: ContainerCreateOptions;
  pod: Pod;
  secretName: string;
} {
  const { pod, secretName } = buildKernelPod(input, { namespace: KERNEL_NAMESPACE });
  return { docker: buildContainerSpec(input), pod, secretName };
}

/** Every variant of the switches, so that optional fields (Runtime, apparmor) show up. */
function variants(): SandboxSpecInput[] {
  const base = parityExampleInput();
  const out: SandboxSpecInput[] = [];
  for (const seccomp of [true, false])
    for (const runtime of [null, 'runsc'])
      for (const hostHasAppArmor of [true, false])
        for (const flags of [true, false]) {
          const policy: SandboxPolicy = {
            ...DEFAULT_POLICY,
            seccomp,
            runtime,
            noNewPrivileges: flags,
            readOnlyRootfs: flags,
          };
          out.push({ ...base, policy, hostHasAppArmor });
        }
  return out;
}

/** A Kubernetes quantity as a number: bytes for memory (`Mi` or plain), cores for CPU (`m`). */
function quantity(q: unknown): number {
  const s = String(q);
  if (s.endsWith('Mi')) return Number(s.slice(0, -2)) * MiB;
  if (s.endsWith('m')) return Number(s.slice(0, -1)) / 1000;
  return Number(s);
}

function tmpfsSize(options: unknown): number {
  const m = /(?:^|,)size=(\d+)(?:,|$)/.exec(String(options));
  return Number(m?.[1]);
}

/** The same numbers and switches on both sides, read from the two built specs. */
function expectSameControls(input: SandboxSpecInput): void {
  const { docker, pod, secretName } = both(input);
  const hc = docker.HostConfig!;
  const spec = pod.spec!;
  const c = spec.containers[0]!;
  const sc = c.securityContext!;
  const psc = spec.securityContext!;
  // One container: no init container runs anything before the kernel's own launcher.
  expect(spec.containers).to.have.length(1);
  expect(spec).to.not.have.property('initContainers');
  expect(docker.User).to.equal(`${input.uid}:${input.uid}`);
  expect(docker.User).to.equal(`${psc.runAsUser}:${psc.runAsGroup}`);
  expect(sc.runAsUser).to.equal(psc.runAsUser);
  expect(hc.ReadonlyRootfs).to.equal(sc.readOnlyRootFilesystem);
  expect(hc.CapDrop).to.deep.equal(sc.capabilities?.drop);
  const opts = (hc.SecurityOpt ?? []) as string[];
  expect(opts.includes('no-new-privileges:true')).to.equal(sc.allowPrivilegeEscalation === false);
  expect(opts.some((o) => o.startsWith('seccomp='))).to.equal(
    psc.seccompProfile?.type === 'Localhost',
  );
  const aa = opts.find((o) => o.startsWith('apparmor='));
  expect(aa?.slice('apparmor='.length)).to.equal(psc.appArmorProfile?.localhostProfile);
  expect(hc.Memory).to.equal(quantity(c.resources?.limits?.memory));
  expect(hc.MemorySwap).to.equal(hc.Memory);
  expect(c.resources?.requests).to.deep.equal(c.resources?.limits);
  expect((hc.NanoCpus ?? 0) / 1e9).to.be.closeTo(quantity(c.resources?.limits?.cpu), 0.0005);
  expect(hc.PidsLimit).to.equal(kernelNodeKubeletConfig(input.policy.limits).podPidsLimit);
  const nofile = hc.Ulimits?.find((u) => u.Name === 'nofile');
  expect(c.command).to.include(`--nofile=${nofile?.Soft}:${nofile?.Hard}`);
  const volume = (name: string): unknown =>
    quantity(spec.volumes?.find((v) => v.name === name)?.emptyDir?.sizeLimit);
  expect(tmpfsSize(hc.Tmpfs?.['/tmp'])).to.equal(volume('tmp'));
  expect(tmpfsSize(hc.Tmpfs?.['/workspace'])).to.equal(volume('workspace'));
  expect(hc.ShmSize).to.equal(volume('dshm'));
  // The kernel directory: Docker's volume is mounted there, capped by the volume's own options.
  const kernelMount = hc.Mounts?.find((m) => m.Target === KERNEL_DIR_IN_CONTAINER);
  expect(kernelMount?.Type).to.equal('volume');
  expect(hc.Mounts).to.have.length(1);
  expect(hc.Binds).to.equal(undefined);
  expect(tmpfsSize(kernelVolumeOptions().o)).to.equal(volume('kernel-dir'));
  const kernelDirMounts = c.volumeMounts?.filter((m) => m.name === 'kernel-dir');
  expect(kernelDirMounts?.map((m) => m.mountPath)).to.deep.equal([KERNEL_DIR_IN_CONTAINER]);
  // Nothing but memory-backed emptyDirs: no Secret, hostPath or other volume in the pod.
  expect(spec.volumes?.every((v) => Object.keys(v).join() === 'name,emptyDir')).to.equal(true);
  for (const v of ['tmp', 'workspace', 'dshm', 'kernel-dir'])
    expect(spec.volumes?.find((x) => x.name === v)?.emptyDir?.medium, v).to.equal('Memory');
  expect(hc.Dns).to.deep.equal(spec.dnsConfig?.nameservers);
  expect(spec.dnsPolicy).to.equal('None');
  expect(hc.NetworkMode).to.equal('none');
  expect(spec.hostNetwork).to.equal(false);
  expect(hc.Privileged).to.equal(sc.privileged);
  expect(hc.PidMode).to.equal('');
  expect(spec.hostPID).to.equal(false);
  expect(hc.IpcMode).to.equal('private');
  expect(spec.hostIPC).to.equal(false);
  expect(hc.Runtime).to.equal(spec.runtimeClassName);
  expect(hc.RestartPolicy?.Name).to.equal('no');
  expect(spec.restartPolicy).to.equal('Never');
  expect(docker.Cmd).to.deep.equal(c.args);
  expect(docker.Image).to.equal(c.image);
  expect(docker.WorkingDir).to.equal(c.workingDir);
  // The same variables, the connection file last: inline on Docker, from the Secret in the pod.
  const connection = `${CONNECTION_ENV}=${input.connectionFile}`;
  expect(docker.Env?.at(-1)).to.equal(connection);
  const podEnv = c.env ?? [];
  expect(docker.Env?.slice(0, -1)).to.deep.equal(
    podEnv.slice(0, -1).map((e) => `${e.name}=${e.value}`),
  );
  expect(podEnv.at(-1)).to.deep.equal({
    name: CONNECTION_ENV,
    valueFrom: { secretKeyRef: { name: secretName, key: CONNECTION_FILE_KEY } },
  });
  // The health check: the same schedule, and the shell channel in both (ipc socket, TCP port).
  const probe = c.readinessProbe!;
  const health = docker.Healthcheck!;
  expect(probe.periodSeconds).to.equal((health.Interval ?? 0) / 1e9);
  expect(probe.timeoutSeconds).to.equal((health.Timeout ?? 0) / 1e9);
  expect(probe.failureThreshold).to.equal(health.Retries);
  expect(health.Test?.at(-1)).to.equal(`${KERNEL_DIR_IN_CONTAINER}/k-1`);
  const shellHex = KERNEL_TCP_PORTS.shell.toString(16).toUpperCase();
  expect(probe.exec?.command?.join(' ')).to.include(`00000000:${shellHex} `);
  // The log: the kubelet's rotation of the kernel nodes has Docker's size and count.
  const kubelet = kernelNodeKubeletConfig(input.policy.limits);
  // @types/dockerode types the driver options as any.
  const logConfig = hc.LogConfig?.Config as Record<string, string> | undefined;
  expect(logConfig?.['max-size']).to.equal(String(quantity(kubelet.containerLogMaxSize)));
  expect(logConfig?.['max-file']).to.equal(String(kubelet.containerLogMaxFiles));
  expect(docker.name).to.equal(pod.metadata?.name);
  for (const [key, value] of Object.entries(docker.Labels ?? {})) {
    expect(pod.metadata?.labels?.[key] ?? pod.metadata?.annotations?.[key], key).to.equal(value);
  }
}

describe('security/parity (Docker and Kubernetes, control by control)', () => {
  it('every field of the Docker spec belongs to a control', () => {
    for (const input of variants()) {
      const { docker } = both(input);
      const orphans = leafPaths(docker).filter(
        (p) => !PARITY_CONTROLS.some((c) => c.docker.some((claim) => covers(claim, p))),
      );
      expect(orphans.map(formatPath)).to.deep.equal([]);
    }
  });

  it('every field of the kernel Pod belongs to a control or says where the pod runs', () => {
    for (const input of variants()) {
      const { pod } = both(input);
      const claims: SpecPath[] = [
        ...PARITY_CONTROLS.flatMap((c) => c.pod),
        ...POD_PLACEMENT_FIELDS,
      ];
      const orphans = leafPaths(pod).filter((p) => !claims.some((claim) => covers(claim, p)));
      expect(orphans.map(formatPath)).to.deep.equal([]);
    }
  });

  it('every control has both sides, or a cluster setting, or a written-down gap', () => {
    for (const c of PARITY_CONTROLS) {
      expect(c.docker, c.id).to.not.be.empty;
      expect(c.pod.length > 0 || c.cluster !== undefined || c.gap !== undefined, c.id).to.equal(
        true,
      );
    }
    const ids = PARITY_CONTROLS.map((c) => c.id);
    expect(new Set(ids).size).to.equal(ids.length);
  });

  it('the gaps are exactly the known ones (a new gap is a decision, made here)', () => {
    const gaps = PARITY_CONTROLS.filter((c) => c.gap !== undefined).map((c) => c.id);
    expect(gaps).to.deep.equal(['mount-options', 'proc-paths']);
  });

  it('every field a control names is set in its spec (with every optional control on)', () => {
    const { docker, pod } = both(parityExampleInput());
    for (const c of PARITY_CONTROLS) {
      for (const p of c.docker)
        expect(resolvePath(docker, p), `${c.id}: ${formatPath(p)}`).to.exist;
      for (const p of c.pod) expect(resolvePath(pod, p), `${c.id}: ${formatPath(p)}`).to.exist;
    }
  });

  it('gives the same settings on both sides for every switch of the policy', () => {
    for (const input of variants()) expectSameControls(input);
  });

  it('gives the same settings on both sides for any valid limits', () => {
    const limits: fc.Arbitrary<SandboxLimits> = fc.record({
      memoryBytes: fc.integer({ min: 64, max: 8192 }).map((m) => m * MiB + (m % 3) * 4096),
      cpus: fc.integer({ min: 10, max: 8000 }).map((m) => m / 1000),
      cpuShares: fc.integer({ min: 2, max: 262144 }),
      pids: fc.integer({ min: 1, max: 100000 }),
      nofile: fc.integer({ min: 1, max: 1 << 20 }),
      tmpSizeBytes: fc.integer({ min: 1, max: 16 }).map((m) => m * MiB),
      workspaceSizeBytes: fc.integer({ min: 1, max: 32 }).map((m) => m * MiB + 512),
    });
    fc.assert(
      fc.property(
        limits.filter((l) => validateLimits(l).length === 0),
        (l) => {
          const base = parityExampleInput();
          expectSameControls({ ...base, policy: { ...base.policy, limits: l } });
        },
      ),
      { numRuns: 100 },
    );
  });

  it("carries the Docker backend's labels: app and kernel id as labels, paths as annotations", () => {
    const { pod } = both(parityExampleInput());
    expect(Object.keys(KERNEL_POD_SELECTOR)).to.deep.equal([LABEL_APP]);
    expect(pod.metadata?.labels?.[LABEL_APP]).to.equal('1');
    expect(pod.metadata?.labels?.[LABEL_KERNEL_ID]).to.be.a('string');
    expect(pod.metadata?.annotations?.[LABEL_STATE_DIR]).to.equal('/var/lib/aido-kgw');
  });

  it('builds a row per control, with who enforces it', () => {
    const input = parityExampleInput();
    const { docker, pod } = both(input);
    const rows = parityRows(docker, pod, input.policy.limits);
    const by = Object.fromEntries(rows.map((r) => [r.id, r.enforcedBy]));
    expect(rows).to.have.length(PARITY_CONTROLS.length);
    expect(by.pids).to.equal('cluster');
    expect(by.network).to.equal('cluster');
    expect(by['mount-options']).to.equal('not enforced');
    expect(by['open-files']).to.equal('pod');
    expect(by.capabilities).to.equal('pod');
    expect(by.logs).to.equal('cluster');
    expect(by['health-check']).to.equal('pod');
    expect(by.connection).to.equal('pod');
    const pids = rows.find((r) => r.id === 'pids');
    expect(pids?.note).to.include('podPidsLimit: 50');
    const logs = rows.find((r) => r.id === 'logs');
    expect(logs?.note)
      .to.include('containerLogMaxSize: 1Mi')
      .and.include('containerLogMaxFiles: 2');
    // The key is named, never shown.
    const connection = rows.find((r) => r.id === 'connection');
    expect(connection?.docker).to.deep.equal([
      'Env[^AIDO_CONNECTION=]: ["AIDO_CONNECTION=<the connection file>"]',
    ]);
  });
});
