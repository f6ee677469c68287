/**
 * The sandbox backend as the rest of the gateway sees it: a narrow, transport-neutral interface.
 * Everything above it (kernel sessions, the bridge, the deadline ladder, the APIs) speaks of opaque
 * sandbox ids, ZeroMQ endpoint URLs, neutral limits and controls, and exits with a reason; what a
 * backend is made of (Docker containers and ipc sockets in a per-sandbox tmpfs volume today, pods
 * and `tcp://` endpoints on Kubernetes per docs/scaling.md) stays below it. A backend is given to
 * `createGateway` (gateway/server.ts) as `deps.runtime`.
 */

import type { Writable } from 'node:stream';

/** ZMQ channels of a kernel. */
export type ZmqChannel = 'shell' | 'iopub' | 'stdin' | 'control' | 'hb';

/** How to reach a kernel: transport-neutral endpoints and the message-signing key. */
export interface ConnectionInfo {
  /** HMAC key (hex); fresh per sandbox. */
  key: string;
  signatureScheme: 'hmac-sha256';
  /** ZeroMQ endpoints, e.g. `ipc:///var/lib/aido-kgw/k/1a2b/k-1` or `tcp://10.1.2.3:50001`. */
  endpoints: Record<ZmqChannel, string>;
}

/** Why a sandbox stopped. */
export interface SandboxExit {
  exitCode: number | null;
  oomKilled: boolean;
  /**
   * The backend's own words when the sandbox ended by something other than its process exiting
   * (a pod evicted, preempted or lost with its node); absent when the exit code says it all.
   */
  reason?: string;
}

/** A sandbox's exit in words, for errors and logs: `OOM-killed`, `exit code 1`, `evicted`… */
export function describeSandboxExit(exit: SandboxExit): string {
  if (exit.oomKilled) return 'OOM-killed';
  const code = `exit code ${exit.exitCode ?? 'unknown'}`;
  return exit.reason === undefined ? code : `${exit.reason}, ${code}`;
}

/** What a command run inside a sandbox returned. */
export interface ExecResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** Bounds of one command run inside a sandbox: its output comes from a place the kernel controls. */
export interface ExecLimits {
  /** Bytes of stdout plus stderr read at most; past it the process is killed and the exec fails. */
  maxOutputBytes: number;
  /** Wall time (ms) the process may take, output included; past it it is killed and the exec fails. */
  timeoutMs: number;
  /** Time (ms) without output (or with the sink not draining) after which the same happens. */
  idleTimeoutMs?: number;
}

/** How a command runs inside a sandbox beyond its argv and stdin. */
export interface ExecOptions {
  /** Defaults: 16 MiB and 30 s. */
  limits?: Partial<ExecLimits>;
  /**
   * Where stdout goes as it arrives, with backpressure (the result's stdout is then empty). The
   * caller ends it; an error or close of it kills the process and fails the exec.
   */
  stdout?: Writable;
}

/** One running sandbox (a container, a pod); used by exactly one kernel, never reused. */
export interface Sandbox {
  /** The backend's opaque id for it (a container id on Docker, a pod name on Kubernetes). */
  readonly id: string;
  readonly connection: ConnectionInfo;
  /** The uid (also the gid) the sandbox's processes run as; null where the runtime cannot say. */
  readonly uid: number | null;
  /** Settles once the sandbox has stopped. */
  readonly exited: Promise<SandboxExit>;
  /**
   * Kills every process of the sandbox now (its `exited` then settles); the sandbox stays until
   * {@link destroy}. Interrupts are not signals: the kernelspec's `interrupt_mode` is `message`.
   */
  kill(): Promise<void>;
  /**
   * Applies the policy's limits that start-up was allowed to exceed (the CPU quota) and closes
   * what start-up left open to the kernel (the Docker backend takes the kernel's ipc sockets over,
   * so that the kernel can no longer replace them): must run after the kernel answered and before
   * any user code can. Idempotent.
   */
  enforceLimits(): Promise<void>;
  /**
   * Creates a file the kernel can read but not change in its private directory
   * (/run/kernel/<name>). Fails if the name exists: nothing the kernel planted is followed.
   */
  putFile(name: string, content: string): Promise<void>;
  /**
   * Where the gateway reaches the file `name` of the kernel's private directory on its own side
   * (e.g. to bind a unix socket the kernel connects to at /run/kernel/<name>); null where the
   * runtime has no local directory (a remote backend). The kernel can write that directory: create
   * there only with exclusive, non-following calls (bind(2) is one).
   */
  hostPath(name: string): string | null;
  /**
   * Runs `argv` inside the sandbox as the sandbox user (its unmapped uid) in /workspace, under the
   * sandbox's own limits (every exec process counts against the pids limit), feeding `stdin`
   * and collecting stdout and stderr as raw bytes, within `opts.limits` (see {@link ExecLimits}).
   */
  exec(argv: string[], stdin?: Buffer, opts?: ExecOptions): Promise<ExecResult>;
  /** Kills and removes the sandbox and what the backend keeps for it. Idempotent. */
  destroy(): Promise<void>;
}

