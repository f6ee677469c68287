/**
 * The local Docker backend: one hardened container per sandbox, reached over ZeroMQ ipc sockets in
 * the sandbox's own tmpfs volume (mounted at /run/kernel; the gateway reaches it at the volume's
 * mount point). Which kernel a sandbox serves lives in gateway-owned state (labels, the container's
 * config, root-only records under the state dir), never in anything the sandbox can write.
 *
 * Longer than 400 lines because it is the one adapter to the Docker Engine API: every dockerode
 * call of the gateway (create, adopt, bind, list, remove) is here, so nothing above the
 * KernelRuntime interface knows Docker; createSandbox is one sequence that undoes itself on failure.
 */
import { randomBytes, randomInt } from 'node:crypto';
import Docker from 'dockerode';
import {
  buildContainerSpec,
  CONNECTION_ENV,
  KERNEL_DIR_IN_CONTAINER,
  kernelVolumeOptions,
  WORKSPACE_DIR,
  type SandboxEgress,
  type SandboxPolicy,
} from '../../security/policy.js';
import {
  LABEL_APP,
  LABEL_INSTANCE,
  LABEL_KERNEL_ID,
  LABEL_KERNEL_VOLUME,
  LABEL_STATE_DIR,
  POOL_KERNEL_ID,
} from '../../security/labels.js';
import { execIn } from './docker-exec.js';
import { GatewayError } from '../base/errors.js';
import {
  checkKernelDir,
  checkSealed,
  checkSocketPathLength,
  kernelDirPath,
  putKernelFile,
  sealKernelDir,
} from './kernel-dir.js';
import type {
  AdoptableSandbox,
  AdoptionScan,
  ConnectionInfo,
  ExecOptions,
  ExecResult,
  KernelRuntime,
  Sandbox,
  SandboxControls,
  SandboxExit,
  SandboxInfo,
  ZmqChannel,
} from './runtime.js';
import { SandboxBindings } from './sandbox-bindings.js';

/** Where a helper exec runs (as the container's own user: the sandbox's unmapped uid). */
const sandboxExec = { workingDir: WORKSPACE_DIR };
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
  /** This gateway instance (labels its sandboxes). */
  instance: string;
}

const KEY = /^[0-9a-f]{64}$/;

function endpointsIn(dir: string): Record<ZmqChannel, string> {
  return Object.fromEntries(
    Object.entries(PORTS).map(([ch, port]) => [ch, `ipc://${dir}/k-${port}`]),
  ) as Record<ZmqChannel, string>;
}

/** The key of a sandbox, from its container config (which the sandbox cannot change). */
function keyFromEnv(env: readonly string[]): string {
  const entry = env.find((kv) => kv.startsWith(`${CONNECTION_ENV}=`));
  if (!entry) throw new Error(`the container has no ${CONNECTION_ENV}`);
  const conn: unknown = JSON.parse(entry.slice(CONNECTION_ENV.length + 1));
  const key = (conn as { key?: unknown } | null)?.key;
  if (typeof key !== 'string' || !KEY.test(key))
    throw new Error(`the container's ${CONNECTION_ENV} has no valid key`);
  return key;
}

/** The strings of a list the Engine API types loosely (absent: none). */
function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** The nofile entry of Docker's Ulimits, the only one the policy sets. */
function nofileOf(
  ulimits:
    | readonly { Name?: string | undefined; Soft?: number | undefined; Hard?: number | undefined }[]
    | null
    | undefined,
): { soft: number; hard: number } | null {
  const n = ulimits?.find((u) => u.Name === 'nofile');
  return n?.Soft !== undefined && n.Hard !== undefined ? { soft: n.Soft, hard: n.Hard } : null;
}

/** The controls Docker's SecurityOpt strings say are in force (`seccomp=<json>` is ours). */
export function controlsOf(securityOpt: readonly string[]): SandboxControls {
  const seccomp = securityOpt.find((o) => o.startsWith('seccomp='));
  const nnp = securityOpt.find((o) => /^no-new-privileges(?:[:=]|$)/.test(o));
  const appArmor = securityOpt.find((o) => o.startsWith('apparmor='));
  return {
    seccomp: seccomp === undefined ? 'default' : seccomp === 'seccomp=unconfined' ? 'none' : 'aido',
    noNewPrivileges: nnp !== undefined && !/[:=]false$/.test(nnp),
    appArmor: appArmor === undefined ? null : appArmor.slice('apparmor='.length),
  };
}

function isNotFound(err: unknown): boolean {
  return (
    typeof err === 'object' && err !== null && (err as { statusCode?: number }).statusCode === 404
  );
}

