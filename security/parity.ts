/**
 * Docker and Kubernetes side by side: every control of the sandbox specification with the fields
 * that carry it in Docker's create options ({@link buildContainerSpec}) and in the kernel Pod
 * ({@link buildKernelPod}), or the cluster setting that enforces it where a Pod spec cannot.
 *
 * The table is generated from the two built specs (`docs/kubernetes-parity.md`, by
 * `npx tsx security/generate-k8s.ts`), so the settings shown are the ones the code produces. The
 * unit test (`test/unit/security/parity.test.ts`) fails when a field of either spec belongs to no
 * control, when a control names a field its spec does not set, and when a control has a side
 * missing without saying so ({@link ParityControl.gap}).
 *
 * @packageDocumentation
 *
 * Longer than 400 lines because it is one table, a row per control of the sandbox specification.
 */
import type { ContainerCreateOptions } from 'dockerode';
import type { Pod } from 'kubernetes-types/core/v1.js';
import {
  NETWORK_POLICY_NAMES,
  SECCOMP_PROFILE_FILE,
  kernelNodeKubeletConfig,
} from './k8s-manifests.js';
import { KERNEL_CONTAINER_NAME } from './pod-spec.js';
import {
  CONNECTION_ENV,
  KERNEL_DIR_INODES,
  KERNEL_LOG_MAX_FILES,
  KERNEL_LOG_MAX_SIZE_BYTES,
  type SandboxLimits,
} from './policy.js';

/**
 * A path into a spec: object keys, and array elements either by index or by `[name=X]` (an
 * element whose `name`/`Name` is X) or `[^prefix]` (the string elements starting with prefix).
 */
export type SpecPath = readonly string[];

/** Who enforces a control on Kubernetes. */
export type Enforcer = 'pod' | 'cluster' | 'not enforced';

/** One control of the sandbox specification on both backends. */
export interface ParityControl {
  /** Stable id (kebab-case). */
  id: string;
  /** What the control is, in the words of DESIGN.md "Sandbox controls". */
  control: string;
  /** The fields of Docker's create options that carry it. */
  docker: readonly SpecPath[];
  /** The fields of the kernel Pod that carry it (may be empty when the cluster enforces it). */
  pod: readonly SpecPath[];
  /**
   * What the cluster does that the Pod spec cannot say (kubelet, runtime, NetworkPolicy): the
   * control is "enforced by the cluster, not the pod".
   */
  cluster?: (limits: SandboxLimits) => string;
  /**
   * Set when the Kubernetes side falls short of Docker's: what is missing, and what covers for it.
   * A gap is a decision written down, never an accident: the unit test pins the list of gaps.
   */
  gap?: string;
}

const C = ['spec', 'containers', `[name=${KERNEL_CONTAINER_NAME}]`];
const SC = [...C, 'securityContext'];
const PSC = ['spec', 'securityContext'];
const volume = (name: string): SpecPath => ['spec', 'volumes', `[name=${name}]`];
const mount = (name: string): SpecPath => [...C, 'volumeMounts', `[name=${name}]`];

