/** Every kernel the gateway runs, keyed by id; enforces the kernel limit atomically (pending starts count). */
import { randomUUID } from 'node:crypto';
import { freemem } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { GatewayConfig } from '../base/config.js';
import { DEFAULT_SWEEP_POLICY } from '../base/deadline.js';
import type { EgressProxies } from '../runtime/egress-proxy.js';
import { GatewayError } from '../base/errors.js';
import { KernelDeaths, type DeathCause } from './kernel-deaths.js';
import { inboundLimits } from '../channels/inbound-gate.js';
import { kernelEnvFrom } from './kernel-env.js';
import { Kernel, type KernelOptions } from './kernel.js';
import type { KernelSpecs } from './kernelspecs.js';
import type { Logger } from '../base/logger.js';
import type { KillCause, MetricsSink, StartSource } from '../base/metrics.js';
import type { KernelRuntime, Sandbox } from '../runtime/runtime.js';
import { WarmPool } from './warm-pool.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface StartRequest {
  name?: unknown;
  env?: unknown;
  kernel_id?: unknown;
}

export class KernelRegistry {
  #kernels = new Map<string, Kernel>();
  #starting = new Map<string, Kernel>();

  /** Sandboxes started ahead of demand (AIDO_POOL_SIZE; 0: none). */
  readonly pool: WarmPool;

  /** The recent ends of kernels' sandboxes, newest first (the security console's events). */
  readonly deaths = new KernelDeaths();

  constructor(
    private readonly config: GatewayConfig,
    private readonly runtime: KernelRuntime,
    private readonly specs: KernelSpecs,
    private readonly logger: Logger,
    private readonly metrics?: MetricsSink,
    /** Egress proxies, one per kernel (absent: egress off). */
    private readonly egress?: EgressProxies,
  ) {
    this.pool = new WarmPool({
      runtime,
      size: config.poolSize,
      startTimeoutMs: config.kernelStartTimeoutS * 1000,
      logger: logger.child({ component: 'warm-pool' }),
      // Pooled sandboxes count against AIDO_MAX_KERNELS, and each needs its memory limit free on
      // the host twice over (headroom for the kernels themselves).
      room: () => config.maxKernels - this.count,
      memoryAllows: () => freemem() > 2 * config.memoryBytes,
    });
  }

