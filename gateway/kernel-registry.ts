/** Every kernel the gateway runs, keyed by id; enforces the kernel limit atomically (pending starts count). */
import { randomUUID } from 'node:crypto';
import type { GatewayConfig } from './config.js';
import { GatewayError } from './errors.js';
import { kernelEnvFrom } from './kernel-env.js';
import { KernelSession } from './kernel-session.js';
import type { KernelSpecs } from './kernelspecs.js';
import type { Logger } from './logger.js';
import type { KernelRuntime } from './runtime.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface StartRequest {
  name?: unknown;
  env?: unknown;
  kernel_id?: unknown;
}

export class KernelRegistry {
  #kernels = new Map<string, KernelSession>();
  #starting = new Map<string, KernelSession>();

  constructor(
    private readonly config: GatewayConfig,
    private readonly runtime: KernelRuntime,
    private readonly specs: KernelSpecs,
    private readonly logger: Logger,
  ) {}

  list(): KernelSession[] {
    return [...this.#kernels.values()];
  }

  find(id: string): KernelSession | undefined {
    return this.#kernels.get(id);
  }

  get(id: string): KernelSession {
    const k = this.#kernels.get(id);
    if (!k) throw new GatewayError('KERNEL_NOT_FOUND', `Kernel does not exist: ${id}`);
    return k;
  }

  /** Kernels running plus starts under way. */
  get count(): number {
    return this.#kernels.size + this.#starting.size;
  }

  /** Starts a kernel on a fresh sandbox; resolves once it answered kernel_info. */
  async start(req: StartRequest): Promise<KernelSession> {
    const name =
      req.name === undefined || req.name === null || req.name === ''
        ? this.specs.defaultName
        : req.name;
    if (typeof name !== 'string') throw new GatewayError('BAD_REQUEST', '"name" must be a string');
    if (!this.specs.has(name))
      throw new GatewayError('KERNELSPEC_NOT_FOUND', `No such kernel named ${name}`);
    const env = kernelEnvFrom(req.env, this.config.envAllowlist);
    let id: string = randomUUID();
    if (req.kernel_id !== undefined && req.kernel_id !== null) {
      if (typeof req.kernel_id !== 'string' || !UUID.test(req.kernel_id)) {
        throw new GatewayError('BAD_REQUEST', '"kernel_id" must be a UUID');
      }
      const existing = this.#kernels.get(req.kernel_id);
      if (existing) return existing;
      if (this.#starting.has(req.kernel_id))
        throw new GatewayError('KERNEL_ID_IN_USE', `Kernel ${req.kernel_id} is already starting`);
      id = req.kernel_id;
    }
    if (this.count >= this.config.maxKernels) {
      throw new GatewayError(
        'TOO_MANY_KERNELS',
        `Maximum number of kernels (${this.config.maxKernels}) reached`,
      );
    }
    const kernel = new KernelSession({
      id,
      name,
      env: { ...env, KERNEL_ID: id },
      runtime: this.runtime,
      logger: this.logger,
      execTimeoutMs: this.config.execTimeoutS * 1000,
      killGraceMs: this.config.killGraceS * 1000,
      restartAfterKill: this.config.restartAfterKill,
      startTimeoutMs: this.config.kernelStartTimeoutS * 1000,
      clients: {
        replayMaxMessages: this.config.replayMaxMessages,
        replayMaxBytes: this.config.replayMaxBytes,
        replayTtlMs: this.config.replayTtlS * 1000,
        pingIntervalMs: this.config.wsPingIntervalS * 1000,
      },
    });
    this.#starting.set(id, kernel);
    try {
      await kernel.start();
    } finally {
      this.#starting.delete(id);
    }
    this.#kernels.set(id, kernel);
    return kernel;
  }

  /** Shuts a kernel down and forgets it. */
  async shutdown(id: string): Promise<void> {
    const k = this.get(id);
    this.#kernels.delete(id);
    await k.shutdown();
  }

  /** Kills a kernel's sandbox at once (no shutdown_request), telling its clients why, and forgets it. */
  async terminate(id: string, reason: string): Promise<void> {
    const k = this.get(id);
    this.#kernels.delete(id);
    await k.shutdown({ reason });
  }

  /** Shuts every kernel down (gateway shutdown). */
  async shutdownAll(): Promise<number> {
    const all = [...this.list(), ...this.#starting.values()];
    this.#kernels.clear();
    await Promise.allSettled(all.map((k) => k.shutdown()));
    return all.length;
  }

  /** Container ids of the sandboxes in use (for orphan reaping). */
  containerIds(): Set<string> {
    const ids = new Set<string>();
    for (const k of [...this.#kernels.values(), ...this.#starting.values()])
      if (k.containerId) ids.add(k.containerId);
    return ids;
  }
}