/** Every control, in the order of DESIGN.md's table, then the namespaces and the rest. */
export const PARITY_CONTROLS: readonly ParityControl[] = [
  {
    id: 'user',
    control:
      'unprivileged user: its own uid/gid per sandbox, from a range that names no host account; never root',
    docker: [['User']],
    pod: [
      [...PSC, 'runAsNonRoot'],
      [...PSC, 'runAsUser'],
      [...PSC, 'runAsGroup'],
      [...PSC, 'fsGroup'],
      [...SC, 'runAsNonRoot'],
      [...SC, 'runAsUser'],
      [...SC, 'runAsGroup'],
    ],
  },
  {
    id: 'read-only-root',
    control: 'read-only root file system',
    docker: [['HostConfig', 'ReadonlyRootfs']],
    pod: [[...SC, 'readOnlyRootFilesystem']],
  },
  {
    id: 'tmp',
    control: '/tmp: size-capped tmpfs',
    docker: [['HostConfig', 'Tmpfs', '/tmp']],
    pod: [volume('tmp'), mount('tmp')],
  },
  {
    id: 'workspace',
    control: '/workspace: size-capped tmpfs (its pages count against the memory limit)',
    docker: [['HostConfig', 'Tmpfs', '/workspace'], ['WorkingDir']],
    pod: [volume('workspace'), mount('workspace'), [...C, 'workingDir']],
  },
  {
    id: 'mount-options',
    control: `writable mounts noexec, nosuid, nodev; /workspace mode 0700; the kernel volume (its options are the volume's, security/policy.ts kernelVolumeOptions) also capped at ${KERNEL_DIR_INODES} inodes, root-owned and sticky`,
    docker: [
      ['HostConfig', 'Tmpfs', '/tmp'],
      ['HostConfig', 'Tmpfs', '/workspace'],
      ['HostConfig', 'Mounts'],
    ],
    pod: [],
    gap: "a Pod cannot set mount options on an emptyDir (the kubelet mounts its tmpfs rw without noexec, nosuid or nodev, mode 0777, no inode cap). nosuid is moot (allowPrivilegeEscalation false; the image has no setuid files), nodev too (no CAP_MKNOD, so no device node can be made), and the mode (only the sandbox uid runs in the pod). The inode cap: tmpfs inodes are memory charged to the pod, so the memory limit bounds them. Root-owned and sticky: on Docker it keeps the kernel from replacing the sockets the gateway (root, on the host) has taken over; in a pod the channels are TCP and the gateway reaches /run/kernel only through pods/exec as the kernel's own user, so nothing of root's is there to protect. noexec is not covered: a kernel pod may run a binary it wrote to /tmp, /workspace or /run/kernel, still under seccomp, no capabilities and the limits; `deny /tmp/** x, deny /workspace/** x, deny /run/kernel/** x,` in the AppArmor profile would close it on both backends",
  },
  {
    id: 'shm',
    control: '/dev/shm: small, for POSIX semaphores only',
    docker: [['HostConfig', 'ShmSize']],
    pod: [volume('dshm'), mount('dshm')],
  },
  {
    id: 'kernel-dir',
    control:
      "the kernel's private directory /run/kernel: a size-capped tmpfs of its own, never a host directory (connection file, sockets; the only other mount)",
    docker: [['HostConfig', 'Mounts']],
    pod: [volume('kernel-dir'), mount('kernel-dir')],
  },
  {
    id: 'connection',
    control: `the connection file (with the kernel's HMAC key): in the environment (${CONNECTION_ENV}) of a fixed launcher that writes it into /run/kernel (O_EXCL, O_NOFOLLOW), drops it from the environment and execs ipykernel; never a host path`,
    docker: [['Env', `[^${CONNECTION_ENV}=]`]],
    // From the kernel's own Secret (buildConnectionSecret): the pod spec names it, never holds it.
    pod: [[...C, 'env', `[name=${CONNECTION_ENV}]`]],
  },
  {
    id: 'network',
    control: 'network: no egress, no ingress but the gateway, no traffic between kernels',
    docker: [['NetworkDisabled'], ['HostConfig', 'NetworkMode']],
    pod: [
      ['spec', 'hostNetwork'],
      [...C, 'ports'],
    ],
    cluster: () =>
      `NetworkPolicies ${NETWORK_POLICY_NAMES.map((n) => `\`${n}\``).join(' and ')} (deploy/kubernetes/40-network-policies.yaml): ingress only from the gateway's pods to the kernel ports, no egress; needs a CNI that enforces NetworkPolicy. A pod always has an interface: the channels travel over TCP instead of ipc`,
  },
  {
    id: 'dns',
    control: "DNS: no resolver, the host's resolver and search domains hidden",
    docker: [
      ['HostConfig', 'Dns'],
      ['HostConfig', 'DnsSearch'],
    ],
    pod: [
      ['spec', 'dnsPolicy'],
      ['spec', 'dnsConfig'],
    ],
  },
  {
    id: 'memory',
    control: 'memory limit',
    docker: [['HostConfig', 'Memory']],
    pod: [
      [...C, 'resources', 'limits', 'memory'],
      [...C, 'resources', 'requests', 'memory'],
    ],
  },
  {
    id: 'swap',
    control: 'no swap beyond the memory limit',
    docker: [['HostConfig', 'MemorySwap']],
    pod: [[...C, 'resources', 'requests']],
    cluster: () =>
      'kubelet: swap off on kernel nodes (the default), or `memorySwap.swapBehavior: LimitedSwap`, which gives Guaranteed pods (requests = limits) no swap',
  },
  {
    id: 'oom',
    control: 'out of memory: the kernel is OOM-killed and the gateway says so',
    docker: [['HostConfig', 'OomKillDisable']],
    pod: [],
    cluster: () =>
      'always: a pod cannot disable the OOM killer; the container status says `OOMKilled`',
  },
  {
    id: 'cpu',
    control: 'CPU limit (CFS quota)',
    docker: [['HostConfig', 'NanoCpus']],
    pod: [
      [...C, 'resources', 'limits', 'cpu'],
      [...C, 'resources', 'requests', 'cpu'],
    ],
  },
  {
    id: 'cpu-weight',
    control: 'CPU weight under contention, below the gateway (busy sandboxes wait for it)',
    docker: [['HostConfig', 'CpuShares']],
    // The kubelet derives a pod's weight from its CPU request (cpu.shares = millicores * 1024 /
    // 1000); requests equal limits (Guaranteed QoS), so the weight follows the CPU limit.
    pod: [[...C, 'resources', 'requests', 'cpu']],
  },
  {
    id: 'pids',
    control: 'processes and threads',
    docker: [['HostConfig', 'PidsLimit']],
    pod: [],
    cluster: (limits) =>
      `kubelet \`podPidsLimit: ${kernelNodeKubeletConfig(limits).podPidsLimit}\` on the kernel nodes (deploy/kubernetes/node/kubelet-config.yaml): a Pod spec has no pids field`,
  },
  {
    id: 'open-files',
    control: 'open files per process (soft = hard)',
    docker: [['HostConfig', 'Ulimits']],
    pod: [[...C, 'command']],
  },
  {
    id: 'seccomp',
    control: "system calls: our allow-list (never unconfined; off: the runtime's default)",
    docker: [['HostConfig', 'SecurityOpt', '[^seccomp=]']],
    pod: [[...PSC, 'seccompProfile']],
    cluster: () =>
      `the profile file \`${SECCOMP_PROFILE_FILE}\` must be on every kernel node (deploy/kubernetes/node/); a kubelet refuses a pod whose profile file is missing`,
  },
  {
    id: 'capabilities',
    control: 'capabilities: all dropped',
    docker: [['HostConfig', 'CapDrop']],
    pod: [[...SC, 'capabilities']],
  },
  {
    id: 'no-new-privileges',
    control: 'no-new-privileges',
    docker: [['HostConfig', 'SecurityOpt', '[^no-new-privileges]']],
    pod: [[...SC, 'allowPrivilegeEscalation']],
  },
  {
    id: 'apparmor',
    control: 'AppArmor profile where the host (node) has AppArmor',
    docker: [['HostConfig', 'SecurityOpt', '[^apparmor=]']],
    pod: [[...PSC, 'appArmorProfile']],
    cluster: () =>
      'the profile must be loaded on every kernel node (`apparmor_parser -r -W security/apparmor/aido-kernel`); a kubelet refuses a pod whose profile is not loaded',
  },
  {
    id: 'privileged',
    control: 'not privileged, no devices',
    docker: [
      ['HostConfig', 'Privileged'],
      ['HostConfig', 'Devices'],
    ],
    pod: [[...SC, 'privileged']],
  },
  {
    id: 'proc-paths',
    control:
      'read-only /proc/bus, /proc/fs, /proc/irq, /proc/sys, /proc/sysrq-trigger; /dev/mqueue',
    docker: [['HostConfig', 'ReadonlyPaths']],
    pod: [[...SC, 'procMount']],
    gap: "procMount Default keeps the runtime's read-only and masked /proc paths; /dev/mqueue stays writable in the pod, and the seccomp profile's refusal of mq_open covers it",
  },
  {
    id: 'pid-namespace',
    control: 'private PID namespace',
    docker: [['HostConfig', 'PidMode']],
    pod: [
      ['spec', 'hostPID'],
      ['spec', 'shareProcessNamespace'],
    ],
  },
  {
    id: 'ipc-namespace',
    control: 'private IPC namespace',
    docker: [['HostConfig', 'IpcMode']],
    pod: [['spec', 'hostIPC']],
  },
  {
    id: 'cgroup-namespace',
    control: 'private cgroup namespace',
    docker: [['HostConfig', 'CgroupnsMode']],
    pod: [],
    cluster: () =>
      'containerd and CRI-O give every container a private cgroup namespace on cgroup v2 nodes; a Pod spec has no field for it',
  },
  {
    id: 'init',
    control: 'an init as PID 1 (reaps zombies, forwards signals)',
    docker: [['HostConfig', 'Init']],
    pod: [[...C, 'command']],
  },
  {
    id: 'command',
    control: 'the kernel command (ipykernel on the connection file)',
    docker: [['Cmd'], ['Image']],
    pod: [
      [...C, 'args'],
      [...C, 'image'],
      [...C, 'imagePullPolicy'],
    ],
  },
  {
    id: 'runtime',
    control: 'stronger runtime when configured (gVisor): AIDO_RUNTIME',
    docker: [['HostConfig', 'Runtime']],
    pod: [['spec', 'runtimeClassName']],
  },
  {
    id: 'environment',
    control: 'environment: the allow-listed variables only',
    docker: [['Env']],
    pod: [
      [...C, 'env'],
      ['spec', 'enableServiceLinks'],
    ],
  },
  {
    id: 'credentials',
    control: 'no credentials of the host or cluster in a sandbox (no Docker socket, no API token)',
    docker: [['HostConfig', 'Mounts']],
    pod: [['spec', 'automountServiceAccountToken']],
  },
  {
    id: 'lifetime',
    control: 'one sandbox per kernel, never restarted or reused; the gateway removes it',
    docker: [
      ['HostConfig', 'RestartPolicy'],
      ['HostConfig', 'AutoRemove'],
    ],
    pod: [['spec', 'restartPolicy']],
  },
  {
    id: 'health-check',
    control:
      "health check: the kernel's shell socket is bound, checked by a fixed binary of the image every minute (status only: nothing acts on it)",
    docker: [['Healthcheck']],
    pod: [[...C, 'readinessProbe']],
  },
  {
    id: 'logs',
    control: `the container's log on the host (a kernel can write to its original stdout and stderr): rotated, at most ${KERNEL_LOG_MAX_FILES} files of ${KERNEL_LOG_MAX_SIZE_BYTES} bytes`,
    docker: [['HostConfig', 'LogConfig']],
    pod: [],
    cluster: (limits) => {
      const kubelet = kernelNodeKubeletConfig(limits);
      return `kubelet \`containerLogMaxSize: ${kubelet.containerLogMaxSize}\`, \`containerLogMaxFiles: ${kubelet.containerLogMaxFiles}\` on the kernel nodes (deploy/kubernetes/node/kubelet-config.yaml): a Pod spec has no log field. The kubelet checks sizes every \`containerLogMonitorInterval\` (10 s by default), so a flood can pass the size by what it writes in between; Docker's driver rotates as it writes`;
    },
  },
  {
    id: 'labels',
    control: 'labels: ownership and kernel id, for listing, clean-up and panic',
    docker: [['Labels'], ['name']],
    pod: [
      ['metadata', 'labels'],
      ['metadata', 'annotations'],
      ['metadata', 'name'],
    ],
  },
];

