/**
 * The sandbox policy as a Kubernetes Pod: the same {@link SandboxSpecInput} that
 * {@link buildContainerSpec} turns into Docker's create options becomes the Pod (and the
 * connection Secret) a Kubernetes backend would create for one kernel. Pure, like the Docker side;
 * the golden test (`test/unit/security/pod-spec.test.ts`) pins it, and `security/parity.ts` sets
 * the two side by side, control by control.
 *
 * What a Pod spec cannot say is enforced by the cluster instead (`security/parity.ts` names each
 * case): the pids limit (kubelet `podPidsLimit` on the kernel nodes), the network (a NetworkPolicy,
 * `deploy/kubernetes/`), the cgroup namespace and swap (the node's runtime and kubelet), the size of
 * the container's log (the kubelet's log rotation). Open files
 * are enforced by the pod itself: the container's command lowers `RLIMIT_NOFILE` with `prlimit`
 * before ipykernel starts, and without `CAP_SYS_RESOURCE` nothing in the pod can raise it again.
 *
 * Field meanings: Kubernetes API reference, core/v1 `PodSpec`, `SecurityContext`,
 * `PodSecurityContext`, `EmptyDirVolumeSource`. The types are those of Kubernetes 1.30 (the oldest
 * version we claim: `appArmorProfile` became a field in 1.30), so the compiler refuses a field that
 * 1.30 does not have; the unit tests validate the output against the 1.34 schemas.
 *
 * @packageDocumentation
 *
 * Longer than 400 lines because it is one builder that mirrors buildContainerSpec field by field.
 */
import type {
  Container,
  Pod,
  PodSecurityContext,
  Probe,
  Secret,
  Volume,
} from 'kubernetes-types/core/v1.js';
import { LABEL_APP } from './labels.js';
import {
  CONNECTION_ENV,
  ENV_NAME,
  HEALTHCHECK,
  KERNEL_COMMAND,
  KERNEL_DIR_IN_CONTAINER,
  KERNEL_DIR_SIZE_BYTES,
  PROFILE_NAME,
  SHM_SIZE_BYTES,
  SandboxPolicyError,
  WORKSPACE_DIR,
  validateLimits,
  type SandboxSpecInput,
} from './policy.js';

/** The namespace kernel pods run in (`deploy/kubernetes/`), apart from the gateway's own. */
export const KERNEL_NAMESPACE = 'aido-kernels';

/** The namespace of the gateway Deployment, its Service and ServiceAccount. */
export const GATEWAY_NAMESPACE = 'aido-gateway';

/** The label every kernel pod carries, as every Docker sandbox does; NetworkPolicies select on it. */
export const KERNEL_POD_SELECTOR: Readonly<Record<string, string>> = Object.freeze({
  [LABEL_APP]: '1',
});

/**
 * The node label (and taint key) of the nodes that run kernels. Kernel pods need things only a
 * node provides: the seccomp profile file, the AppArmor profile, the RuntimeClass handler and a
 * kubelet `podPidsLimit` meant for kernels. Pinning them to dedicated, tainted nodes keeps those
 * settings from reaching other workloads and other workloads from sharing a kernel's node.
 */
export const KERNEL_NODE_LABEL = 'org.aido.kernel-gateway/kernel-node';

/**
 * Where the seccomp profile sits on a kernel node, relative to the kubelet's seccomp directory
 * (`<kubelet root>/seccomp/`, by default `/var/lib/kubelet/seccomp/`): the content of
 * `security/seccomp-profile.json`. The Engine API takes the profile's text; a Pod names a file that
 * must already be on the node (see `docs/scaling.md`, "The seccomp profile on the nodes").
 */
export const SECCOMP_LOCALHOST_PROFILE = 'aido/kernel-seccomp.json';

/** A port per ZeroMQ channel of a kernel. */
export type ZmqPorts = Readonly<Record<'shell' | 'iopub' | 'stdin' | 'control' | 'hb', number>>;

/**
 * The kernel's ZeroMQ ports inside its pod. Every pod has its own network namespace and address,
 * so fixed ports are safe; the NetworkPolicy admits the gateway to these ports only.
 */
export const KERNEL_TCP_PORTS: ZmqPorts = Object.freeze({
  shell: 50001,
  iopub: 50002,
  stdin: 50003,
  control: 50004,
  hb: 50005,
});

/** The resolver a sandbox is given: nothing answers there, so no name resolves (Docker: `Dns`). */
const SANDBOX_DNS_RESOLVER = '127.0.0.1';

/** The kernel container's name in the pod. */
export const KERNEL_CONTAINER_NAME = 'kernel';

/** The key of the connection file in the kernel's Secret. */
export const CONNECTION_FILE_KEY = 'connection.json';

