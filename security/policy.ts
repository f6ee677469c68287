/**
 * The sandbox policy as data, and the one pure function that turns it into Docker's container
 * create options. Every control in DESIGN.md "Sandbox controls" is set here and nowhere else; the
 * golden test (`test/unit/security/policy.test.ts`) pins the result field by field.
 *
 * Field meanings: Docker Engine API `POST /containers/create` (`ContainerConfig` + `HostConfig`);
 * what was verified on this host: `reference/sandbox-field-notes.md` §2.6.
 *
 * @packageDocumentation
 *
 * Longer than 400 lines because the policy is one function and its inputs: splitting it would
 * scatter the one place a reviewer reads to know what a sandbox is.
 */
import type { ContainerCreateOptions, HostConfig, MountSettings } from 'dockerode';
import { seccompProfileJson } from './seccomp.js';

/** Resource limits of one sandbox. */
export interface SandboxLimits {
  /** Memory limit in bytes; swap is disabled (MemorySwap = Memory). tmpfs pages count against it. */
  memoryBytes: number;
  /** CPU cores (fractional), enforced as CFS quota (`NanoCpus`). */
  cpus: number;
  /**
   * CPU weight under contention (`CpuShares`; Docker's default is 1024, cgroup v2 maps it to
   * cpu.weight = 1 + (shares - 2) * 9999 / 262142, so 256 is weight 10 against a default of 100).
   * Below the gateway's so that busy sandboxes queue behind the gateway, not the other way round.
   */
  cpuShares: number;
  /** Processes and threads in the container (`pids.max`). */
  pids: number;
  /** Open files per process (`RLIMIT_NOFILE`, soft = hard). */
  nofile: number;
  /** Size of the `/tmp` tmpfs in bytes. */
  tmpSizeBytes: number;
  /** Size of the `/workspace` tmpfs in bytes. */
  workspaceSizeBytes: number;
}

/**
 * How a sandbox is networked, as `security/network-policy.json` says (the gateway loads the file at
 * start with network-policy.ts, fail closed, and hands this over; the k8s generator reads the same
 * file).
 */
export interface SandboxNetwork {
  /** Docker's `NetworkMode`: `none`, a loopback interface only. */
  mode: 'none';
  /** The one resolver in the sandbox's resolv.conf: its own loopback, where nothing answers. */
  dnsResolver: string;
}

/** The hardening switches and limits of a sandbox. */
export interface SandboxPolicy {
  /** Resource limits. */
  limits: SandboxLimits;
  /** Network mode and resolver (from the network policy file). */
  network: SandboxNetwork;
  /**
   * Apply our seccomp allow-list (`security/seccomp-profile.json`). When false, Docker's built-in
   * default profile applies instead: the sandbox is never `seccomp=unconfined`.
   */
  seccomp: boolean;
  /** AppArmor profile name; applied only when the host has AppArmor. `null`: none requested. */
  appArmorProfile: string | null;
  /** Set `no-new-privileges` (setuid binaries and file capabilities grant nothing). */
  noNewPrivileges: boolean;
  /** Mount the image's root file system read-only. */
  readOnlyRootfs: boolean;
  /** Docker runtime (e.g. `runsc` for gVisor); `null`: the daemon's default (runc). */
  runtime: string | null;
  /**
   * The host uids (each also the gid) sandboxes run as, one per sandbox: no two live sandboxes
   * share one, so a process that escapes one sandbox cannot signal another's. The range must name
   * no host account (the gateway checks the host's account files at start).
   */
  uidRange: { first: number; count: number };
}

