/**
 * The manifests for running aido-kernel-gateway in a Kubernetes cluster (`deploy/kubernetes/`),
 * built from the same code as the sandbox policy wherever they carry policy: the kernel pod
 * example is {@link buildKernelPod}'s output, the NetworkPolicies use its labels and ports, the
 * kubelet snippet takes the pids limit from {@link DEFAULT_LIMITS}, and the node installer ships
 * the seccomp profile's generated text. `npx tsx security/generate-k8s.ts` writes them; a unit
 * test fails when the committed files drift, and validates every object against the Kubernetes
 * API schemas.
 *
 * The types are Kubernetes 1.30's (`kubernetes-types`), the oldest version we claim.
 *
 * @packageDocumentation
 *
 * Longer than 400 lines because it builds every object of deploy/kubernetes/, each from the policy.
 */
import type { Deployment, DaemonSet } from 'kubernetes-types/apps/v1.js';
import type {
  ConfigMap,
  Namespace,
  Pod,
  Secret,
  Service,
  ServiceAccount,
} from 'kubernetes-types/core/v1.js';
import type { NetworkPolicy as K8sNetworkPolicy } from 'kubernetes-types/networking/v1.js';
import type { RuntimeClass } from 'kubernetes-types/node/v1.js';
import type { Role, RoleBinding } from 'kubernetes-types/rbac/v1.js';
import { LABEL_KERNEL_ID } from './labels.js';
import { dockerNetworkModeFor, type NetworkPolicy } from './network-policy.js';
import {
  GATEWAY_NAMESPACE,
  KERNEL_NAMESPACE,
  KERNEL_NODE_LABEL,
  KERNEL_POD_SELECTOR,
  KERNEL_TCP_PORTS,
  SECCOMP_LOCALHOST_PROFILE,
  buildConnectionSecret,
  buildKernelPod,
  bytesQuantity,
  tcpConnectionFile,
} from './pod-spec.js';
import {
  DEFAULT_POLICY,
  KERNEL_LOG_MAX_FILES,
  KERNEL_LOG_MAX_SIZE_BYTES,
  type SandboxLimits,
} from './policy.js';

/** Any object a manifest file holds. */
export type Manifest =
  | ConfigMap
  | DaemonSet
  | Deployment
  | K8sNetworkPolicy
  | Namespace
  | Pod
  | Role
  | RoleBinding
  | RuntimeClass
  | Secret
  | Service
  | ServiceAccount
  | KubeletConfiguration;

/** The kubelet settings a kernel node needs (`kubelet.config.k8s.io/v1beta1`, not an API object). */
export interface KubeletConfiguration {
  apiVersion: 'kubelet.config.k8s.io/v1beta1';
  kind: 'KubeletConfiguration';
  /** Processes and threads per pod: the sandbox's pids limit. */
  podPidsLimit: number;
  /** Refuse to start with swap on, so no pod on a kernel node swaps. */
  failSwapOn: true;
  /** Rotate a container's log at this size (Docker: the sandbox's `LogConfig` max-size). */
  containerLogMaxSize: string;
  /** Log files kept per container, the live one included (Docker: max-file; at least 2). */
  containerLogMaxFiles: number;
}

/** One file of `deploy/kubernetes/`. */
export interface ManifestFile {
  /** Path under `deploy/kubernetes/`. */
  path: string;
  /** What the file is for (written as its YAML header comment). */
  about: string;
  /** The objects, in apply order. */
  objects: Manifest[];
}

/** The gateway's labels (Deployment selector, Service, NetworkPolicy ingress source). */
export const GATEWAY_POD_LABELS: Readonly<Record<string, string>> = Object.freeze({
  'app.kubernetes.io/name': 'aido-kernel-gateway',
  'app.kubernetes.io/component': 'gateway',
});

/** The NetworkPolicy that denies all traffic of the kernels' namespace. */
const DEFAULT_DENY = 'aido-kernels-default-deny';
/** The NetworkPolicy that lets the gateway reach the kernel ports. */
const FROM_GATEWAY = 'aido-kernels-from-gateway';

/** The NetworkPolicies that confine kernel pods. */
export const NETWORK_POLICY_NAMES: readonly string[] = [DEFAULT_DENY, FROM_GATEWAY];

/** Where the seccomp profile must sit on a kernel node (the kubelet's default root). */
export const SECCOMP_PROFILE_FILE = `/var/lib/kubelet/seccomp/${SECCOMP_LOCALHOST_PROFILE}`;

/** The gateway's ServiceAccount (in {@link GATEWAY_NAMESPACE}). */
const GATEWAY_SERVICE_ACCOUNT = 'aido-kernel-gateway';

/** The gateway image a cluster runs (built from this repository; see docs/scaling.md). */
const GATEWAY_IMAGE = 'aido-kernel-gateway:0.1.0';