class DockerSandbox implements Sandbox {
  readonly exited: Promise<SandboxExit>;
  #destroyed: Promise<void> | undefined;
  #enforced: Promise<void> | undefined;

  constructor(
    private readonly runtime: DockerRuntime,
    private readonly container: Docker.Container,
    readonly connection: ConnectionInfo,
    readonly uid: number | null,
    /** Host mount point of the sandbox's kernel-directory volume. */
    private readonly dir: string,
    private readonly policyNanoCpus: number,
    private readonly boosted: boolean,
  ) {
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

  async kill(): Promise<void> {
    try {
      await this.container.kill({ signal: 'SIGKILL' });
    } catch (err) {
      // 409: not running any more; 404: already removed. Both mean the signal has nothing to do.
      const code = (err as { statusCode?: number }).statusCode;
      if (code !== 409 && code !== 404) throw err;
    }
  }

  /** Seals the kernel directory (its sockets become root's) and lowers a start-up CPU boost. */
  enforceLimits(): Promise<void> {
    this.#enforced ??= (async () => {
      await sealKernelDir(this.dir);
      if (this.boosted) await this.container.update({ NanoCpus: this.policyNanoCpus });
    })();
    return this.#enforced;
  }

  putFile(name: string, content: string): Promise<void> {
    return putKernelFile(this.dir, name, content);
  }

  hostPath(name: string): string {
    return kernelDirPath(this.dir, name);
  }

  exec(argv: string[], stdin?: Buffer, opts?: ExecOptions): Promise<ExecResult> {
    return execIn(this.container, argv, stdin, { ...opts, ...sandboxExec });
  }

  destroy(): Promise<void> {
    this.#destroyed ??= this.runtime.removeSandbox(this.container.id);
    return this.#destroyed;
  }
}

/**
 * A sandbox's container name: `aido-k-`, the first 8 characters of its kernel's id (`pool` while
 * pooled), and the sandbox's own short id (also in its volume's name), so `docker ps` shows which
 * kernel a container serves.
 */
function sandboxName(kernelId: string | null, short: string): string {
  return `aido-k-${kernelId?.slice(0, 8) ?? 'pool'}-${short}`;
}

/** {@link KernelRuntime} over the local Docker Engine. */
export class DockerRuntime implements KernelRuntime {
  readonly bindings: SandboxBindings;
  /** Pooled sandboxes and the kernels they were handed to (their labels say "pool"). */
  readonly #bound = new Map<string, string>();
  /** The uid of each sandbox of this gateway, and the uids taken (sandboxes being created too). */
  readonly #uidOf = new Map<string, number>();
  readonly #uidsTaken = new Set<number>();

  constructor(private readonly opts: DockerRuntimeOptions) {
    this.bindings = new SandboxBindings(opts.stateDir);
  }

  /** A uid of the policy's range that no sandbox of this gateway has (one uid per sandbox). */
  #takeUid(): number {
    const { first, count } = this.opts.policy.uidRange;
    if (this.#uidsTaken.size >= count)
      throw new GatewayError('KERNEL_START_FAILED', `all ${count} sandbox uids are in use`);
    for (;;) {
      const uid = first + randomInt(count);
      if (this.#uidsTaken.has(uid)) continue;
      this.#uidsTaken.add(uid);
      return uid;
    }
  }

  #noteUid(containerId: string, user: string): void {
    const uid = Number(/^(\d+):/.exec(user)?.[1]);
    if (!Number.isSafeInteger(uid)) return;
    this.#uidOf.set(containerId, uid);
    this.#uidsTaken.add(uid);
  }