/** Everything {@link buildContainerSpec} needs to describe one sandbox. */
export interface SandboxSpecInput {
  /** The policy to enforce. */
  policy: SandboxPolicy;
  /** Kernel image reference. */
  image: string;
  /** The kernel this sandbox serves (used in error messages). */
  kernelId: string;
  /**
   * Name of the sandbox's own Docker volume (a capped tmpfs, see {@link kernelVolumeOptions})
   * mounted at {@link KERNEL_DIR_IN_CONTAINER}. Never a host directory.
   */
  kernelVolume: string;
  /**
   * The kernel's connection file (JSON text). It travels in the container's environment
   * ({@link CONNECTION_ENV}); the launcher writes it inside the sandbox, so no host path is involved.
   */
  connectionFile: string;
  /** Container labels (ownership, kernel id); used for clean-up and panic. */
  labels: Record<string, string>;
  /** Kernel environment, already allow-listed by the caller. */
  env: Record<string, string>;
  /** This sandbox's own uid (and gid), from the policy's {@link SandboxPolicy.uidRange}. */
  uid: number;
  /** Container name. */
  name: string;
  /** Whether the host kernel has AppArmor (see `security/apparmor.ts`). */
  hostHasAppArmor: boolean;
  /** Egress through the gateway's proxy (`security/egress-policy.ts`); absent: no egress at all. */
  egress?: SandboxEgress;
}

/**
 * What a sandbox gets when egress is on: a relay beside the kernel (127.0.0.1:{@link
 * EGRESS_RELAY_PORT} → the proxy's unix socket in the kernel directory), proxy settings for pip
 * and other clients, and an exec-able /pkgs tmpfs that pip installs into. The network stays `none`.
 */
export interface SandboxEgress {
  /** Size of the /pkgs tmpfs in bytes (its pages count against the memory limit). */
  pipSizeBytes: number;
}

/** The port the in-sandbox relay listens on, on the sandbox's own loopback. */
export const EGRESS_RELAY_PORT = 3128;

/** The egress proxy's socket in the kernel directory (the gateway listens, the relay connects). */
export const EGRESS_SOCKET_NAME = 'egress.sock';

/** Where pip installs (PYTHONUSERBASE): a per-sandbox tmpfs that allows exec (compiled wheels). */
const PKGS_DIR = '/pkgs';

/** The egress relay shipped in the kernel image (kernel-image/files/), started by the launcher. */
const EGRESS_RELAY_PATH = '/usr/local/lib/aido/egress-relay.py';

/** Where the per-kernel directory (connection file, ipc sockets) appears inside the sandbox. */
export const KERNEL_DIR_IN_CONTAINER = '/run/kernel';

/** Size of /dev/shm in every sandbox: enough for POSIX semaphores, not a place to store data. */
export const SHM_SIZE_BYTES = 4 * 1024 * 1024;

/** The paths Docker makes read-only by default; a ReadonlyPaths list replaces them, so it repeats them. */
const DOCKER_DEFAULT_READONLY_PATHS: readonly string[] = Object.freeze([
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
]);

/**
 * The default sandbox uid and gid: high, so that it names no account on a usual host (the gateway
 * refuses to start if it does), and below 2^31 for tools that read uids as signed.
 */
export const DEFAULT_SANDBOX_UID = 2_000_000_000;

/** How many uids the sandbox range holds (as many sandboxes can live at once). */
export const SANDBOX_UID_COUNT = 65536;

/** Size cap of the kernel directory (connection file, ipc sockets, env hand-over files). */
export const KERNEL_DIR_SIZE_BYTES = 1024 * 1024;

/** Inode cap of the kernel directory: the few files it holds, with room to spare. */
export const KERNEL_DIR_INODES = 64;

/** The environment variable that carries the connection file into the sandbox. */
export const CONNECTION_ENV = 'AIDO_CONNECTION';

/** The sandbox's working directory (a tmpfs). */
export const WORKSPACE_DIR = '/workspace';

/** The flag after {@link KERNEL_COMMAND} that makes the launcher start the egress relay first. */
const EGRESS_LAUNCH_FLAG = '--egress';