/** The kernel image (kernel-image/build.sh), pushed to a registry the nodes can pull from. */
export const KERNEL_IMAGE = 'aido-kernel:latest';

/** The gateway's HTTP port (AIDO_PORT). */
const GATEWAY_PORT = 8888;

/** The kubelet settings of a kernel node, from the sandbox limits. */
export function kernelNodeKubeletConfig(limits: SandboxLimits): KubeletConfiguration {
  return {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    podPidsLimit: limits.pids,
    failSwapOn: true,
    containerLogMaxSize: bytesQuantity(KERNEL_LOG_MAX_SIZE_BYTES),
    containerLogMaxFiles: KERNEL_LOG_MAX_FILES,
  };
}

const kernelNodePlacement = {
  nodeSelector: { [KERNEL_NODE_LABEL]: 'true' },
  tolerations: [{ key: KERNEL_NODE_LABEL, operator: 'Equal', value: 'true', effect: 'NoSchedule' }],
};

/** Namespaces; Pod Security Admission's `restricted` profile is enforced on both. */
function namespaces(): Namespace[] {
  const restricted = {
    'pod-security.kubernetes.io/enforce': 'restricted',
    'pod-security.kubernetes.io/enforce-version': 'latest',
  };
  return [
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: GATEWAY_NAMESPACE, labels: { ...restricted } },
    },
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: KERNEL_NAMESPACE, labels: { ...restricted } },
    },
  ];
}

/**
 * The gateway's identity and rights: pods, their exec (workspace files run a helper in the
 * sandbox) and secrets (connection files) in the kernels' namespace, and nothing else anywhere.
 * No `update`: every change is a patch of a label or an owner reference.
 */
function rbac(): (ServiceAccount | Role | RoleBinding)[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: GATEWAY_SERVICE_ACCOUNT, namespace: GATEWAY_NAMESPACE },
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'aido-kernel-manager', namespace: KERNEL_NAMESPACE },
      rules: [
        {
          apiGroups: [''],
          resources: ['pods'],
          // patch: the kernel-id label of a pooled pod when it is taken, the owner label.
          verbs: ['create', 'get', 'list', 'watch', 'patch', 'delete', 'deletecollection'],
        },
        { apiGroups: [''], resources: ['pods/exec'], verbs: ['create', 'get'] },
        {
          apiGroups: [''],
          resources: ['secrets'],
          // patch: the ownerReference to the pod, set once the pod exists.
          verbs: ['create', 'get', 'list', 'patch', 'delete', 'deletecollection'],
        },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'aido-kernel-manager', namespace: KERNEL_NAMESPACE },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'aido-kernel-manager' },
      subjects: [
        { kind: 'ServiceAccount', name: GATEWAY_SERVICE_ACCOUNT, namespace: GATEWAY_NAMESPACE },
      ],
    },
  ];
}

/**
 * The gateway Deployment and its Service. One replica: kernel ownership across replicas is not
 * built yet (docs/scaling.md, "Several gateway replicas"), and `Recreate` keeps two from
 * overlapping during a rollout.
 */