  #releaseUid(containerId: string): void {
    const uid = this.#uidOf.get(containerId);
    if (uid === undefined) return;
    this.#uidOf.delete(containerId);
    this.#uidsTaken.delete(uid);
  }

  #labels(): Record<string, string> {
    return {
      [LABEL_APP]: '1',
      [LABEL_STATE_DIR]: this.opts.stateDir,
      [LABEL_INSTANCE]: this.opts.instance,
    };
  }

  /** Creates the sandbox's kernel-directory volume; returns its host mount point. */
  async #createVolume(name: string): Promise<string> {
    try {
      await this.opts.docker.createVolume({
        Name: name,
        Driver: 'local',
        DriverOpts: kernelVolumeOptions(),
        Labels: this.#labels(),
      });
      const info = (await this.opts.docker.getVolume(name).inspect()) as { Mountpoint?: string };
      if (!info.Mountpoint?.startsWith('/')) throw new Error('the volume has no mount point');
      checkSocketPathLength(info.Mountpoint);
      return info.Mountpoint;
    } catch (err) {
      // Best effort: with the daemon gone this fails too, and the cause must stay the first error.
      await this.#removeVolume(name).catch(() => undefined);
      throw this.translate(err, 'creating the kernel directory');
    }
  }

  async #removeVolume(name: string): Promise<void> {
    try {
      await this.opts.docker.getVolume(name).remove();
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async createSandbox(kernelId: string | null, env: Record<string, string>): Promise<Sandbox> {
    const short = randomBytes(6).toString('hex');
    const volume = `aido-kd-${short}`;
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
    const dir = await this.#createVolume(volume);
    let uid: number;
    try {
      uid = this.#takeUid();
    } catch (err) {
      await this.#removeVolume(volume).catch(() => undefined);
      throw err;
    }
    const spec = buildContainerSpec({
      policy: this.opts.policy,
      uid,
      image: this.opts.image,
      kernelId: kernelId ?? POOL_KERNEL_ID,
      kernelVolume: volume,
      connectionFile: JSON.stringify(connectionFile),
      name: sandboxName(kernelId, short),
      env,
      hostHasAppArmor: this.opts.hostHasAppArmor,
      ...(this.opts.egress ? { egress: this.opts.egress } : {}),
      labels: {
        ...this.#labels(),
        [LABEL_KERNEL_ID]: kernelId ?? POOL_KERNEL_ID,
        [LABEL_KERNEL_VOLUME]: volume,
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
      this.#uidsTaken.delete(uid);
      await this.#removeVolume(volume).catch(() => undefined);
      throw this.translate(err, 'creating the sandbox');
    }
    this.#uidOf.set(container.id, uid);
    try {
      // Recorded before it runs: a gateway that dies from here on leaves a record to adopt by.
      if (kernelId !== null) await this.#record(container.id, kernelId, env);
      await container.start();
      // The volume is mounted now; the gateway must see that tmpfs, or it would talk to an empty
      // directory on its own disk.
      await checkKernelDir(dir);
    } catch (err) {
      await this.removeSandbox(container.id).catch(() => undefined);
      throw err instanceof GatewayError ? err : this.translate(err, 'starting the sandbox');
    }
    // Only now: Docker's wait ("not-running") returns at once for a container not yet started.
    return new DockerSandbox(
      this,
      container,
      { key, signatureScheme: 'hmac-sha256', endpoints: endpointsIn(dir) },
      uid,
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
        'RUNTIME_UNAVAILABLE',
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

  /**
   * One labelled, running container: what the gateway recorded of it (binding record, labels,
   * container config), and its kernel directory sealed. Throws why it cannot be adopted; undefined
   * for a pooled sandbox never handed out.
   */
  async #adoptOne(c: Docker.ContainerInfo): Promise<AdoptableSandbox | undefined> {
    const label = c.Labels[LABEL_KERNEL_ID];
    const binding = await this.bindings.read(c.Id);
    if (!binding) {
      if (label === POOL_KERNEL_ID) return undefined;
      throw new Error('no binding record');
    }
    if (label !== POOL_KERNEL_ID && label !== binding.kernelId)
      throw new Error(`its label names kernel ${label}, its record ${binding.kernelId}`);
    const info = await this.opts.docker.getContainer(c.Id).inspect();
    const key = keyFromEnv(info.Config.Env);
    const volume = c.Labels[LABEL_KERNEL_VOLUME];
    const mount = info.Mounts.find(
      (m) => m.Destination === KERNEL_DIR_IN_CONTAINER && m.Type === 'volume',
    );
    if (!volume || mount?.Name !== volume || !mount.Source.startsWith('/'))
      throw new Error('its kernel directory is not its own volume');
    await checkSealed(mount.Source);
    this.#noteUid(c.Id, info.Config.User);
    // Treated as boosted: the previous gateway may have died before lowering the quota.
    const sandbox = new DockerSandbox(
      this,
      this.opts.docker.getContainer(c.Id),
      { key, signatureScheme: 'hmac-sha256', endpoints: endpointsIn(mount.Source) },
      this.#uidOf.get(c.Id) ?? null,
      mount.Source,
      Math.round(this.opts.policy.limits.cpus * 1e9),
      true,
    );
    return { sandbox, kernelId: binding.kernelId, env: binding.env };
  }

  async adoptable(): Promise<AdoptionScan> {
    const scan: AdoptionScan = { adoptable: [], refused: [] };
    for (const c of await this.labelled()) {
      if (c.State !== 'running') continue;
      try {
        const a = await this.#adoptOne(c);
        if (!a) continue;
        this.#bound.set(c.Id, a.kernelId);
        scan.adoptable.push(a);
      } catch (err) {
        scan.refused.push({ sandboxId: c.Id, reason: (err as Error).message });
      }
    }
    return scan;
  }

  /**
   * Hands a pooled sandbox to a kernel: the binding record (what a restarted gateway adopts by:
   * Docker cannot change a label, which keeps saying "pool"), then the name a fresh kernel's
   * sandbox would have had.
   */
  async bind(containerId: string, kernelId: string, env: Record<string, string>): Promise<void> {
    await this.#record(containerId, kernelId, env);
    const container = this.opts.docker.getContainer(containerId);
    try {
      const pooled = /^\/?aido-k-pool-([0-9a-f]+)$/.exec((await container.inspect()).Name);
      if (pooled?.[1]) await container.rename({ name: sandboxName(kernelId, pooled[1]) });
    } catch (err) {
      throw this.translate(err, 'renaming the sandbox for its kernel');
    }
  }

  /** The binding record a restarted gateway adopts by (a fresh sandbox already has its name). */
  async #record(containerId: string, kernelId: string, env: Record<string, string>): Promise<void> {
    this.#bound.set(containerId, kernelId);
    await this.bindings.write(containerId, { kernelId, env });
  }

  exec(
    containerId: string,
    argv: string[],
    stdin?: Buffer,
    opts?: ExecOptions,
  ): Promise<ExecResult> {
    return execIn(this.opts.docker.getContainer(containerId), argv, stdin, {
      ...opts,
      ...sandboxExec,
    });
  }

  async reapOrphans(keep: ReadonlySet<string>, opts: { minAgeMs?: number } = {}): Promise<number> {
    const minAgeMs = opts.minAgeMs ?? 0;
    const cutoff = Date.now() - minAgeMs;
    let removed = 0;
    const live = new Set<string>();
    for (const c of await this.labelled()) {
      live.add(c.Id);
      if (keep.has(c.Id) || c.Created * 1000 > cutoff) continue;
      await this.removeSandbox(c.Id, c.Labels[LABEL_KERNEL_VOLUME]);
      live.delete(c.Id);
      removed++;
    }
    // Records and volumes whose container is gone (removal interrupted by a crash, say). A volume
    // still in use answers 409 and stays.
    for (const id of await this.bindings.containerIds())
      if (!live.has(id)) await this.bindings.remove(id);
    const { Volumes } = await this.opts.docker.listVolumes({
      filters: { label: [`${LABEL_APP}=1`, `${LABEL_STATE_DIR}=${this.opts.stateDir}`] },
    });
    for (const v of Volumes) {
      const created = Date.parse((v as { CreatedAt?: string }).CreatedAt ?? '');
      if (created > cutoff) continue;
      await this.#removeVolume(v.Name).catch(() => undefined);
    }
    return removed;
  }

  /**
   * Removes a container, its kernel-directory volume (`knownVolume` when the caller already read
   * its labels) and its binding record.
   */
  async removeSandbox(containerId: string, knownVolume?: string): Promise<void> {
    const c = this.opts.docker.getContainer(containerId);
    const volume =
      knownVolume ??
      (await c.inspect().then(
        (i) => (i.Config.Labels as Record<string, string> | null)?.[LABEL_KERNEL_VOLUME],
        () => undefined,
      ));
    try {
      await c.remove({ force: true, v: true });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    // Best effort: after a dockerd restart (live-restore) Docker may refuse to remove the volume of
    // a container that ran across it ("volume has active mounts") though nothing is mounted; the
    // container is gone either way, and the reaper tries again.
    if (volume) await this.#removeVolume(volume).catch(() => undefined);
    await this.bindings.remove(containerId);
    this.#bound.delete(containerId);
    this.#releaseUid(containerId);
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
        sandboxId: c.Id,
        kernelId: this.#bound.get(c.Id) ?? c.Labels[LABEL_KERNEL_ID] ?? null,
        created: info.Created,
        state: info.State.Status,
        user: info.Config.User,
        limits: {
          memoryBytes: h.Memory || null,
          memoryAndSwapBytes: h.MemorySwap || null,
          cpus: h.NanoCpus ? h.NanoCpus / 1e9 : null,
          cpuShares: h.CpuShares || null,
          pids: h.PidsLimit || null,
          openFiles: nofileOf(h.Ulimits),
          readOnlyRootfs: h.ReadonlyRootfs === true,
          network: h.NetworkMode ?? '',
          capabilitiesDropped: strings(h.CapDrop),
          scratch: h.Tmpfs ?? {},
        },
        controls: controlsOf(strings(h.SecurityOpt)),
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