  /** A sandbox for a kernel: a ready one from the pool, else a cold start. */
  #acquire = async (
    kernelId: string,
    env: Record<string, string>,
  ): Promise<{ sandbox: Sandbox; pooled: boolean }> => {
    const pooled = this.pool.take();
    if (pooled) {
      // Its label says "pool": a gateway restarted later learns the kernel from this record.
      try {
        await this.runtime.bind(pooled.id, kernelId, env);
      } catch (err) {
        await pooled.destroy().catch(() => undefined);
        throw err;
      }
      return { sandbox: pooled, pooled: true };
    }
    return { sandbox: await this.runtime.createSandbox(kernelId, env), pooled: false };
  };

  list(): Kernel[] {
    return [...this.#kernels.values()];
  }

  find(id: string): Kernel | undefined {
    return this.#kernels.get(id);
  }

  get(id: string): Kernel {
    const k = this.#kernels.get(id);
    if (!k) throw new GatewayError('KERNEL_NOT_FOUND', `Kernel does not exist: ${id}`);
    return k;
  }

  /** The execution state of every kernel, starts under way included (for the metrics). */
  *states(): Iterable<string> {
    for (const k of this.#kernels.values()) yield k.executionState;
    for (const k of this.#starting.values()) yield k.executionState;
  }

  /** Kernels running plus starts under way. */
  get count(): number {
    return this.#kernels.size + this.#starting.size;
  }

  /** Starts a kernel on a fresh sandbox; resolves once it answered kernel_info. */
  async start(req: StartRequest): Promise<Kernel> {
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
    // Where the first sandbox came from, for the start metrics (no pooled one: a cold start).
    let source: StartSource = 'cold';
    const acquire: KernelOptions['acquire'] = async (kernelId, kernelEnv) => {
      const got = await this.#acquire(kernelId, kernelEnv);
      if (got.pooled) source = 'pool';
      return got;
    };
    const kernel = this.#create(id, name, { ...env, KERNEL_ID: id }, acquire);
    this.#starting.set(id, kernel);
    this.logger.debug({ kernel: id, name }, 'starting a kernel');
    const t0 = performance.now();
    try {
      await kernel.start();
    } catch (err) {
      this.metrics?.kernelStart(source, 'error', (performance.now() - t0) / 1000);
      throw err;
    } finally {
      this.#starting.delete(id);
      this.pool.rebalance();
    }
    this.metrics?.kernelStart(source, 'ok', (performance.now() - t0) / 1000);
    this.#kernels.set(id, kernel);
    return kernel;
  }

  /**
   * Takes over the running sandboxes a previous gateway left (killed, crashed, restarted): the
   * kernels keep their ids and state. Each sandbox is handled alone: one that cannot be verified
   * or fails to start is logged and left to the reaper (which removes it alone). Returns how many
   * were adopted; throws only when the runtime cannot list sandboxes at all.
   */
  async adopt(): Promise<number> {
    let adopted = 0;
    const scan = await this.runtime.adoptable();
    for (const r of scan.refused)
      this.logger.warn({ sandbox: r.sandboxId, why: r.reason }, 'not adopting a sandbox');
    for (const a of scan.adoptable) {
      if (this.#kernels.has(a.kernelId) || !UUID.test(a.kernelId)) {
        this.logger.warn(
          { container: a.sandbox.id, kernel: a.kernelId },
          'not adopting a sandbox: its kernel id is invalid or already adopted',
        );
        continue;
      }
      let first = true;
      const acquire: KernelOptions['acquire'] = async (kernelId, env) => {
        if (first) {
          first = false;
          return { sandbox: a.sandbox, pooled: false };
        }
        return this.#acquire(kernelId, env);
      };
      const env = { ...kernelEnvFrom(a.env, this.config.envAllowlist), KERNEL_ID: a.kernelId };
      const kernel = this.#create(a.kernelId, this.specs.defaultName, env, acquire);
      const t0 = performance.now();
      try {
        await kernel.start();
        this.metrics?.kernelStart('adopted', 'ok', (performance.now() - t0) / 1000);
        this.#kernels.set(a.kernelId, kernel);
        adopted++;
        this.logger.info(
          { kernel: a.kernelId, container: a.sandbox.id },
          'adopted a running kernel',
        );
      } catch (err) {
        this.metrics?.kernelStart('adopted', 'error', (performance.now() - t0) / 1000);
        this.logger.warn(
          { kernel: a.kernelId, err: String(err) },
          'could not adopt a sandbox; removing it',
        );
        await a.sandbox.destroy().catch(() => undefined);
      }
    }
    return adopted;
  }

  #create(
    id: string,
    name: string,
    env: Record<string, string>,
    acquire: KernelOptions['acquire'],
  ): Kernel {
    return new Kernel({
      id,
      name,
      env,
      acquire,
      logger: this.logger,
      execTimeoutMs: this.config.execTimeoutS * 1000,
      killGraceMs: this.config.killGraceS * 1000,
      restartAfterKill: this.config.restartAfterKill,
      deadlineSweep: this.config.deadlineSweep ? DEFAULT_SWEEP_POLICY : undefined,
      startTimeoutMs: this.config.kernelStartTimeoutS * 1000,
      ...(this.metrics ? { metrics: this.metrics } : {}),
      ...(this.egress ? { egress: this.egress.forKernel(id) } : {}),
      onSandboxDeath: (d) => {
        this.deaths.record(d);
      },
      iopubRate: {
        msgsPerSecond: this.config.iopubMsgRateLimit,
        bytesPerSecond: this.config.iopubDataRateLimit,
      },
      inbound: inboundLimits(this.config),
      maxClientSessions: this.config.maxClientSessions,
      clients: {
        replayMaxMessages: this.config.replayMaxMessages,
        replayMaxBytes: this.config.replayMaxBytes,
        replayTtlMs: this.config.replayTtlS * 1000,
        ...(this.metrics ? { metrics: this.metrics } : {}),
      },
    });
  }

  /** Shuts a kernel down and forgets it. */
  async shutdown(id: string): Promise<void> {
    const k = this.get(id);
    this.#kernels.delete(id);
    this.#recordEnd(k, 'shutdown', 'shut down at a client request');
    await k.shutdown();
    this.pool.rebalance();
  }

  /**
   * Kills a kernel's sandbox at once (no shutdown_request), telling its clients why (`notice`, else
   * "Kernel stopped: <reason>"), and forgets it. A `cause` is counted as a kill in the metrics.
   */
  async terminate(
    id: string,
    reason: string,
    opts: { notice?: string; cause?: KillCause } = {},
  ): Promise<void> {
    const k = this.get(id);
    this.#kernels.delete(id);
    if (opts.cause) this.metrics?.kill(opts.cause);
    this.#recordEnd(k, opts.cause === 'panic' ? 'panic' : 'stopped', reason);
    await k.shutdown(opts.notice === undefined ? { reason } : { reason, notice: opts.notice });
    this.pool.rebalance();
  }

  #recordEnd(k: Kernel, cause: DeathCause, reason: string): void {
    this.deaths.record({
      kernel_id: k.id,
      container_id: k.sandboxId ?? null,
      cause,
      reason,
      exit_code: null,
    });
  }

  /** Shuts every kernel down (gateway shutdown). */
  async shutdownAll(): Promise<number> {
    await this.pool.drain({ refill: false });
    const all = [...this.list(), ...this.#starting.values()];
    this.#kernels.clear();
    await Promise.allSettled(all.map((k) => k.shutdown()));
    return all.length;
  }

  /** Sandbox ids of the sandboxes in use (for orphan reaping). */
  sandboxIds(): Set<string> {
    const ids = new Set<string>();
    for (const k of [...this.#kernels.values(), ...this.#starting.values()])
      if (k.sandboxId) ids.add(k.sandboxId);
    for (const id of this.pool.sandboxIds()) ids.add(id);
    return ids;
  }

  /** The kernel a container serves, if any. */
  kernelOfSandbox(sandboxId: string): string | undefined {
    for (const k of [...this.#kernels.values(), ...this.#starting.values()])
      if (k.sandboxId === sandboxId) return k.id;
    return undefined;
  }
}
