/**
 * The container runtime as the rest of the gateway sees it: a narrow interface, so that the Docker
 * backend (ipc over a bind-mounted directory) can be joined later by others (Kubernetes + TCP/Curve)
 * without touching the bridge.
 */

/** ZMQ channels of a kernel. */
export type ZmqChannel = 'shell' | 'iopub' | 'stdin' | 'control' | 'hb';

/** How to reach a kernel: transport-neutral endpoints and the message-signing key. */
export interface ConnectionInfo {
  /** HMAC key (hex); fresh per sandbox. */
  key: string;
  signatureScheme: 'hmac-sha256';
  /** ZeroMQ endpoints, e.g. `ipc:///var/lib/aido-kgw/k/1a2b/k-1`. */
  endpoints: Record<ZmqChannel, string>;
}

/** Why a sandbox stopped. */
export interface SandboxExit {
  exitCode: number | null;
  oomKilled: boolean;
}

/** What a command run inside a sandbox returned. */
export interface ExecResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** One running sandbox (one container); used by exactly one kernel, never reused. */
export interface Sandbox {
  /** Container id. */
  readonly id: string;
  readonly connection: ConnectionInfo;
  /** Settles once the container has stopped. */
  readonly exited: Promise<SandboxExit>;
  /** Sends a signal to the container's init (SIGINT reaches the kernel's process group). */
  signal(signal: 'SIGINT' | 'SIGKILL'): Promise<void>;
  /**
   * Applies the policy's limits that start-up was allowed to exceed (the CPU quota): must run
   * before any user code can. Idempotent.
   */
  enforceLimits(): Promise<void>;
  /**
   * The host path of `name` in the kernel's private directory (/run/kernel/<name> inside), for a
   * socket the gateway listens on there. The sandbox can replace anything at that path: never
   * read, follow or connect to it.
   */
  hostPath(name: string): string;
  /** Writes a read-only file for the kernel into its private directory (/run/kernel/<name>). */
  putFile(name: string, content: string): Promise<void>;
  /**
   * Runs `argv` inside the sandbox as the sandbox user (uid 1000) in /workspace, under the
   * container's own limits (every exec process counts against the pids limit), feeding `stdin`
   * and collecting stdout and stderr as raw bytes.
   */
  exec(argv: string[], stdin?: Buffer): Promise<ExecResult>;
  /** Kills and removes the container and its directory. Idempotent. */
  destroy(): Promise<void>;
}

/** A labelled container as the runtime reports it. */
export interface SandboxInfo {
  containerId: string;
  kernelId: string | null;
  created: string;
  state: string;
  limits: Record<string, unknown>;
  securityOpt: string[];
  runtime: string;
}

/** A running sandbox that a restarted gateway can take over, with what it knows of its kernel. */
export interface AdoptableSandbox {
  sandbox: Sandbox;
  kernelId: string;
  /** The environment the sandbox was given (unfiltered; the caller applies its allow-list). */
  env: Record<string, string>;
}

/** Creates and tracks sandboxes. */
export interface KernelRuntime {
  /**
   * Creates and starts a sandbox for `kernelId` (null: a warm-pool sandbox not yet bound to a
   * kernel) with the given (already allow-listed) env.
   */
  createSandbox(kernelId: string | null, env: Record<string, string>): Promise<Sandbox>;
  /**
   * Removes labelled containers and directories of this state dir that are not in `keep`.
   * With `minAgeMs`, only those older than that (so a sandbox being created is not taken).
   */
  reapOrphans(keep: ReadonlySet<string>, opts?: { minAgeMs?: number }): Promise<number>;
  /** Records that a (pooled) sandbox now serves `kernelId`, for listings. */
  bind(containerId: string, kernelId: string): void;
  /** Removes one labelled container (and its directory) by id. */
  removeContainer(containerId: string): Promise<void>;
  /** {@link Sandbox.exec} in the running sandbox `containerId` (callers that hold only the id). */
  exec(containerId: string, argv: string[], stdin?: Buffer): Promise<ExecResult>;
  /** Running sandboxes of this state dir bound to a kernel (after a gateway restart). */
  adoptable(): Promise<AdoptableSandbox[]>;
  /** Every labelled container of this state dir. */
  list(): Promise<SandboxInfo[]>;
  /** Whether the container engine answers. */
  ping(): Promise<boolean>;
}