/**
 * Pod fields that say where a kernel runs, not how it is confined: they have no Docker
 * counterpart because one Docker host is the only place. Listed so that the coverage test can
 * tell them from a control that was forgotten on the Docker side.
 */
export const POD_PLACEMENT_FIELDS: readonly SpecPath[] = [
  ['apiVersion'],
  ['kind'],
  ['metadata', 'namespace'],
  ['spec', 'nodeSelector'],
  ['spec', 'tolerations'],
  [...C, 'name'],
];

/** Resolves a {@link SpecPath}; `undefined` when any step is missing. */
export function resolvePath(root: unknown, path: SpecPath): unknown {
  let here: unknown = root;
  for (const step of path) {
    if (Array.isArray(here)) {
      const byName = /^\[name=(.*)\]$/.exec(step);
      const byPrefix = /^\[\^(.*)\]$/.exec(step);
      if (byName) {
        here = here.find(
          (e: unknown) =>
            typeof e === 'object' &&
            e !== null &&
            ((e as { name?: unknown }).name === byName[1] ||
              (e as { Name?: unknown }).Name === byName[1]),
        );
      } else if (byPrefix) {
        const hits = here.filter(
          (e: unknown) => typeof e === 'string' && e.startsWith(byPrefix[1] ?? ''),
        );
        here = hits.length > 0 ? hits : undefined;
      } else {
        here = /^\d+$/.test(step) ? (here as unknown[])[Number(step)] : undefined;
      }
    } else if (typeof here === 'object' && here !== null && Object.hasOwn(here, step)) {
      here = (here as Record<string, unknown>)[step];
    } else {
      return undefined;
    }
  }
  return here;
}

