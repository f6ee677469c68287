/**
 * The local Docker backend: one hardened container per sandbox, reached over ZeroMQ ipc sockets in
 * a per-sandbox directory that only that container mounts (at /run/kernel).
 */
import { randomBytes } from 'node:crypto';
import { chown, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import Docker from 'dockerode';
import {
  buildContainerSpec,
  KERNEL_DIR_IN_CONTAINER,
  WORKSPACE_DIR,
  type SandboxEgress,
  type SandboxPolicy,
} from '../security/policy.js';
import { GatewayError } from './errors.js';
import type {
  AdoptableSandbox,
  ConnectionInfo,
  ExecResult,
  KernelRuntime,
  Sandbox,
  SandboxExit,
  SandboxInfo,
  ZmqChannel,
} from './runtime.js';

/** Labels every sandbox carries; the state-dir label scopes ownership to one gateway. */
export const LABEL_APP = 'org.aido.kernel-gateway';
export const LABEL_STATE_DIR = 'org.aido.kernel-gateway.state-dir';
export const LABEL_KERNEL_ID = 'org.aido.kernel-gateway.kernel-id';
export const LABEL_KERNEL_DIR = 'org.aido.kernel-gateway.kernel-dir';

const SANDBOX_UID = 1000;
/** The kernel-id label of warm-pool sandboxes: the kernel they serve is decided when one is taken. */
export const POOL_KERNEL_ID = 'pool';
const PORTS: Record<ZmqChannel, number> = { shell: 1, iopub: 2, stdin: 3, control: 4, hb: 5 };

export interface DockerRuntimeOptions {
  docker: Docker;
  stateDir: string;
  image: string;
  policy: SandboxPolicy;
  hostHasAppArmor: boolean;
  /** CPU cores a sandbox may use until its kernel is ready (0: the policy's quota from the start). */
  startCpus: number;
  /** Egress relay, proxy settings and /pkgs in every sandbox (absent: egress off). */
  egress?: SandboxEgress;
}

function isNotFound(err: unknown): boolean {
  return (
    typeof err === 'object' && err !== null && (err as { statusCode?: number }).statusCode === 404
  );
}

/** Collects what a stream writes. */
class Collector extends Writable {
  readonly chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.chunks.push(chunk);
    done();
  }
}

/** Runs argv in a container as the sandbox user; stdout and stderr come back demultiplexed. */
async function execIn(
  container: Docker.Container,
  argv: string[],
  stdin: Buffer | undefined,
): Promise<ExecResult> {
  let exec: Docker.Exec;
  try {
    exec = await container.exec({
      Cmd: argv,
      User: `${SANDBOX_UID}:${SANDBOX_UID}`,
      WorkingDir: WORKSPACE_DIR,
      AttachStdin: stdin !== undefined,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
    });
  } catch (err) {
    const code = (err as { statusCode?: number }).statusCode;
    if (code === 404 || code === 409)
      throw new GatewayError('KERNEL_DEAD', 'the sandbox is not running', { cause: err });
    throw err;
  }
  const stream = await exec.start({ hijack: true, stdin: stdin !== undefined });
  const stdout = new Collector();
  const stderr = new Collector();
  (container.modem as Docker['modem']).demuxStream(stream, stdout, stderr);
  await new Promise<void>((resolve, reject) => {
    stream.once('end', resolve);
    stream.once('close', resolve);
    stream.once('error', reject);
    // Ending our side of the hijacked connection is the process's end of input.
    if (stdin !== undefined) stream.end(stdin);
  });
  const info = await exec.inspect();
  return {
    exitCode: info.ExitCode ?? -1,
    stdout: Buffer.concat(stdout.chunks),
    stderr: Buffer.concat(stderr.chunks),
  };
}

class DockerSandbox implements Sandbox {
  readonly exited: Promise<SandboxExit>;
  #destroyed: Promise<void> | undefined;
  #enforced: Promise<void> | undefined;

  constructor(
    private readonly container: Docker.Container,
    readonly connection: ConnectionInfo,
    private readonly dir: string,
    private readonly policyNanoCpus: number,
    boosted: boolean,
  ) {
    if (!boosted) this.#enforced = Promise.resolve();
    this.exited = this.#watchExit();
  }