function gateway(): (Deployment | Service)[] {
  return [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'aido-kernel-gateway', namespace: GATEWAY_NAMESPACE },
      spec: {
        replicas: 1,
        strategy: { type: 'Recreate' },
        selector: { matchLabels: { ...GATEWAY_POD_LABELS } },
        template: {
          metadata: { labels: { ...GATEWAY_POD_LABELS } },
          spec: {
            serviceAccountName: GATEWAY_SERVICE_ACCOUNT,
            enableServiceLinks: false,
            securityContext: {
              runAsNonRoot: true,
              runAsUser: 10001,
              runAsGroup: 10001,
              fsGroup: 10001,
              seccompProfile: { type: 'RuntimeDefault' },
            },
            containers: [
              {
                name: 'gateway',
                image: GATEWAY_IMAGE,
                imagePullPolicy: 'IfNotPresent',
                ports: [{ name: 'http', containerPort: GATEWAY_PORT, protocol: 'TCP' }],
                env: [
                  { name: 'AIDO_IP', value: '0.0.0.0' },
                  { name: 'AIDO_PORT', value: String(GATEWAY_PORT) },
                  { name: 'AIDO_KERNEL_IMAGE', value: KERNEL_IMAGE },
                  { name: 'AIDO_STATE_DIR', value: '/var/lib/aido-kgw' },
                  {
                    name: 'AIDO_AUTH_TOKEN',
                    valueFrom: { secretKeyRef: { name: 'aido-kernel-gateway-auth', key: 'token' } },
                  },
                ],
                readinessProbe: {
                  tcpSocket: { port: 'http' },
                  periodSeconds: 5,
                },
                livenessProbe: {
                  tcpSocket: { port: 'http' },
                  periodSeconds: 20,
                  failureThreshold: 3,
                },
                resources: {
                  requests: { cpu: '500m', memory: '256Mi' },
                  limits: { memory: '1Gi' },
                },
                securityContext: {
                  readOnlyRootFilesystem: true,
                  allowPrivilegeEscalation: false,
                  privileged: false,
                  capabilities: { drop: ['ALL'] },
                },
                volumeMounts: [
                  { name: 'state', mountPath: '/var/lib/aido-kgw' },
                  { name: 'tmp', mountPath: '/tmp' },
                ],
              },
            ],
            volumes: [
              { name: 'state', emptyDir: {} },
              { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'aido-kernel-gateway', namespace: GATEWAY_NAMESPACE },
      spec: {
        type: 'ClusterIP',
        selector: { ...GATEWAY_POD_LABELS },
        ports: [{ name: 'http', port: GATEWAY_PORT, targetPort: 'http', protocol: 'TCP' }],
      },
    },
  ];
}

/**
 * Default deny for every pod in the kernels' namespace, in both directions, then one opening:
 * the gateway's pods may reach a kernel pod's ZeroMQ ports. No egress at all: the network policy
 * (`security/network-policy.json`) is mode `none`; when the egress allow-list's proxy exists, its
 * one egress rule (to the proxy's pods and port) belongs here.
 */
function networkPolicies(network: NetworkPolicy): K8sNetworkPolicy[] {
  // Its return type is the literal `none`: a new mode fails to compile until it has its rule here.
  dockerNetworkModeFor(network);
  return [
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: DEFAULT_DENY, namespace: KERNEL_NAMESPACE },
      spec: { podSelector: {}, policyTypes: ['Ingress', 'Egress'] },
    },
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: FROM_GATEWAY, namespace: KERNEL_NAMESPACE },
      spec: {
        podSelector: { matchLabels: { ...KERNEL_POD_SELECTOR } },
        policyTypes: ['Ingress'],
        ingress: [
          {
            from: [
              {
                namespaceSelector: {
                  matchLabels: { 'kubernetes.io/metadata.name': GATEWAY_NAMESPACE },
                },
                podSelector: { matchLabels: { ...GATEWAY_POD_LABELS } },
              },
            ],
            ports: Object.values(KERNEL_TCP_PORTS).map((port) => ({ protocol: 'TCP', port })),
          },
        ],
      },
    },
  ];
}

/**
 * The RuntimeClass for gVisor. Named after the Docker runtime (`runsc`) so that one setting,
 * AIDO_RUNTIME=runsc, selects gVisor on either backend; scheduled onto kernel nodes only.
 */
function runtimeClass(): RuntimeClass {
  return {
    apiVersion: 'node.k8s.io/v1',
    kind: 'RuntimeClass',
    metadata: { name: 'runsc' },
    handler: 'runsc',
    scheduling: { ...kernelNodePlacement },
  };
}

/**
 * Puts the seccomp profile where the kubelet looks for it, on every kernel node: a ConfigMap with
 * the generated profile and a DaemonSet that copies it into the kubelet's seccomp directory
 * (atomically: a temporary file, then a rename). The copy runs as uid 0 without any capability
 * (root owns the directory); the namespace must allow hostPath, so it is Pod Security
 * `privileged`, and holds nothing else. Clusters that provision nodes from an image, or run the
 * Security Profiles Operator, put the file there that way instead (docs/scaling.md).
 */
function seccompInstaller(profileJson: string): (Namespace | ConfigMap | DaemonSet)[] {
  const ns = 'aido-node-setup';
  const dir = SECCOMP_PROFILE_FILE.slice(0, SECCOMP_PROFILE_FILE.lastIndexOf('/'));
  const file = SECCOMP_PROFILE_FILE.slice(dir.length + 1);
  const labels = { 'app.kubernetes.io/name': 'aido-seccomp-installer' };
  return [
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns, labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } },
    },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'aido-seccomp-profile', namespace: ns },
      data: { [file]: profileJson },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'aido-seccomp-installer', namespace: ns },
      spec: {
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            ...kernelNodePlacement,
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
            initContainers: [
              {
                name: 'install',
                image: KERNEL_IMAGE,
                command: [
                  '/bin/sh',
                  '-c',
                  `cp /profile/${file} /host/.${file}.tmp && mv -f /host/.${file}.tmp /host/${file}`,
                ],
                securityContext: {
                  runAsUser: 0,
                  runAsGroup: 0,
                  readOnlyRootFilesystem: true,
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ['ALL'] },
                },
                volumeMounts: [
                  { name: 'profile', mountPath: '/profile', readOnly: true },
                  { name: 'host', mountPath: '/host' },
                ],
              },
            ],
            containers: [
              {
                // Keeps the DaemonSet's pod running, so that a new node gets the profile and a
                // rollout (a new profile) replaces it everywhere.
                name: 'hold',
                image: KERNEL_IMAGE,
                command: ['/usr/bin/sleep', 'infinity'],
                resources: { requests: { cpu: '1m', memory: '4Mi' }, limits: { memory: '16Mi' } },
                securityContext: {
                  runAsNonRoot: true,
                  runAsUser: 1000,
                  readOnlyRootFilesystem: true,
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ['ALL'] },
                },
              },
            ],
            volumes: [
              { name: 'profile', configMap: { name: 'aido-seccomp-profile' } },
              { name: 'host', hostPath: { path: dir, type: 'DirectoryOrCreate' } },
            ],
          },
        },
      },
    },
  ];
}