/**
 * Every leaf of a spec as a {@link SpecPath}: scalars, empty arrays and empty objects. Array
 * elements that have a `name` (or Docker's `Name`) are addressed by it (`[name=X]`), strings by
 * their value (`[=value]`), anything else by index.
 */
export function leafPaths(value: unknown, prefix: SpecPath = []): SpecPath[] {
  if (Array.isArray(value)) {
    if (value.length === 0) return [prefix];
    return value.flatMap((e: unknown, i) => {
      // A string element is addressed by its value, which a `[^prefix]` claim can match.
      if (typeof e === 'string') return [[...prefix, `[=${e}]`]];
      const name =
        typeof e === 'object' && e !== null
          ? ((e as { name?: unknown }).name ?? (e as { Name?: unknown }).Name)
          : undefined;
      return leafPaths(e, [...prefix, typeof name === 'string' ? `[name=${name}]` : String(i)]);
    });
  }
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value);
    if (entries.length === 0) return [prefix];
    return entries.flatMap(([k, v]) => leafPaths(v, [...prefix, k]));
  }
  return [prefix];
}

function stepCovers(claim: string, step: string | undefined): boolean {
  if (step === undefined) return false;
  const prefix = /^\[\^(.*)\]$/.exec(claim);
  if (prefix) return step.startsWith(`[=${prefix[1]}`);
  return claim === step;
}