  /**
   * Settles when the container stops. A broken wait (the daemon restarting, say) is not an exit:
   * with live-restore the container keeps running, so the wait is retried until Docker answers.
   */
  async #watchExit(): Promise<SandboxExit> {
    for (;;) {
      try {
        const r = (await this.container.wait()) as { StatusCode?: number };
        const oomKilled = await this.container
          .inspect()
          .then((i) => i.State.OOMKilled)
          .catch(() => false);
        return { exitCode: r.StatusCode ?? null, oomKilled };
      } catch (err) {
        if (isNotFound(err) || this.#destroyed) return { exitCode: null, oomKilled: false };
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  get id(): string {
    return this.container.id;
  }

  async signal(signal: 'SIGINT' | 'SIGKILL'): Promise<void> {
    try {
      await this.container.kill({ signal });
    } catch (err) {
      // 409: not running any more; 404: already removed. Both mean the signal has nothing to do.
      const code = (err as { statusCode?: number }).statusCode;
      if (code !== 409 && code !== 404) throw err;
    }
  }

  enforceLimits(): Promise<void> {
    this.#enforced ??= this.container
      .update({ NanoCpus: this.policyNanoCpus })
      .then(() => undefined);
    return this.#enforced;
  }

  hostPath(name: string): string {
    if (!/^[\w.-]+$/.test(name) || name === '.' || name === '..')
      throw new Error(`bad file name ${name}`);
    return path.join(this.dir, name);
  }

  async putFile(name: string, content: string): Promise<void> {
    if (!/^[\w.-]+$/.test(name)) throw new Error(`bad file name ${name}`);
    const file = path.join(this.dir, name);
    await writeFile(file, content, { mode: 0o400 });
    await chown(file, SANDBOX_UID, SANDBOX_UID);
  }

  exec(argv: string[], stdin?: Buffer): Promise<ExecResult> {
    return execIn(this.container, argv, stdin);
  }

  destroy(): Promise<void> {
    this.#destroyed ??= (async () => {
      try {
        await this.container.remove({ force: true, v: true });
      } catch (err) {
        if (!isNotFound(err) && (err as { statusCode?: number }).statusCode !== 409) throw err;
      }
      await rm(this.dir, { recursive: true, force: true });
    })();
    return this.#destroyed;
  }
}

/** {@link KernelRuntime} over the local Docker Engine. */
export class DockerRuntime implements KernelRuntime {
  readonly kernelsDir: string;
  /** Pooled sandboxes and the kernels they were handed to (their labels say "pool"). */
  readonly #bound = new Map<string, string>();

  constructor(private readonly opts: DockerRuntimeOptions) {
    this.kernelsDir = path.join(opts.stateDir, 'k');
  }

  async createSandbox(kernelId: string | null, env: Record<string, string>): Promise<Sandbox> {
    const short = randomBytes(6).toString('hex');
    const dir = path.join(this.kernelsDir, short);
    await mkdir(this.kernelsDir, { recursive: true, mode: 0o711 });
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, SANDBOX_UID, SANDBOX_UID);
    const key = randomBytes(32).toString('hex');
    const connectionFile = {
      transport: 'ipc',
      ip: `${KERNEL_DIR_IN_CONTAINER}/k`,
      shell_port: PORTS.shell,
      iopub_port: PORTS.iopub,
      stdin_port: PORTS.stdin,
      control_port: PORTS.control,
      hb_port: PORTS.hb,
      key,
      signature_scheme: 'hmac-sha256',
      kernel_name: 'python3',
    };
    const file = path.join(dir, 'connection.json');
    await writeFile(file, JSON.stringify(connectionFile), { mode: 0o400 });
    await chown(file, SANDBOX_UID, SANDBOX_UID);
    const endpoints = Object.fromEntries(
      Object.entries(PORTS).map(([ch, port]) => [ch, `ipc://${dir}/k-${port}`]),
    ) as Record<ZmqChannel, string>;