/** Where the pod finds things the image provides. */
const TINI = '/usr/bin/tini';
const PRLIMIT = '/usr/bin/prlimit';
const GREP = '/usr/bin/grep';

/**
 * The kernel container's readiness probe, Docker's {@link HEALTHCHECK} for a kernel on TCP: Docker
 * checks that the shell socket exists in `/run/kernel`; here the shell port must be listening,
 * read from the pod's own `/proc/net/tcp` by a fixed binary of the read-only image (no traffic
 * reaches the kernel's sockets, and a kubelet `tcpSocket` probe would come from the node, which the
 * NetworkPolicy does not admit). Same period, timeout and retries as Docker. A readiness probe
 * because, like Docker's health status, nothing acts on it: no Service selects kernel pods, and a
 * liveness probe would kill the kernel, which Docker never does.
 */
function kernelReadinessProbe(): Probe {
  const port = KERNEL_TCP_PORTS.shell.toString(16).toUpperCase().padStart(4, '0');
  // A listening socket on every IPv4 address: local 0.0.0.0:<port>, remote 0.0.0.0:0, state 0A.
  const listening = ` 00000000:${port} 00000000:0000 0A `;
  return {
    exec: { command: [GREP, '-q', '-F', '--', listening, '/proc/net/tcp'] },
    periodSeconds: HEALTHCHECK.Interval / 1e9,
    timeoutSeconds: HEALTHCHECK.Timeout / 1e9,
    failureThreshold: HEALTHCHECK.Retries,
  };
}

/**
 * What a kernel Pod is built from: the {@link SandboxSpecInput} both backends share, less the two
 * Docker-only hand-overs (the kernel volume, and the connection file in the container's config:
 * a pod takes it from the Secret). A full `SandboxSpecInput` is one, so both specs can be built
 * from the same value.
 */
export type KernelPodInput = Omit<SandboxSpecInput, 'kernelVolume' | 'connectionFile'>;

/** Where the cluster places one kernel, beyond the {@link SandboxSpecInput} both backends share. */
export interface KernelPodTarget {
  /** Namespace of the kernel pod and its Secret. */
  namespace: string;
}

/** The two objects a Kubernetes backend creates for one kernel. */
export interface KernelPodObjects {
  /** The kernel pod. */
  pod: Pod;
  /** Name of the Secret that holds the connection file (created before the pod). */
  secretName: string;
}

/** A Kubernetes object name and hostname: a DNS-1123 label. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** A label value (and the name part of a label key): at most 63 characters. */
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
/** A label key's optional prefix: a DNS-1123 subdomain. */
const LABEL_PREFIX = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Suffix of the Secret's name after the pod's. */
const SECRET_SUFFIX = '-connection';

/** True when `key` is a valid Kubernetes label key (`[prefix/]name`). */
export function isLabelKey(key: string): boolean {
  const slash = key.lastIndexOf('/');
  const name = slash < 0 ? key : key.slice(slash + 1);
  const prefix = slash < 0 ? null : key.slice(0, slash);
  if (name.length === 0 || name.length > 63 || !LABEL_VALUE.test(name)) return false;
  return prefix === null || (prefix.length <= 253 && LABEL_PREFIX.test(prefix));
}

/** True when `value` is a valid Kubernetes label value. */
export function isLabelValue(value: string): boolean {
  return value.length <= 63 && LABEL_VALUE.test(value);
}

/**
 * The sandbox's own uid and gid (the same number), as a pod wants them: an integer of the
 * policy's range (which Docker's validation also demands), so never root.
 */
export function sandboxIds(input: KernelPodInput): { uid: number; gid: number } {
  const { first, count } = input.policy.uidRange;
  const { uid } = input;
  if (!Number.isSafeInteger(uid) || uid <= 0 || uid < first || uid >= first + count) {
    throw new SandboxPolicyError(
      `sandbox uid ${uid} is not in the policy's uid range ${first}..${first + count - 1}`,
    );
  }
  return { uid: input.uid, gid: input.uid };
}

/** A byte count as a Kubernetes quantity: `Mi` when whole, else plain bytes. */
export function bytesQuantity(bytes: number): string {
  const MiB = 1024 * 1024;
  return bytes % MiB === 0 ? `${bytes / MiB}Mi` : String(bytes);
}

/** CPU cores as a Kubernetes quantity in millicores (the API's resolution). */
export function cpuQuantity(cpus: number): string {
  return `${Math.round(cpus * 1000)}m`;
}