/**
 * True when `claim` is `path` or one of its ancestors; a `[^prefix]` step covers the string
 * elements (`[=value]`, see {@link leafPaths}) that start with the prefix.
 */
export function covers(claim: SpecPath, path: SpecPath): boolean {
  // An empty array (`SecurityOpt: []`) is covered by the claims on its elements.
  const rest = claim.slice(path.length);
  if (!rest.every((s) => /^\[\^.*\]$/.test(s))) return false;
  return claim.slice(0, path.length).every((s, i) => stepCovers(s, path[i]));
}

/** A path for people: `HostConfig.Tmpfs["/tmp"]`, `spec.containers[name=kernel].env`. */
export function formatPath(path: SpecPath): string {
  return path
    .map((s, i) => {
      if (s.startsWith('[')) return s.length > 80 ? `${s.slice(0, 77)}...]` : s;
      if (/^[A-Za-z_][\w-]*$/.test(s)) return i === 0 ? s : `.${s}`;
      return `[${JSON.stringify(s)}]`;
    })
    .join('');
}

/**
 * A value for a table cell: compact JSON, the seccomp profile's text and the connection file
 * named rather than shown.
 */
function formatValue(value: unknown): string {
  const text = JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v !== 'string') return v;
    if (v.startsWith('seccomp={')) return 'seccomp=<text of security/seccomp-profile.json>';
    if (v.startsWith(`${CONNECTION_ENV}=`)) return `${CONNECTION_ENV}=<the connection file>`;
    return v;
  });
  return text.length > 400 ? `${text.slice(0, 397)}...` : text;
}

/** One row of the generated table. */
export interface ParityRow {
  /** The control's id. */
  id: string;
  /** What the control is. */
  control: string;
  /** Docker: `field: value` for each field. */
  docker: string[];
  /** Kubernetes: `field: value` for each pod field. */
  pod: string[];
  /** Who enforces it on Kubernetes. */
  enforcedBy: Enforcer;
  /** The cluster's part, or the gap and what covers for it. */
  note: string | null;
}

function cells(spec: unknown, paths: readonly SpecPath[]): string[] {
  return paths.map((p) => `${formatPath(p)}: ${formatValue(resolvePath(spec, p))}`);
}

/** Builds the rows from the two specs built for the same input. */
export function parityRows(
  docker: ContainerCreateOptions,
  pod: Pod,
  limits: SandboxLimits,
): ParityRow[] {
  return PARITY_CONTROLS.map((c) => {
    const cluster = c.cluster?.(limits) ?? null;
    const enforcedBy: Enforcer =
      c.gap !== undefined && c.pod.length === 0
        ? 'not enforced'
        : cluster !== null
          ? 'cluster'
          : 'pod';
    const notes = [cluster, c.gap === undefined ? null : `gap: ${c.gap}`].filter(
      (n): n is string => n !== null,
    );
    return {
      id: c.id,
      control: c.control,
      docker: cells(docker, c.docker),
      pod: cells(pod, c.pod),
      enforcedBy,
      note: notes.length > 0 ? notes.join('; ') : null,
    };
  });
}

const cell = (lines: string[]): string =>
  lines.length === 0
    ? '—'
    : lines.map((l) => `\`${l.replaceAll('`', "'").replaceAll('|', '\\|')}\``).join('<br>');

/** The rows as a Markdown table. */
export function parityMarkdown(rows: readonly ParityRow[]): string {
  const head = [
    '| control | Docker (create options) | Kubernetes (kernel Pod) | enforced by |',
    '| --- | --- | --- | --- |',
  ];
  const body = rows.map((r) => {
    const by =
      r.enforcedBy === 'pod'
        ? 'the pod'
        : r.enforcedBy === 'cluster'
          ? '**the cluster, not the pod**'
          : '**not enforced on Kubernetes**';
    const note = r.note === null ? '' : `: ${r.note.replaceAll('|', '\\|')}`;
    return `| ${r.control} | ${cell(r.docker)} | ${cell(r.pod)} | ${by}${note} |`;
  });
  return [...head, ...body].join('\n');
}