    const spec = buildContainerSpec({
      policy: this.opts.policy,
      image: this.opts.image,
      kernelId: kernelId ?? POOL_KERNEL_ID,
      kernelDir: dir,
      name: `aido-k-${kernelId?.slice(0, 8) ?? 'pool'}-${short}`,
      env,
      hostHasAppArmor: this.opts.hostHasAppArmor,
      ...(this.opts.egress ? { egress: this.opts.egress } : {}),
      labels: {
        [LABEL_APP]: '1',
        [LABEL_STATE_DIR]: this.opts.stateDir,
        [LABEL_KERNEL_ID]: kernelId ?? POOL_KERNEL_ID,
        [LABEL_KERNEL_DIR]: dir,
      },
    });
    // Python's start-up is CPU-bound: a sandbox may start with a larger quota, lowered to the
    // policy's by enforceLimits() before any user code runs.
    const policyNanoCpus = spec.HostConfig?.NanoCpus ?? 0;
    const boostNanoCpus = Math.round(this.opts.startCpus * 1e9);
    const boosted = boostNanoCpus > policyNanoCpus && spec.HostConfig !== undefined;
    if (boosted && spec.HostConfig) spec.HostConfig.NanoCpus = boostNanoCpus;
    let container: Docker.Container;
    try {
      container = await this.opts.docker.createContainer(spec);
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw this.translate(err, 'creating the sandbox');
    }
    try {
      await container.start();
    } catch (err) {
      await container.remove({ force: true, v: true }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      throw this.translate(err, 'starting the sandbox');
    }
    // Only now: Docker's wait ("not-running") returns at once for a container not yet started.
    return new DockerSandbox(
      container,
      { key, signatureScheme: 'hmac-sha256', endpoints },
      dir,
      policyNanoCpus,
      boosted,
    );
  }

  private translate(err: unknown, what: string): GatewayError {
    const e = err as {
      statusCode?: number;
      code?: string;
      json?: { message?: string };
      message?: string;
    };
    if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || e.code === 'EACCES') {
      return new GatewayError(
        'DOCKER_UNAVAILABLE',
        `Docker Engine is not reachable (${e.code}) while ${what}`,
        { cause: err },
      );
    }
    if (e.statusCode === 404) {
      return new GatewayError(
        'KERNEL_START_FAILED',
        `kernel image ${this.opts.image} is missing: build it with "bash kernel-image/build.sh"`,
        { cause: err },
      );
    }
    const detail = e.json?.message ?? e.message ?? String(err);
    return new GatewayError('KERNEL_START_FAILED', `Docker refused ${what}: ${detail}`, {
      cause: err,
    });
  }

  private async labelled(): Promise<Docker.ContainerInfo[]> {
    return this.opts.docker.listContainers({
      all: true,
      filters: { label: [`${LABEL_APP}=1`, `${LABEL_STATE_DIR}=${this.opts.stateDir}`] },
    });
  }

  async adoptable(): Promise<AdoptableSandbox[]> {
    const out: AdoptableSandbox[] = [];
    for (const c of await this.labelled()) {
      const dir = c.Labels[LABEL_KERNEL_DIR];
      if (c.State !== 'running' || !dir || path.dirname(dir) !== this.kernelsDir) continue;
      // A pooled sandbox handed to a kernel has that kernel's id in its directory; one still
      // waiting in the pool is not adopted (the new pool starts afresh).
      const bound = await readFile(path.join(dir, 'kernel-id'), 'utf8').catch(() => undefined);
      const kernelId = bound?.trim() ?? c.Labels[LABEL_KERNEL_ID];
      if (!kernelId || kernelId === POOL_KERNEL_ID) continue;
      let key: string;
      try {
        // The kernel rewrites its connection file at start; the key stays the one we gave it.
        const conn = JSON.parse(await readFile(path.join(dir, 'connection.json'), 'utf8')) as {
          key?: unknown;
        };
        if (typeof conn.key !== 'string') continue;
        key = conn.key;
      } catch {
        continue;
      }
      const info = await this.opts.docker.getContainer(c.Id).inspect();
      const env: Record<string, string> = {};
      for (const kv of info.Config.Env) {
        const i = kv.indexOf('=');
        if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
      }
      const handed = await readFile(path.join(dir, 'env.json'), 'utf8').then(
        (t) => JSON.parse(t) as Record<string, string>,
        () => ({}),
      );
      Object.assign(env, handed);
      const endpoints = Object.fromEntries(
        Object.entries(PORTS).map(([ch, port]) => [ch, `ipc://${dir}/k-${port}`]),
      ) as Record<ZmqChannel, string>;
      const policyNanoCpus = Math.round(this.opts.policy.limits.cpus * 1e9);
      // Treated as boosted: the previous gateway may have died before lowering the quota.
      const sandbox = new DockerSandbox(
        this.opts.docker.getContainer(c.Id),
        { key, signatureScheme: 'hmac-sha256', endpoints },
        dir,
        policyNanoCpus,
        true,
      );
      this.#bound.set(c.Id, kernelId);
      out.push({ sandbox, kernelId, env });
    }
    return out;
  }