/** The example input of the kernel pod example (and of the parity table). */
export const EXAMPLE_KERNEL = Object.freeze({
  kernelId: '6f1d2c3b-0000-4000-8000-000000000001',
  name: 'aido-k-6f1d2c3b-a1b2c3d4e5f6',
});

/**
 * A kernel's Secret and Pod exactly as {@link buildKernelPod} makes them for the default policy,
 * for review and for `kubectl apply --dry-run=server` against a cluster. The key is a placeholder:
 * the gateway makes a fresh 256-bit key per kernel.
 */
function kernelExample(): (Secret | Pod)[] {
  const objects = buildKernelPod(
    {
      policy: DEFAULT_POLICY,
      image: KERNEL_IMAGE,
      kernelId: EXAMPLE_KERNEL.kernelId,
      uid: DEFAULT_POLICY.uidRange.first,
      labels: {
        ...KERNEL_POD_SELECTOR,
        [LABEL_KERNEL_ID]: EXAMPLE_KERNEL.kernelId,
      },
      env: { KERNEL_ID: EXAMPLE_KERNEL.kernelId },
      name: EXAMPLE_KERNEL.name,
      hostHasAppArmor: true,
    },
    { namespace: KERNEL_NAMESPACE },
  );
  const secret = buildConnectionSecret(
    objects,
    tcpConnectionFile('EXAMPLE-ONLY-the-gateway-makes-a-fresh-256-bit-key-per-kernel'),
  );
  return [secret, objects.pod];
}

/** Every file of `deploy/kubernetes/`, built from the policy code. */
export function buildManifests(inputs: {
  network: NetworkPolicy;
  seccompProfileJson: string;
}): ManifestFile[] {
  return [
    {
      path: '00-namespaces.yaml',
      about: "The gateway's namespace and the kernels' namespace (Pod Security: restricted).",
      objects: namespaces(),
    },
    {
      path: '10-rbac.yaml',
      about:
        "The gateway's ServiceAccount and its only rights: pods, pods/exec and secrets in the kernels' namespace.",
      objects: rbac(),
    },
    {
      path: '20-gateway.yaml',
      about:
        'The gateway Deployment (one replica) and its Service. It needs the gateway image and the Kubernetes runtime backend, neither of which exists yet (docs/scaling.md, "What is left"). Create the token first: kubectl -n aido-gateway create secret generic aido-kernel-gateway-auth --from-literal=token=$(openssl rand -hex 24)',
      objects: gateway(),
    },
    {
      path: '40-network-policies.yaml',
      about:
        "Kernel pods: default deny in both directions; ingress only from the gateway's pods to the kernel ports; no egress.",
      objects: networkPolicies(inputs.network),
    },
    {
      path: 'runtimeclass-gvisor.example.yaml',
      about:
        'Optional: gVisor for kernels (AIDO_RUNTIME=runsc). Apply only where the kernel nodes have runsc as a containerd runtime handler.',
      objects: [runtimeClass()],
    },
    {
      path: 'node/kubelet-config.yaml',
      about:
        'Kernel nodes: merge into the kubelet configuration. A Pod spec cannot limit processes; the kubelet does, per pod.',
      objects: [kernelNodeKubeletConfig(DEFAULT_POLICY.limits)],
    },
    {
      path: 'node/seccomp-profile-installer.yaml',
      about: `Kernel nodes: installs security/seccomp-profile.json as ${SECCOMP_PROFILE_FILE}. Skip where node images already carry it.`,
      objects: seccompInstaller(inputs.seccompProfileJson),
    },
    {
      path: 'examples/kernel-pod.yaml',
      about:
        'What the gateway creates per kernel (generated by security/pod-spec.ts for the default policy): the connection Secret, then the Pod. An example for review and server-side dry runs; the gateway makes these itself.',
      objects: kernelExample(),
    },
  ];
}