function validate(input: KernelPodInput, target: KernelPodTarget): void {
  const problems = validateLimits(input.policy.limits);
  if (input.kernelId.length === 0) problems.push('kernelId must not be empty');
  if (input.image.length === 0) problems.push('image must not be empty');
  if (!DNS_LABEL.test(input.name) || input.name.length + SECRET_SUFFIX.length > 63) {
    problems.push(
      `name ${JSON.stringify(input.name)} is not a DNS-1123 label of at most ${63 - SECRET_SUFFIX.length} characters`,
    );
  }
  if (!DNS_LABEL.test(target.namespace)) {
    problems.push(`namespace ${JSON.stringify(target.namespace)} is not a DNS-1123 label`);
  }
  if (CONNECTION_ENV in input.env) problems.push(`env must not set ${CONNECTION_ENV}`);
  for (const [key, value] of Object.entries(input.env)) {
    if (!ENV_NAME.test(key))
      problems.push(`env name ${JSON.stringify(key)} is not a valid variable name`);
    if (value.includes('\0')) problems.push(`env ${key} contains a NUL byte`);
  }
  for (const key of Object.keys(input.labels)) {
    if (!isLabelKey(key)) problems.push(`label key ${JSON.stringify(key)} is not valid here`);
  }
  const profile = input.policy.appArmorProfile;
  if (profile !== null && !PROFILE_NAME.test(profile)) {
    problems.push(`appArmorProfile ${JSON.stringify(profile)} is not a valid profile name`);
  }
  const runtime = input.policy.runtime;
  if (runtime !== null && !DNS_LABEL.test(runtime)) {
    problems.push(`runtime ${JSON.stringify(runtime)} is not a RuntimeClass name`);
  }
  if (problems.length > 0) {
    const who = input.kernelId || '(no id)';
    throw new SandboxPolicyError(
      `invalid sandbox policy for kernel ${who}: ${problems.join('; ')}`,
    );
  }
}

/**
 * Turns a sandbox policy into the kernel Pod a Kubernetes backend creates (and names the Secret it
 * must create first, see {@link buildConnectionSecret}). Pure: the same input always gives the same
 * output.
 *
 * Labels whose values are valid label values stay labels (the Docker ones: app, kernel id,
 * instance, kernel volume); values a label cannot hold (the Docker backend's state-dir path) become
 * annotations under the same key. `kernelVolume` (a Docker volume) has no meaning in a cluster:
 * `/run/kernel` is a pod-local memory emptyDir of the same size. `connectionFile` is not used
 * either: the connection file for TCP lives in the Secret ({@link buildConnectionSecret}), and the
 * container's `AIDO_CONNECTION` comes from it, so the pod runs Docker's very launcher.
 *
 * @throws {@link SandboxPolicyError} naming every invalid limit or input.
 */