  bind(containerId: string, kernelId: string): void {
    this.#bound.set(containerId, kernelId);
  }

  exec(containerId: string, argv: string[], stdin?: Buffer): Promise<ExecResult> {
    return execIn(this.opts.docker.getContainer(containerId), argv, stdin);
  }

  async reapOrphans(keep: ReadonlySet<string>, opts: { minAgeMs?: number } = {}): Promise<number> {
    const minAgeMs = opts.minAgeMs ?? 0;
    const cutoff = Date.now() - minAgeMs;
    let removed = 0;
    const keepDirs = new Set<string>();
    for (const c of await this.labelled()) {
      const dir = c.Labels[LABEL_KERNEL_DIR];
      if (keep.has(c.Id) || c.Created * 1000 > cutoff) {
        if (dir) keepDirs.add(dir);
        continue;
      }
      await this.removeContainer(c.Id);
      removed++;
    }
    const entries = await readdir(this.kernelsDir).catch(() => [] as string[]);
    for (const name of entries) {
      const d = path.join(this.kernelsDir, name);
      if (keepDirs.has(d)) continue;
      const mtime = await stat(d).then(
        (st) => st.mtimeMs,
        () => 0,
      );
      if (mtime <= cutoff) await rm(d, { recursive: true, force: true });
    }
    return removed;
  }

  async removeContainer(containerId: string): Promise<void> {
    const c = this.opts.docker.getContainer(containerId);
    const dir = await c.inspect().then(
      (i) => (i.Config.Labels as Record<string, string> | null)?.[LABEL_KERNEL_DIR],
      () => undefined,
    );
    try {
      await c.remove({ force: true, v: true });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    // Only directories inside our own kernels dir, whatever a label says.
    if (dir && path.dirname(dir) === this.kernelsDir)
      await rm(dir, { recursive: true, force: true });
  }

  async list(): Promise<SandboxInfo[]> {
    const out: SandboxInfo[] = [];
    for (const c of await this.labelled()) {
      const info = await this.opts.docker
        .getContainer(c.Id)
        .inspect()
        .catch(() => undefined);
      if (!info) continue;
      const h = info.HostConfig;
      out.push({
        containerId: c.Id,
        kernelId: this.#bound.get(c.Id) ?? c.Labels[LABEL_KERNEL_ID] ?? null,
        created: info.Created,
        state: info.State.Status,
        limits: {
          memory: h.Memory,
          memory_swap: h.MemorySwap,
          nano_cpus: h.NanoCpus,
          pids_limit: h.PidsLimit,
          ulimits: h.Ulimits,
          readonly_rootfs: h.ReadonlyRootfs,
          network_mode: h.NetworkMode,
          cap_drop: h.CapDrop,
          tmpfs: h.Tmpfs,
        },
        securityOpt: ((h.SecurityOpt ?? []) as string[]).map((o: string) =>
          o.startsWith('seccomp=') ? 'seccomp=<profile>' : o,
        ),
        runtime: h.Runtime ?? 'runc',
      });
    }
    return out;
  }

  async ping(): Promise<boolean> {
    try {
      await this.opts.docker.ping();
      return true;
    } catch {
      return false;
    }
  }
}