/**
 * Fixed launcher: moves the connection file from the environment into the kernel directory (never
 * following a planted name), drops it from the environment, and execs ipykernel on it. Given
 * {@link EGRESS_LAUNCH_FLAG}, it first runs the egress relay (without the connection in its
 * environment), which returns once it listens and leaves its server running detached, so the
 * relay is up before the kernel is; a relay that cannot start fails the sandbox's start.
 */
const LAUNCHER = [
  'import os, sys',
  `data = os.environ.pop('${CONNECTION_ENV}').encode()`,
  `fd = os.open('${KERNEL_DIR_IN_CONTAINER}/connection.json', os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)`,
  'view = memoryview(data)',
  'while view:',
  '    view = view[os.write(fd, view):]',
  'os.close(fd)',
  `if sys.argv[1:] == ['${EGRESS_LAUNCH_FLAG}']:`,
  `    relay = os.posix_spawnp('python3', ['python3', '-I', '${EGRESS_RELAY_PATH}', '--port', '${EGRESS_RELAY_PORT}', '--socket', '${KERNEL_DIR_IN_CONTAINER}/${EGRESS_SOCKET_NAME}'], os.environ)`,
  '    if os.waitpid(relay, 0)[1] != 0:',
  "        sys.exit('the egress relay did not start')",
  `os.execvp('python3', ['python3', '-m', 'ipykernel_launcher', '-f', '${KERNEL_DIR_IN_CONTAINER}/connection.json'])`,
].join('\n');

/** The kernel command: the launcher, then ipykernel reading the connection file. */
export const KERNEL_COMMAND: readonly string[] = ['python3', '-c', LAUNCHER];

/** The kernel command with egress on: the same launcher, told to start the relay first. */
const EGRESS_KERNEL_COMMAND: readonly string[] = [...KERNEL_COMMAND, EGRESS_LAUNCH_FLAG];

/** The ipc socket names ipykernel binds in the kernel directory (`<ip>-<port>`, ip `k`). */
export const KERNEL_SOCKETS: readonly string[] = Object.freeze(['k-1', 'k-2', 'k-3', 'k-4', 'k-5']);

/**
 * The container's health check: one cheap stat by a fixed binary from the read-only root, every
 * minute; it needs nothing the kernel could plant (the kernel directory is noexec) and the gateway
 * acts on none of its results, so a kernel gains nothing by failing it.
 */
export const HEALTHCHECK = Object.freeze({
  Test: ['CMD', '/usr/bin/test', '-S', `${KERNEL_DIR_IN_CONTAINER}/k-1`],
  Interval: 60e9,
  Timeout: 5e9,
  StartPeriod: 60e9,
  Retries: 3,
});

/**
 * The container's log on the host: Docker's `local` driver, rotated at
 * {@link KERNEL_LOG_MAX_SIZE_BYTES} and kept to {@link KERNEL_LOG_MAX_FILES} files, so a kernel
 * that writes to its original stdout or stderr (fd 1 and 2 of the container, which ipykernel's
 * capture does not hide from it) can put at most their product on the host disk. Not `none`:
 * `docker logs` stays the one way to see why a kernel died before it answered (the gateway itself
 * never reads container logs). Uncompressed, so that a flood costs dockerd no gzip work.
 */
export const KERNEL_LOG_MAX_SIZE_BYTES = 1024 * 1024;

/** How many log files (the live one included) Docker keeps per sandbox. */
export const KERNEL_LOG_MAX_FILES = 2;

const MiB = 1024 * 1024;

/** The default limits (DESIGN.md "Sandbox controls"). */
export const DEFAULT_LIMITS: SandboxLimits = Object.freeze({
  memoryBytes: 512 * MiB,
  cpus: 0.5,
  cpuShares: 256,
  pids: 50,
  nofile: 1024,
  tmpSizeBytes: 64 * MiB,
  workspaceSizeBytes: 100 * MiB,
});

