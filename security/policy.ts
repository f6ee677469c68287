/**
 * The sandbox policy as data, and the one pure function that turns it into Docker's container
 * create options. Every control in DESIGN.md "Sandbox controls" is set here and nowhere else; the
 * golden test (`test/unit/security/policy.test.ts`) pins the result field by field.
 *
 * Field meanings: Docker Engine API `POST /containers/create` (`ContainerConfig` + `HostConfig`);
 * what was verified on this host: `reference/sandbox-field-notes.md` §2.6.
 *
 * @packageDocumentation
 */
import type { ContainerCreateOptions, HostConfig } from 'dockerode';
import { seccompProfileJson } from './seccomp.js';

/** Resource limits of one sandbox. */
export interface SandboxLimits {
  /** Memory limit in bytes; swap is disabled (MemorySwap = Memory). tmpfs pages count against it. */
  memoryBytes: number;
  /** CPU cores (fractional), enforced as CFS quota (`NanoCpus`). */
  cpus: number;
  /** Processes and threads in the container (`pids.max`). */
  pids: number;
  /** Open files per process (`RLIMIT_NOFILE`, soft = hard). */
  nofile: number;
  /** Size of the `/tmp` tmpfs in bytes. */
  tmpSizeBytes: number;
  /** Size of the `/workspace` tmpfs in bytes. */
  workspaceSizeBytes: number;
}

/** The hardening switches and limits of a sandbox. */
export interface SandboxPolicy {
  /** Resource limits. */
  limits: SandboxLimits;
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
}

/** Everything {@link buildContainerSpec} needs to describe one sandbox. */
export interface SandboxSpecInput {
  /** The policy to enforce. */
  policy: SandboxPolicy;
  /** Kernel image reference. */
  image: string;
  /** The kernel this sandbox serves (used in error messages). */
  kernelId: string;
  /** Absolute host directory bind-mounted at {@link KERNEL_DIR_IN_CONTAINER}. */
  kernelDir: string;
  /** Container labels (ownership, kernel id); used for clean-up and panic. */
  labels: Record<string, string>;
  /** Kernel environment, already allow-listed by the caller. */
  env: Record<string, string>;
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
export const PKGS_DIR = '/pkgs';

/** The relay and launcher shipped in the kernel image (kernel-image/files/). */
export const EGRESS_RELAY_PATH = '/usr/local/lib/aido/egress-relay.py';

/** Where the per-kernel directory (connection file, ipc sockets) appears inside the sandbox. */
export const KERNEL_DIR_IN_CONTAINER = '/run/kernel';

/** Size of /dev/shm in every sandbox: enough for POSIX semaphores, not a place to store data. */
export const SHM_SIZE_BYTES = 4 * 1024 * 1024;

/** The paths Docker makes read-only by default; a ReadonlyPaths list replaces them, so it repeats them. */
export const DOCKER_DEFAULT_READONLY_PATHS: readonly string[] = Object.freeze([
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
]);

/** The unprivileged user the kernel runs as (`sandbox` in the image). */
export const SANDBOX_USER = '1000:1000';

/** The sandbox's working directory (a tmpfs). */
export const WORKSPACE_DIR = '/workspace';

/** The kernel command: ipykernel reading the connection file the gateway wrote. */
export const KERNEL_COMMAND: readonly string[] = [
  'python3',
  '-m',
  'ipykernel_launcher',
  '-f',
  `${KERNEL_DIR_IN_CONTAINER}/connection.json`,
];

const MiB = 1024 * 1024;

/** The default limits (DESIGN.md "Sandbox controls"). */
export const DEFAULT_LIMITS: SandboxLimits = Object.freeze({
  memoryBytes: 512 * MiB,
  cpus: 0.5,
  pids: 50,
  nofile: 1024,
  tmpSizeBytes: 64 * MiB,
  workspaceSizeBytes: 100 * MiB,
});

/** The default policy: every control on, our seccomp profile, AppArmor where the host has it. */
export const DEFAULT_POLICY: SandboxPolicy = Object.freeze({
  limits: DEFAULT_LIMITS,
  seccomp: true,
  appArmorProfile: 'aido-kernel',
  noNewPrivileges: true,
  readOnlyRootfs: true,
  runtime: null,
});

/** A policy or spec input that cannot be turned into a safe container. */
export class SandboxPolicyError extends Error {
  override readonly name = 'SandboxPolicyError';
  /** Stable code for the gateway to map. */
  readonly code = 'INVALID_SANDBOX_POLICY';
}

/** Docker refuses memory limits below 6 MiB. */
const DOCKER_MIN_MEMORY = 6 * MiB;
/** Docker's container name grammar. */
const CONTAINER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
/** A POSIX-portable environment name. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** AppArmor profile names we accept (no spaces, quotes or option separators). */
const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

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
  if (problems.length > 0) return problems;
  if (limits.memoryBytes < DOCKER_MIN_MEMORY) {
    problems.push(
      `memoryBytes must be at least ${DOCKER_MIN_MEMORY} (Docker's minimum; got ${limits.memoryBytes})`,
    );
  }
  const tmpfsTotal = limits.tmpSizeBytes + limits.workspaceSizeBytes + SHM_SIZE_BYTES;
  if (tmpfsTotal >= limits.memoryBytes) {
    problems.push(
      `tmpSizeBytes + workspaceSizeBytes + /dev/shm (${tmpfsTotal}) must be below memoryBytes (${limits.memoryBytes}): tmpfs pages count against the memory limit`,
    );
  }
  return problems;
}

