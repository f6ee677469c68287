import { expect } from 'chai';
import {
  KERNEL_NAMESPACE,
  buildConnectionSecret,
  buildKernelPod,
  bytesQuantity,
  cpuQuantity,
  isLabelKey,
  isLabelValue,
  tcpConnectionFile,
} from '../../../security/pod-spec.js';
import {
  DEFAULT_LIMITS,
  DEFAULT_POLICY,
  SandboxPolicyError,
  type SandboxPolicy,
  type SandboxSpecInput,
} from '../../../security/policy.js';
import { validateObject } from '../../helpers/kubernetes-schema.js';
import { restrictedViolations } from '../../helpers/pod-security.js';

const MiB = 1024 * 1024;

function input(overrides: Partial<SandboxSpecInput> = {}): SandboxSpecInput {
  return {
    policy: DEFAULT_POLICY,
    image: 'aido-kernel:latest',
    kernelId: '6f1d2c3b-0000-4000-8000-000000000001',
    kernelDir: '/var/lib/aido-kgw/k/6f1d2c3b',
    labels: {
      'org.aido.kernel-gateway': '1',
      'org.aido.kernel-gateway.kernel-id': '6f1d2c3b',
      'org.aido.kernel-gateway.state-dir': '/var/lib/aido-kgw',
    },
    env: { KERNEL_USERNAME: 'alice', PYTHONUNBUFFERED: '1' },
    name: 'aido-k-6f1d2c3b-a1',
    hostHasAppArmor: false,
    ...overrides,
  };
}

function policy(overrides: Partial<SandboxPolicy>): SandboxPolicy {
  return { ...DEFAULT_POLICY, ...overrides };
}

const target = { namespace: KERNEL_NAMESPACE };

const C = {
  name: 'kernel',
  image: 'aido-kernel:latest',
  imagePullPolicy: 'IfNotPresent',
  command: ['/usr/bin/tini', '-s', '-g', '--', '/usr/bin/prlimit', '--nofile=1024:1024', '--'],
  args: ['python3', '-m', 'ipykernel_launcher', '-f', '/run/kernel/connection.json'],
  workingDir: '/workspace',
  env: [
    { name: 'KERNEL_USERNAME', value: 'alice' },
    { name: 'PYTHONUNBUFFERED', value: '1' },
  ],
  ports: [
    { name: 'shell', containerPort: 50001, protocol: 'TCP' },
    { name: 'iopub', containerPort: 50002, protocol: 'TCP' },
    { name: 'stdin', containerPort: 50003, protocol: 'TCP' },
    { name: 'control', containerPort: 50004, protocol: 'TCP' },
    { name: 'hb', containerPort: 50005, protocol: 'TCP' },
  ],
  resources: {
    requests: { cpu: '500m', memory: '512Mi' },
    limits: { cpu: '500m', memory: '512Mi' },
  },
  securityContext: {
    runAsNonRoot: true,
    runAsUser: 1000,
    runAsGroup: 1000,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    procMount: 'Default',
  },
  volumeMounts: [
    { name: 'tmp', mountPath: '/tmp' },
    { name: 'workspace', mountPath: '/workspace' },
    { name: 'dshm', mountPath: '/dev/shm' },
    { name: 'kernel-dir', mountPath: '/run/kernel' },
  ],
};

/** Copies the connection file from the Secret into /run/kernel, as the kernel's own user. */
const INIT = {
  name: 'connection',
  image: 'aido-kernel:latest',
  imagePullPolicy: 'IfNotPresent',
  command: [
    '/usr/bin/cp',
    '--',
    '/run/kernel-secret/connection.json',
    '/run/kernel/connection.json',
  ],
  resources: C.resources,
  securityContext: C.securityContext,
  volumeMounts: [
    { name: 'kernel-dir', mountPath: '/run/kernel' },
    { name: 'connection', mountPath: '/run/kernel-secret', readOnly: true },
  ],
};