/** What the committed network-policy.json says (a unit test checks that they agree). */
export const DEFAULT_NETWORK: SandboxNetwork = Object.freeze({
  mode: 'none',
  dnsResolver: '127.0.0.1',
});

/** The default policy: every control on, our seccomp profile, AppArmor where the host has it. */
export const DEFAULT_POLICY: SandboxPolicy = Object.freeze({
  limits: DEFAULT_LIMITS,
  network: DEFAULT_NETWORK,
  seccomp: true,
  appArmorProfile: 'aido-kernel',
  noNewPrivileges: true,
  readOnlyRootfs: true,
  runtime: null,
  uidRange: { first: DEFAULT_SANDBOX_UID, count: SANDBOX_UID_COUNT },
});

/** A policy or spec input that cannot be turned into a safe container. */
export class SandboxPolicyError extends Error {
  override readonly name = 'SandboxPolicyError';
  /** Stable code for the gateway to map. */
  readonly code = 'INVALID_SANDBOX_POLICY';
}

/** Docker refuses memory limits below 6 MiB. */
const DOCKER_MIN_MEMORY = 6 * MiB;
/** Docker's container (and volume) name grammar. */
const CONTAINER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
/** A POSIX-portable environment name. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** AppArmor profile names we accept (no spaces, quotes or option separators). */
export const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function fail(input: SandboxSpecInput, problems: string[]): never {
  const who = input.kernelId || '(no id)';
  throw new SandboxPolicyError(`invalid sandbox policy for kernel ${who}: ${problems.join('; ')}`);
}

/**
 * Checks limits and returns every problem found (empty: valid). Integral byte counts, positive
 * values, and room in the memory limit for both tmpfs mounts (their pages are charged to it).
 */
export function validateLimits(limits: SandboxLimits): string[] {
  const problems: string[] = [];
  const positiveInt = (key: keyof SandboxLimits): void => {
    const v = limits[key];
    if (!Number.isSafeInteger(v) || v <= 0)
      problems.push(`${key} must be a positive integer (got ${v})`);
  };
  positiveInt('memoryBytes');
  positiveInt('pids');
  positiveInt('nofile');
  positiveInt('tmpSizeBytes');
  positiveInt('workspaceSizeBytes');
  if (!Number.isFinite(limits.cpus) || limits.cpus <= 0) {
    problems.push(`cpus must be a positive number (got ${limits.cpus})`);
  } else if (Math.round(limits.cpus * 1e9) < 1e7) {
    problems.push(`cpus must be at least 0.01 (got ${limits.cpus})`);
  }
  // The kernel's range for cpu.shares.
  if (!Number.isInteger(limits.cpuShares) || limits.cpuShares < 2 || limits.cpuShares > 262144)
    problems.push(`cpuShares must be an integer in 2..262144 (got ${limits.cpuShares})`);
  if (problems.length > 0) return problems;
  if (limits.memoryBytes < DOCKER_MIN_MEMORY) {
    problems.push(
      `memoryBytes must be at least ${DOCKER_MIN_MEMORY} (Docker's minimum; got ${limits.memoryBytes})`,
    );
  }
  const tmpfsTotal =
    limits.tmpSizeBytes + limits.workspaceSizeBytes + SHM_SIZE_BYTES + KERNEL_DIR_SIZE_BYTES;
  if (tmpfsTotal >= limits.memoryBytes) {
    problems.push(
      `tmpSizeBytes + workspaceSizeBytes + /dev/shm + the kernel directory (${tmpfsTotal}) must be below memoryBytes (${limits.memoryBytes}): tmpfs pages count against the memory limit`,
    );
  }
  return problems;
}

/**
 * Checks the egress settings against the limits and returns every problem found (empty: valid):
 * /pkgs is one more tmpfs whose pages count against the memory limit.
 */