function validateInput(input: SandboxSpecInput): void {
  const problems = validateLimits(input.policy.limits);
  if (input.kernelId.length === 0) problems.push('kernelId must not be empty');
  if (input.image.length === 0) problems.push('image must not be empty');
  if (!CONTAINER_NAME.test(input.name))
    problems.push(`name ${JSON.stringify(input.name)} is not a valid container name`);
  // The bind string is `src:dst:mode`; a colon or a relative path would change its meaning.
  if (
    !input.kernelDir.startsWith('/') ||
    input.kernelDir.includes(':') ||
    input.kernelDir.includes('\0')
  ) {
    problems.push(
      `kernelDir must be an absolute path without ':' (got ${JSON.stringify(input.kernelDir)})`,
    );
  }
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
  if (input.egress) {
    const { pipSizeBytes } = input.egress;
    const tmpfs =
      input.policy.limits.tmpSizeBytes +
      input.policy.limits.workspaceSizeBytes +
      SHM_SIZE_BYTES +
      pipSizeBytes;
    if (!Number.isSafeInteger(pipSizeBytes) || pipSizeBytes <= 0)
      problems.push(`egress.pipSizeBytes must be a positive integer (got ${pipSizeBytes})`);
    else if (tmpfs >= input.policy.limits.memoryBytes)
      problems.push(
        `tmpfs mounts with /pkgs (${tmpfs}) must be below memoryBytes (${input.policy.limits.memoryBytes})`,
      );
  }
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
    NetworkMode: 'none',
    ReadonlyRootfs: policy.readOnlyRootfs,
    CapDrop: ['ALL'],
    SecurityOpt: securityOpt,
    Memory: limits.memoryBytes,
    // Equal to Memory: no swap on top of the limit.
    MemorySwap: limits.memoryBytes,
    NanoCpus: Math.round(limits.cpus * 1e9),
    PidsLimit: limits.pids,
    Ulimits: [{ Name: 'nofile', Soft: limits.nofile, Hard: limits.nofile }],
    Tmpfs: {
      '/tmp': `rw,noexec,nosuid,nodev,size=${limits.tmpSizeBytes},mode=1777`,
      // StorageOpt.size is refused on overlay2/ext4, so /workspace is a tmpfs; its pages are
      // charged to the memory limit, which validateLimits accounts for. Docker adds noexec to
      // every tmpfs that does not say `exec` (read back from /proc/mounts): it is written out here
      // so that the spec says what the sandbox gets.
      [WORKSPACE_DIR]: `rw,noexec,nosuid,nodev,size=${limits.workspaceSizeBytes},uid=1000,gid=1000,mode=0700`,
    },
    Binds: [`${input.kernelDir}:${KERNEL_DIR_IN_CONTAINER}:rw`],
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
    Dns: ['127.0.0.1'],
    DnsSearch: ['.'],
    Devices: [],
    OomKillDisable: false,
  };
  if (policy.runtime !== null) hostConfig.Runtime = policy.runtime;
  let env = input.env;
  let cmd = [...KERNEL_COMMAND];
  if (input.egress && hostConfig.Tmpfs) {
    // exec: a compiled wheel's .so is mmapped PROT_EXEC, which noexec refuses (SECURITY.md).
    hostConfig.Tmpfs[PKGS_DIR] =
      `rw,exec,nosuid,nodev,size=${input.egress.pipSizeBytes},uid=1000,gid=1000,mode=0700`;
    env = { ...input.env, ...egressEnv() };
    // The relay detaches (its own session, reparented to tini) and the launcher execs the kernel.
    cmd = [
      'python3',
      '-I',
      EGRESS_RELAY_PATH,
      '--port',
      String(EGRESS_RELAY_PORT),
      '--socket',
      `${KERNEL_DIR_IN_CONTAINER}/${EGRESS_SOCKET_NAME}`,
      '--',
      ...KERNEL_COMMAND,
    ];
  }

  return {
    name: input.name,
    Image: input.image,
    Labels: { ...input.labels },
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    User: SANDBOX_USER,
    WorkingDir: WORKSPACE_DIR,
    Cmd: cmd,
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
export function egressEnv(): Record<string, string> {
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
  looser('pids', 'pids limit');
  looser('nofile', 'open files limit');
  looser('tmpSizeBytes', '/tmp size');
  looser('workspaceSizeBytes', '/workspace size');
  return off;
}