const GOLDEN = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: 'aido-k-6f1d2c3b-a1',
    namespace: 'aido-kernels',
    labels: { 'org.aido.kernel-gateway': '1', 'org.aido.kernel-gateway.kernel-id': '6f1d2c3b' },
    // A path is no label value: kept under the same key as an annotation.
    annotations: { 'org.aido.kernel-gateway.state-dir': '/var/lib/aido-kgw' },
  },
  spec: {
    restartPolicy: 'Never',
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    hostNetwork: false,
    hostPID: false,
    hostIPC: false,
    shareProcessNamespace: false,
    dnsPolicy: 'None',
    dnsConfig: { nameservers: ['127.0.0.1'] },
    nodeSelector: { 'org.aido.kernel-gateway/kernel-node': 'true' },
    tolerations: [
      {
        key: 'org.aido.kernel-gateway/kernel-node',
        operator: 'Equal',
        value: 'true',
        effect: 'NoSchedule',
      },
    ],
    securityContext: {
      runAsNonRoot: true,
      runAsUser: 1000,
      runAsGroup: 1000,
      fsGroup: 1000,
      seccompProfile: { type: 'Localhost', localhostProfile: 'aido/kernel-seccomp.json' },
    },
    initContainers: [INIT],
    containers: [C],
    volumes: [
      { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } },
      { name: 'workspace', emptyDir: { medium: 'Memory', sizeLimit: '100Mi' } },
      { name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: '4Mi' } },
      { name: 'kernel-dir', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
      {
        name: 'connection',
        secret: {
          secretName: 'aido-k-6f1d2c3b-a1-connection',
          defaultMode: 0o440,
          items: [{ key: 'connection.json', path: 'connection.json' }],
        },
      },
    ],
  },
};