export function validateEgress(limits: SandboxLimits, egress: SandboxEgress): string[] {
  const { pipSizeBytes } = egress;
  if (!Number.isSafeInteger(pipSizeBytes) || pipSizeBytes <= 0)
    return [`pipSizeBytes must be a positive integer (got ${pipSizeBytes})`];
  const tmpfs =
    limits.tmpSizeBytes +
    limits.workspaceSizeBytes +
    SHM_SIZE_BYTES +
    KERNEL_DIR_SIZE_BYTES +
    pipSizeBytes;
  if (tmpfs < limits.memoryBytes) return [];
  return [
    `/tmp + /workspace + /dev/shm + the kernel directory + /pkgs (${tmpfs}) must be below the memory limit (${limits.memoryBytes}): tmpfs pages count against it`,
  ];
}

/** Largest uid/gid accepted (below 2^31: some tools read ids as signed). */
const MAX_ID = 2 ** 31 - 2;

function isUnprivilegedId(id: number): boolean {
  return Number.isSafeInteger(id) && id > 0 && id <= MAX_ID;
}

/**
 * The driver options of a sandbox's kernel-directory volume (Docker's `local` driver, type tmpfs):
 * capped in bytes and inodes, noexec, nosuid, nodev; its root belongs to root with the sticky bit,
 * so the kernel can create its sockets and files there but never rename or remove what root owns
 * (the sockets once the gateway has taken them over, the env files the gateway writes).
 */
export function kernelVolumeOptions(): Record<string, string> {
  return {
    type: 'tmpfs',
    device: 'tmpfs',
    o: `size=${KERNEL_DIR_SIZE_BYTES},nr_inodes=${KERNEL_DIR_INODES},mode=1777,uid=0,gid=0,noexec,nosuid,nodev`,
  };
}

function validateInput(input: SandboxSpecInput): void {
  const problems = validateLimits(input.policy.limits);
  if (input.kernelId.length === 0) problems.push('kernelId must not be empty');
  if (input.image.length === 0) problems.push('image must not be empty');
  if (!CONTAINER_NAME.test(input.name))
    problems.push(`name ${JSON.stringify(input.name)} is not a valid container name`);
  if (!CONTAINER_NAME.test(input.kernelVolume))
    problems.push(`kernelVolume ${JSON.stringify(input.kernelVolume)} is not a valid volume name`);
  const { first, count } = input.policy.uidRange;
  if (
    !isUnprivilegedId(first) ||
    !Number.isSafeInteger(count) ||
    count < 1 ||
    first + count - 1 > MAX_ID
  )
    problems.push(`uidRange must lie in 1..${MAX_ID} (got ${first} + ${count})`);
  else if (!Number.isSafeInteger(input.uid) || input.uid < first || input.uid >= first + count)
    problems.push(
      `uid must be in the policy's range ${first}..${first + count - 1} (got ${input.uid})`,
    );
  if (CONNECTION_ENV in input.env) problems.push(`env must not set ${CONNECTION_ENV}`);
  for (const [key, value] of Object.entries(input.env)) {
    if (!ENV_NAME.test(key))
      problems.push(`env name ${JSON.stringify(key)} is not a valid variable name`);
    if (value.includes('\0')) problems.push(`env ${key} contains a NUL byte`);
  }
  const profile = input.policy.appArmorProfile;
  if (profile !== null && !PROFILE_NAME.test(profile)) {
    problems.push(`appArmorProfile ${JSON.stringify(profile)} is not a valid profile name`);
  }
  if (input.policy.runtime?.length === 0) problems.push('runtime must be null or a runtime name');
  if (input.egress) problems.push(...validateEgress(input.policy.limits, input.egress));
  if (problems.length > 0) fail(input, problems);
}

/**
 * Turns a sandbox policy into the body of Docker's `POST /containers/create`. Pure: no I/O, the
 * same input always gives the same output (the seccomp profile is generated from code).
 *
 * @throws {@link SandboxPolicyError} naming every invalid limit or input.
 */