export function buildKernelPod(input: KernelPodInput, target: KernelPodTarget): KernelPodObjects {
  validate(input, target);
  const { policy } = input;
  const { limits } = policy;
  const { uid, gid } = sandboxIds(input);
  const secretName = `${input.name}${SECRET_SUFFIX}`;

  const labels: Record<string, string> = {};
  const annotations: Record<string, string> = {};
  for (const [key, value] of Object.entries(input.labels)) {
    if (isLabelValue(value)) labels[key] = value;
    else annotations[key] = value;
  }

  const podSecurity: PodSecurityContext = {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: gid,
    // Group of the emptyDir volumes: they belong to the sandbox's own group, as Docker's
    // /workspace belongs to its uid and gid.
    fsGroup: gid,
    // With seccomp off, Docker's default profile applies, never unconfined: the runtime's default
    // is Kubernetes' equivalent.
    seccompProfile: policy.seccomp
      ? { type: 'Localhost', localhostProfile: SECCOMP_LOCALHOST_PROFILE }
      : { type: 'RuntimeDefault' },
  };
  // As on Docker: the profile is named only where the nodes have AppArmor. A kubelet refuses a pod
  // whose Localhost profile is not loaded on its node, so a missing profile fails closed.
  if (input.hostHasAppArmor && policy.appArmorProfile !== null) {
    podSecurity.appArmorProfile = { type: 'Localhost', localhostProfile: policy.appArmorProfile };
  }

  const tmpfs = (name: string, sizeBytes: number): Volume => ({
    name,
    emptyDir: { medium: 'Memory', sizeLimit: bytesQuantity(sizeBytes) },
  });
  const resources = {
    // Requests equal to limits: Guaranteed QoS, which also keeps the pod out of swap where a
    // node allows swap (kubelet LimitedSwap gives Guaranteed pods none).
    cpu: cpuQuantity(limits.cpus),
    memory: bytesQuantity(limits.memoryBytes),
  };

  const securityContext = {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: gid,
    readOnlyRootFilesystem: policy.readOnlyRootfs,
    allowPrivilegeEscalation: !policy.noNewPrivileges,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    procMount: 'Default',
  };
  const container: Container = {
    name: KERNEL_CONTAINER_NAME,
    image: input.image,
    imagePullPolicy: 'IfNotPresent',
    // tini as PID 1 (Docker: Init), then prlimit lowers soft and hard RLIMIT_NOFILE (Docker:
    // Ulimits) and execs the kernel; nothing in the pod can raise the hard limit again.
    command: [TINI, '-s', '-g', '--', PRLIMIT, `--nofile=${limits.nofile}:${limits.nofile}`, '--'],
    // Docker's launcher: it moves AIDO_CONNECTION into /run/kernel/connection.json (O_EXCL,
    // O_NOFOLLOW), drops it from the environment and execs ipykernel.
    args: [...KERNEL_COMMAND],
    workingDir: WORKSPACE_DIR,
    env: [
      ...Object.entries(input.env).map(([name, value]) => ({ name, value })),
      // The connection file (with the HMAC key) from the kernel's Secret, last as on Docker. The
      // kernel holds its own key by design; the pod spec names only the Secret, which no other pod
      // can read (no API token in any kernel, RBAC gives Secrets to the gateway alone).
      {
        name: CONNECTION_ENV,
        valueFrom: { secretKeyRef: { name: secretName, key: CONNECTION_FILE_KEY } },
      },
    ],
    ports: Object.entries(KERNEL_TCP_PORTS).map(([name, port]) => ({
      name,
      containerPort: port,
      protocol: 'TCP',
    })),
    resources: { requests: { ...resources }, limits: { ...resources } },
    securityContext: { ...securityContext, capabilities: { drop: ['ALL'] } },
    readinessProbe: kernelReadinessProbe(),
    volumeMounts: [
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'workspace', mountPath: WORKSPACE_DIR },
      { name: 'dshm', mountPath: '/dev/shm' },
      { name: 'kernel-dir', mountPath: KERNEL_DIR_IN_CONTAINER },
    ],
  };

  const pod: Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: input.name,
      namespace: target.namespace,
      labels,
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
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
      dnsConfig: { nameservers: [SANDBOX_DNS_RESOLVER] },
      ...(policy.runtime !== null ? { runtimeClassName: policy.runtime } : {}),
      nodeSelector: { [KERNEL_NODE_LABEL]: 'true' },
      tolerations: [
        { key: KERNEL_NODE_LABEL, operator: 'Equal', value: 'true', effect: 'NoSchedule' },
      ],
      securityContext: podSecurity,
      containers: [container],
      volumes: [
        tmpfs('tmp', limits.tmpSizeBytes),
        tmpfs('workspace', limits.workspaceSizeBytes),
        tmpfs('dshm', SHM_SIZE_BYTES),
        // Docker's kernel volume is a tmpfs of the same size (KERNEL_DIR_SIZE_BYTES).
        tmpfs('kernel-dir', KERNEL_DIR_SIZE_BYTES),
      ],
    },
  };
  return { pod, secretName };
}

/** A kernel connection file for ZeroMQ over TCP inside the pod (what Jupyter writes for tcp). */
export interface TcpConnectionFile {
  transport: 'tcp';
  /** The kernel binds every interface of its own pod; the NetworkPolicy decides who gets in. */
  ip: '0.0.0.0';
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
  key: string;
  signature_scheme: 'hmac-sha256';
  kernel_name: string;
}

/** The connection file a kernel pod reads, for the HMAC key `key`. */
export function tcpConnectionFile(key: string): TcpConnectionFile {
  return {
    transport: 'tcp',
    ip: '0.0.0.0',
    shell_port: KERNEL_TCP_PORTS.shell,
    iopub_port: KERNEL_TCP_PORTS.iopub,
    stdin_port: KERNEL_TCP_PORTS.stdin,
    control_port: KERNEL_TCP_PORTS.control,
    hb_port: KERNEL_TCP_PORTS.hb,
    key,
    signature_scheme: 'hmac-sha256',
    kernel_name: 'python3',
  };
}

/**
 * The per-kernel Secret holding the connection file (and so the HMAC key): created before the pod,
 * deleted with it, readable only by the gateway's ServiceAccount (`deploy/kubernetes/`). The pod
 * gets it as its `AIDO_CONNECTION` environment variable, never as a mounted file.
 */
export function buildConnectionSecret(
  objects: KernelPodObjects,
  connection: TcpConnectionFile,
): Secret {
  const meta = objects.pod.metadata ?? {};
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: objects.secretName,
      ...(meta.namespace !== undefined ? { namespace: meta.namespace } : {}),
      labels: { ...meta.labels },
    },
    type: 'Opaque',
    immutable: true,
    stringData: { [CONNECTION_FILE_KEY]: JSON.stringify(connection) },
  };
}