describe('security/pod-spec', () => {
  describe('buildKernelPod', () => {
    it('matches the golden Pod for the default policy', () => {
      const { pod, secretName } = buildKernelPod(input(), target);
      expect(pod).to.deep.equal(GOLDEN);
      expect(secretName).to.equal('aido-k-6f1d2c3b-a1-connection');
    });

    it('validates against the Kubernetes API schema', () => {
      validateObject(buildKernelPod(input({ hostHasAppArmor: true }), target).pod);
      const withRuntime = input({ policy: policy({ runtime: 'runsc' }) });
      validateObject(buildKernelPod(withRuntime, target).pod);
    });

    it('the schema check can fail: a uid as a string is refused', () => {
      const { pod } = buildKernelPod(input(), target);
      const bad = structuredClone(pod) as unknown as { spec: { securityContext: object } };
      bad.spec.securityContext = { runAsUser: '1000' };
      expect(() => {
        validateObject(bad);
      }).to.throw(/runAsUser must be integer/);
    });

    it("passes Pod Security Admission's restricted profile", () => {
      expect(restrictedViolations(buildKernelPod(input(), target).pod.spec!)).to.deep.equal([]);
      const aa = buildKernelPod(input({ hostHasAppArmor: true }), target).pod.spec!;
      expect(restrictedViolations(aa)).to.deep.equal([]);
    });

    it('is pure: same input, same output, input untouched', () => {
      const i = input();
      const before = JSON.stringify(i);
      expect(buildKernelPod(i, target)).to.deep.equal(buildKernelPod(i, target));
      expect(JSON.stringify(i)).to.equal(before);
    });

    it('names the AppArmor profile only where the nodes have AppArmor', () => {
      const on = buildKernelPod(input({ hostHasAppArmor: true }), target).pod;
      expect(on.spec?.securityContext?.appArmorProfile).to.deep.equal({
        type: 'Localhost',
        localhostProfile: 'aido-kernel',
      });
      const none = buildKernelPod(
        input({ hostHasAppArmor: true, policy: policy({ appArmorProfile: null }) }),
        target,
      ).pod;
      expect(none.spec?.securityContext?.appArmorProfile).to.equal(undefined);
    });

    it("falls back to the runtime's default seccomp profile, never to unconfined", () => {
      const pod = buildKernelPod(input({ policy: policy({ seccomp: false }) }), target).pod;
      expect(pod.spec?.securityContext?.seccompProfile).to.deep.equal({ type: 'RuntimeDefault' });
    });

    it('selects the RuntimeClass named after the Docker runtime', () => {
      const pod = buildKernelPod(input({ policy: policy({ runtime: 'runsc' }) }), target).pod;
      expect(pod.spec?.runtimeClassName).to.equal('runsc');
    });

    it('follows the policy switches and limits', () => {
      const p = policy({
        noNewPrivileges: false,
        readOnlyRootfs: false,
        limits: { ...DEFAULT_LIMITS, memoryBytes: 1024 * MiB, cpus: 1.25, nofile: 256 },
      });
      const c = buildKernelPod(input({ policy: p }), target).pod.spec!.containers[0]!;
      expect(c.securityContext?.allowPrivilegeEscalation).to.equal(true);
      expect(c.securityContext?.readOnlyRootFilesystem).to.equal(false);
      expect(c.resources?.limits).to.deep.equal({ cpu: '1250m', memory: '1024Mi' });
      expect(c.command).to.include('--nofile=256:256');
    });

    it('refuses invalid input, naming every problem', () => {
      const bad = input({
        name: 'Aido_K',
        env: { 'BAD NAME': 'x' },
        labels: { 'bad key!': 'x' },
        policy: policy({
          limits: { ...DEFAULT_LIMITS, pids: 0 },
          appArmorProfile: 'a b',
          runtime: 'Run_SC',
        }),
      });
      expect(() => buildKernelPod(bad, { namespace: 'Kernels' }))
        .to.throw(SandboxPolicyError)
        .with.property('message')
        .that.matches(/pids must be a positive integer/)
        .and.matches(/name "Aido_K" is not a DNS-1123 label/)
        .and.matches(/namespace "Kernels"/)
        .and.matches(/env name "BAD NAME"/)
        .and.matches(/label key "bad key!"/)
        .and.matches(/appArmorProfile "a b"/)
        .and.matches(/runtime "Run_SC" is not a RuntimeClass name/);
    });

    it('refuses a name too long for the Secret that goes with it', () => {
      expect(() => buildKernelPod(input({ name: 'a'.repeat(60) }), target)).to.throw(
        SandboxPolicyError,
        /at most 52 characters/,
      );
    });
  });

  describe('buildConnectionSecret', () => {
    it('holds the TCP connection file for the pod, labelled like it, immutable', () => {
      const objects = buildKernelPod(input(), target);
      const secret = buildConnectionSecret(objects, tcpConnectionFile('k'.repeat(64)));
      validateObject(secret);
      expect(secret.metadata).to.deep.equal({
        name: 'aido-k-6f1d2c3b-a1-connection',
        namespace: 'aido-kernels',
        labels: objects.pod.metadata?.labels,
      });
      expect(secret.immutable).to.equal(true);
      const file = JSON.parse(secret.stringData?.['connection.json'] ?? '') as Record<
        string,
        unknown
      >;
      expect(file).to.deep.equal({
        transport: 'tcp',
        ip: '0.0.0.0',
        shell_port: 50001,
        iopub_port: 50002,
        stdin_port: 50003,
        control_port: 50004,
        hb_port: 50005,
        key: 'k'.repeat(64),
        signature_scheme: 'hmac-sha256',
        kernel_name: 'python3',
      });
      const ports = objects.pod.spec?.containers[0]?.ports?.map((p) => p.containerPort);
      expect(ports).to.deep.equal([50001, 50002, 50003, 50004, 50005]);
    });
  });

  describe('quantities and labels', () => {
    it('writes bytes and cores as Kubernetes quantities', () => {
      expect(bytesQuantity(512 * MiB)).to.equal('512Mi');
      expect(bytesQuantity(MiB + 1)).to.equal(String(MiB + 1));
      expect(cpuQuantity(0.5)).to.equal('500m');
      expect(cpuQuantity(0.01)).to.equal('10m');
      expect(cpuQuantity(2)).to.equal('2000m');
    });

    it('knows label keys and values', () => {
      expect(isLabelKey('org.aido.kernel-gateway')).to.equal(true);
      expect(isLabelKey('org.aido.kernel-gateway/kernel-node')).to.equal(true);
      expect(isLabelKey('Bad.Prefix/x')).to.equal(false);
      expect(isLabelKey('x'.repeat(64))).to.equal(false);
      expect(isLabelValue('')).to.equal(true);
      expect(isLabelValue('6f1d2c3b-0000-4000-8000-000000000001')).to.equal(true);
      expect(isLabelValue('/var/lib/aido-kgw')).to.equal(false);
      expect(isLabelValue('x'.repeat(64))).to.equal(false);
    });
  });
});