/**
 * A sandbox's limits as its backend reads them back from the live sandbox (not from the policy):
 * null where the backend sets none or cannot say.
 */
export interface SandboxLimits {
  memoryBytes: number | null;
  /** Memory plus swap; equal to `memoryBytes` when the sandbox has no swap. */
  memoryAndSwapBytes: number | null;
  cpus: number | null;
  /** CPU weight under contention (Docker's CpuShares; null: the engine's default). */
  cpuShares: number | null;
  pids: number | null;
  openFiles: { soft: number; hard: number } | null;
  readOnlyRootfs: boolean;
  /** The sandbox's network (`none` for kernels). */
  network: string;
  capabilitiesDropped: string[];
  /** Memory-backed scratch mounts: path to mount options (e.g. `rw,noexec,size=…`). */
  scratch: Record<string, string>;
}

/** The kernel-hardening controls in force on a live sandbox, read back from it. */
export interface SandboxControls {
  /** `aido`: our allow-list; `default`: the runtime's default profile; `none`: unconfined. */
  seccomp: 'aido' | 'default' | 'none';
  noNewPrivileges: boolean;
  /** The AppArmor profile applied, or null. */
  appArmor: string | null;
}

/** A labelled sandbox as the runtime reports it. */
export interface SandboxInfo {
  sandboxId: string;
  kernelId: string | null;
  created: string;
  state: string;
  /** The uid:gid its processes run as. */
  user: string;
  limits: SandboxLimits;
  controls: SandboxControls;
  /** The OCI runtime (or RuntimeClass) that runs it, e.g. `runc`, `runsc`. */
  runtime: string;
}

/**
 * A running sandbox that a restarted gateway can take over, with what the gateway recorded of its
 * kernel (gateway-owned state, never read back from the sandbox).
 */
export interface AdoptableSandbox {
  sandbox: Sandbox;
  kernelId: string;
  /** The environment the kernel was given (the caller applies its allow-list again). */
  env: Record<string, string>;
}

/** What a restarted gateway found: sandboxes to adopt, and those it cannot verify (with why). */
export interface AdoptionScan {
  adoptable: AdoptableSandbox[];
  /** Each is left to the reaper, which removes it alone. */
  refused: { sandboxId: string; reason: string }[];
}

/** Creates and tracks sandboxes. */
export interface KernelRuntime {
  /**
   * Creates and starts a sandbox for `kernelId` (null: a warm-pool sandbox not yet bound to a
   * kernel) with the given (already allow-listed) env.
   */
  createSandbox(kernelId: string | null, env: Record<string, string>): Promise<Sandbox>;
  /**
   * Removes labelled sandboxes of this state dir (and what the backend keeps for them) that are
   * not in `keep`. With `minAgeMs`, only those older than that (so one being created is not taken).
   */
  reapOrphans(keep: ReadonlySet<string>, opts?: { minAgeMs?: number }): Promise<number>;
  /**
   * Records, in gateway-owned state, that a (pooled) sandbox now serves `kernelId` with `env`: a
   * gateway restarted later adopts it from that record.
   */
  bind(sandboxId: string, kernelId: string, env: Record<string, string>): Promise<void>;
  /** Removes one labelled sandbox (and what the backend keeps for it) by id. */
  removeSandbox(sandboxId: string): Promise<void>;
  /** {@link Sandbox.exec} in the running sandbox `sandboxId` (callers that hold only the id). */
  exec(sandboxId: string, argv: string[], stdin?: Buffer, opts?: ExecOptions): Promise<ExecResult>;
  /**
   * Running sandboxes of this state dir bound to a kernel (after a gateway restart), each checked
   * on its own: one that cannot be verified is refused, never a reason to give up on the others.
   */
  adoptable(): Promise<AdoptionScan>;
  /** Every labelled sandbox of this state dir. */
  list(): Promise<SandboxInfo[]>;
  /** Whether the backend (Docker Engine, the API server) answers. */
  ping(): Promise<boolean>;
}

/**
 * What the health report asks of the engine that runs the sandboxes, whichever backend that is
 * (Docker here; a Kubernetes backend answers with the API server's version and the image the
 * nodes pull). Keeps the engine's client library below this seam.
 */
export interface EngineInfo {
  /** The engine's version, or null when it does not answer. */
  version(): Promise<string | null>;
  /** The kernel image `ref`, or null when the engine does not have it. */
  image(ref: string): Promise<EngineImage | null>;
}

/** A kernel image as the container engine holds it. */
export interface EngineImage {
  /** The engine's id for the image. */
  id: string;
  /** The content hash kernel-image/build.sh labels the image with, when present. */
  hash: string | null;
}