export function buildContainerSpec(input: SandboxSpecInput): ContainerCreateOptions {
  validateInput(input);
  const { policy } = input;
  const { limits } = policy;

  const securityOpt: string[] = [];
  if (policy.noNewPrivileges) securityOpt.push('no-new-privileges:true');
  if (policy.seccomp) securityOpt.push(`seccomp=${seccompProfileJson()}`);
  if (input.hostHasAppArmor && policy.appArmorProfile !== null) {
    securityOpt.push(`apparmor=${policy.appArmorProfile}`);
  }

  // CgroupnsMode is accepted by the Engine API (1.41+) but missing from @types/dockerode.
  const hostConfig: HostConfig & { CgroupnsMode: 'private' } = {
    NetworkMode: policy.network.mode,
    ReadonlyRootfs: policy.readOnlyRootfs,
    CapDrop: ['ALL'],
    SecurityOpt: securityOpt,
    Memory: limits.memoryBytes,
    // Equal to Memory: no swap on top of the limit.
    MemorySwap: limits.memoryBytes,
    NanoCpus: Math.round(limits.cpus * 1e9),
    CpuShares: limits.cpuShares,
    PidsLimit: limits.pids,
    Ulimits: [{ Name: 'nofile', Soft: limits.nofile, Hard: limits.nofile }],
    Tmpfs: {
      '/tmp': `rw,noexec,nosuid,nodev,size=${limits.tmpSizeBytes},mode=1777`,
      // StorageOpt.size is refused on overlay2/ext4, so /workspace is a tmpfs; its pages are
      // charged to the memory limit, which validateLimits accounts for. Docker adds noexec to
      // every tmpfs that does not say `exec` (read back from /proc/mounts): it is written out here
      // so that the spec says what the sandbox gets.
      [WORKSPACE_DIR]: `rw,noexec,nosuid,nodev,size=${limits.workspaceSizeBytes},uid=${input.uid},gid=${input.uid},mode=0700`,
    },
    // The kernel directory is the sandbox's own tmpfs volume (kernelVolumeOptions), never a host
    // directory; NoCopy keeps Docker from copying the image's /run/kernel into it.
    Mounts: [
      {
        Type: 'volume',
        Source: input.kernelVolume,
        Target: KERNEL_DIR_IN_CONTAINER,
        ReadOnly: false,
        // @types/dockerode marks Labels and DriverConfig required; the Engine API does not.
        VolumeOptions: { NoCopy: true } as NonNullable<MountSettings['VolumeOptions']>,
      },
    ],
    Init: true,
    IpcMode: 'private',
    // /dev/shm stays (POSIX semaphores: Python's multiprocessing needs it) but small; Docker
    // mounts it nosuid,nodev,noexec. Its pages count against the memory limit (validateLimits).
    ShmSize: SHM_SIZE_BYTES,
    // Docker's default read-only paths, plus /dev/mqueue: creating a POSIX message queue there
    // would be one more writable place and a way around the seccomp profile's denial of mq_open.
    ReadonlyPaths: [...DOCKER_DEFAULT_READONLY_PATHS, '/dev/mqueue'],
    PidMode: '',
    CgroupnsMode: 'private',
    Privileged: false,
    AutoRemove: false,
    RestartPolicy: { Name: 'no' },
    // Docker copies the host's resolv.conf even with network none; point it at nothing, and "."
    // clears the search domains (an empty list would copy the host's).
    Dns: [policy.network.dnsResolver],
    DnsSearch: ['.'],
    Devices: [],
    OomKillDisable: false,
    LogConfig: {
      Type: 'local',
      Config: {
        'max-size': String(KERNEL_LOG_MAX_SIZE_BYTES),
        'max-file': String(KERNEL_LOG_MAX_FILES),
        compress: 'false',
      },
    },
  };
  if (policy.runtime !== null) hostConfig.Runtime = policy.runtime;
  let env = input.env;
  if (input.egress && hostConfig.Tmpfs) {
    // exec: a compiled wheel's .so is mmapped PROT_EXEC, which noexec refuses (SECURITY.md).
    hostConfig.Tmpfs[PKGS_DIR] =
      `rw,exec,nosuid,nodev,size=${input.egress.pipSizeBytes},uid=${input.uid},gid=${input.uid},mode=0700`;
    env = { ...input.env, ...egressEnv() };
  }

  return {
    name: input.name,
    Image: input.image,
    Labels: { ...input.labels },
    Env: [
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      `${CONNECTION_ENV}=${input.connectionFile}`,
    ],
    User: `${input.uid}:${input.uid}`,
    WorkingDir: WORKSPACE_DIR,
    Cmd: [...(input.egress ? EGRESS_KERNEL_COMMAND : KERNEL_COMMAND)],
    Healthcheck: { ...HEALTHCHECK, Test: [...HEALTHCHECK.Test] },
    NetworkDisabled: true,
    HostConfig: hostConfig,
  };
}

/**
 * The environment egress adds: every common proxy variable names the relay (pip, requests, urllib,
 * conda and curl read them), and pip installs into the user site under /pkgs (PEP 668's marker
 * guards Debian's own site-packages, which are read-only here anyway). No secrets: the relay and
 * the proxy need none, the socket's place is the credential.
 */
function egressEnv(): Record<string, string> {
  const proxy = `http://127.0.0.1:${EGRESS_RELAY_PORT}`;
  return {
    HTTP_PROXY: proxy,
    HTTPS_PROXY: proxy,
    http_proxy: proxy,
    https_proxy: proxy,
    PIP_PROXY: proxy,
    PYTHONUSERBASE: PKGS_DIR,
    PIP_USER: '1',
    PIP_BREAK_SYSTEM_PACKAGES: '1',
    PIP_NO_CACHE_DIR: '1',
    PIP_DISABLE_PIP_VERSION_CHECK: '1',
    PIP_NO_WARN_SCRIPT_LOCATION: '1',
  };
}

/**
 * Lists, in words fit for the health report, every control this policy turns off or weakens
 * against {@link DEFAULT_POLICY}. Empty when everything is on. Whether AppArmor is in force also
 * depends on the host: see `appArmorStatus` in `security/apparmor.ts`.
 */
export function describeDisabledControls(policy: SandboxPolicy): string[] {
  const off: string[] = [];
  if (!policy.seccomp) {
    off.push("seccomp: the aido allow-list is off; Docker's default profile applies instead");
  }
  if (policy.seccomp && policy.runtime !== null) {
    // gVisor serves system calls itself and ignores the OCI seccomp profile unless started with
    // --oci-seccomp (sandbox-field-notes §3); other runtimes may differ too.
    off.push(
      `seccomp: runtime ${policy.runtime} may not enforce the profile (gVisor needs --oci-seccomp)`,
    );
  }
  if (policy.appArmorProfile === null) off.push('apparmor: no profile requested');
  if (!policy.noNewPrivileges)
    off.push('no-new-privileges: off; setuid binaries could raise privileges');
  if (!policy.readOnlyRootfs) off.push('read-only root file system: off; the image is writable');
  const d = DEFAULT_LIMITS;
  const l = policy.limits;
  const looser = (key: keyof SandboxLimits, what: string): void => {
    if (l[key] > d[key]) off.push(`${what}: ${l[key]} is above the default ${d[key]}`);
  };
  looser('memoryBytes', 'memory limit');
  looser('cpus', 'CPU limit');
  looser('cpuShares', 'CPU weight');
  looser('pids', 'pids limit');
  looser('nofile', 'open files limit');
  looser('tmpSizeBytes', '/tmp size');
  looser('workspaceSizeBytes', '/workspace size');
  return off;
}
