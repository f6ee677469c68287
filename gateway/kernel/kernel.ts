/**
 * One kernel: its sandbox and lifecycle (boot, restart, death, shutdown; starting → idle/busy →
 * restarting → … → dead). The parts: kernel-boot.ts connects a fresh sandbox (the gateway's own
 * link, kernel-link.ts; the probe; the env hand-over), kernel-bridge.ts faces its client sessions
 * (client-table.ts, iopub-state.ts), executions.ts holds what it owes them (pending requests, the
 * deadline, the interrupt ladder), synthetic.ts writes the gateway's own messages in its name.
 */
import { randomUUID } from 'node:crypto';
import type { Signer } from '../../protocol/index.js';
import type { ClientChannels, ClientSink } from '../channels/client-channels.js';
import { realTimers } from '../base/deadline.js';
import { GatewayError } from '../base/errors.js';
import { InboundGate } from '../channels/inbound-gate.js';
import { clip } from '../base/log-limit.js';
import type { Logger } from '../base/logger.js';
import { type ConnectionInfo, type Sandbox, type SandboxExit } from '../runtime/runtime.js';
import { Executions } from './executions.js';
import { KernelBridge } from './kernel-bridge.js';
import { bootSandbox } from './kernel-boot.js';
import { describeDeath } from './kernel-deaths.js';
import type { KernelLink } from './kernel-link.js';
import type { ExecutionState, KernelModel, KernelOptions } from './kernel-model.js';
import { Synthetic } from './synthetic.js';
import { CloseCode } from '../base/close-codes.js';

export type { ExecutionState, KernelModel, KernelOptions } from './kernel-model.js';

export class Kernel {
  readonly id: string;
  readonly name: string;
  executionState: ExecutionState = 'starting';
  lastActivity = new Date();
  reason: string | undefined;

  readonly #gatewaySession = `gateway-${randomUUID()}`;
  readonly #executions: Executions;
  #signer: Signer | undefined;
  #sandbox: Sandbox | undefined;
  #link: KernelLink | undefined;
  #generation = 0;
  #abuse: string | undefined;
  #killReason: string | undefined;
  #restarting: Promise<void> | undefined;
  #closed: Promise<void> | undefined;
  readonly #bridge: KernelBridge;
  readonly #synthetic = new Synthetic(this.#gatewaySession);
  readonly #log: Logger;
  readonly #gate: InboundGate;

  constructor(private readonly opts: KernelOptions) {
    this.id = opts.id;
    this.name = opts.name;
    this.#log = opts.logger.child({ kernel: opts.id });
    this.#gate = new InboundGate(opts.inbound, {
      warn: (fields, msg) => {
        this.log('warn', msg, fields);
      },
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
      onAbuse: (detail) => {
        void this.#onAbuse(detail);
      },
    });
    this.#executions = new Executions(
      {
        sendInterrupt: (cause) => this.#sendInterrupt(cause),
        kill: (reason, cause) => this.#kill(reason, cause),
        sandbox: () => this.#sandbox,
        restartAfterDeadline: async (sandbox, why) => {
          if (this.#sandbox !== sandbox || this.#closed || this.#restarting) return;
          this.#log.warn({ why }, 'restarting after the execution deadline');
          this.#bridge.broadcast(
            this.#synthetic.notice(`Kernel restarted on a fresh sandbox: ${why}.`),
          );
          await this.restart();
        },
      },
      {
        execTimeoutMs: opts.execTimeoutMs,
        killGraceMs: opts.killGraceMs,
        deadlineSweep: opts.deadlineSweep,
        timers: opts.timers ?? realTimers,
        synthetic: this.#synthetic,
        log: this.#log,
        metrics: opts.metrics,
      },
    );
    this.#bridge = new KernelBridge(
      {
        state: () => this.executionState,
        setState: (state) => {
          this.executionState = state;
        },
        touch: () => {
          this.lastActivity = new Date();
        },
        signer: () => this.#signer,
        connection: () => this.#sandbox?.connection,
        readable: () => this.#abuse === undefined,
      },
      {
        kernelId: opts.id,
        gatewaySession: this.#gatewaySession,
        gate: this.#gate,
        executions: this.#executions,
        synthetic: this.#synthetic,
        clients: opts.clients,
        maxClientSessions: opts.maxClientSessions,
        iopubRate: opts.iopubRate,
        maxHeaderBytes: opts.inbound.maxHeaderBytes,
        log: this.#log,
        metrics: opts.metrics,
      },
    );
  }

  /** The gate every message from this kernel's sandbox passes (client sockets included). */
  get gate(): InboundGate {
    return this.#gate;
  }

  /** How to reach the current sandbox directly (benchmarks compare the bridge against it). */
  get connection(): ConnectionInfo | undefined {
    return this.#sandbox?.connection;
  }

  /** The sandbox id of the current sandbox. */
  get sandboxId(): string | undefined {
    return this.#sandbox?.id;
  }

  get connections(): number {
    return this.#bridge.clients.connections;
  }

  get closing(): boolean {
    return this.#closed !== undefined;
  }

  model(): KernelModel {
    const m: KernelModel = {
      id: this.id,
      name: this.name,
      last_activity: this.lastActivity.toISOString(),
      execution_state: this.executionState,
      connections: this.connections,
    };
    if (this.reason !== undefined) m.reason = this.reason;
    return m;
  }

  // ---- lifecycle --------------------------------------------------------------------------

  /** Creates the sandbox and waits for the kernel to answer kernel_info. */
  async start(): Promise<void> {
    await this.#boot();
  }

  async #boot(): Promise<void> {
    const gen = ++this.#generation;
    const { sandbox, pooled } = await this.opts.acquire(this.id, this.opts.env);
    if (this.#closed) {
      await sandbox.destroy();
      throw this.#shutDownWhileStarting();
    }
    this.#sandbox = sandbox;
    this.#killReason = undefined;
    this.#abuse = undefined;
    this.#gate.reset();
    void sandbox.exited.then((exit) => {
      if (gen === this.#generation && !this.#closed) void this.#onSandboxExit(exit);
    });
    try {
      await bootSandbox({
        sandbox,
        pooled,
        env: this.opts.env,
        startTimeoutMs: this.opts.startTimeoutMs,
        egress: this.opts.egress,
        session: this.#gatewaySession,
        gate: this.#gate,
        inbound: this.opts.inbound,
        readable: () => this.#abuse === undefined,
        onAny: (raw) => {
          this.#synthetic.note(raw);
        },
        onIopub: (raw) => {
          this.#bridge.iopub.onMessage(raw);
        },
        warn: (fields, msg) => {
          this.log('warn', msg, fields);
        },
        cancelled: () =>
          gen !== this.#generation || this.#closed ? this.#shutDownWhileStarting() : undefined,
        opened: (link, signer) => {
          this.#link = link;
          this.#signer = signer;
        },
      });
    } catch (err) {
      this.#closeLinks();
      await sandbox.destroy().catch(() => undefined);
      throw err;
    }
    this.#bridge.clients.connectAll(sandbox.connection);
    this.executionState = 'idle';
    this.reason = undefined;
    this.lastActivity = new Date();
    this.#log.info({ container: sandbox.id }, 'kernel ready');
  }

  #shutDownWhileStarting(): GatewayError {
    return new GatewayError('KERNEL_NOT_FOUND', `kernel ${this.id} was shut down while starting`);
  }

  /** The kernel broke the protocol too often: it is killed and its clients told, as for any death. */
  async #onAbuse(detail: string): Promise<void> {
    if (this.#closed || this.#abuse !== undefined) return;
    const reason = `protocol abuse: ${clip(detail)}`;
    this.#abuse = reason;
    this.#killReason = reason;
    this.#log.error({ reason }, 'killing the sandbox: protocol abuse');
    this.opts.metrics?.kill('abuse');
    // Stop reading from the sandbox now; the exit handler tells the clients.
    this.#closeLinks();
    await this.#sandbox?.kill().catch((err: unknown) => {
      this.#log.error({ err: String(err) }, 'could not kill an abusive sandbox');
    });
  }

  #closeLinks(): void {
    this.opts.egress?.stop();
    this.#link?.close();
    this.#link = undefined;
    this.#bridge.clients.disconnectAll();
  }

  /** Restarts on a fresh sandbox with the same id; clients are told `restarting`. Memoized. */
  restart(): Promise<void> {
    if (this.#closed)
      return Promise.reject(
        new GatewayError('KERNEL_NOT_FOUND', `kernel ${this.id} is shutting down`),
      );
    this.#restarting ??= (async () => {
      this.#log.info('restarting on a fresh sandbox');
      this.executionState = 'restarting';
      this.#bridge.broadcastStatus('restarting');
      this.#bridge.settleAll(
        'KernelRestarted',
        'The kernel was restarted before this request finished.',
      );
      const old = this.#sandbox;
      this.#generation++;
      this.#closeLinks();
      this.#sandbox = undefined;
      this.#signer = undefined;
      await old?.destroy().catch((err: unknown) => {
        this.#log.warn({ err: String(err) }, 'removing the old sandbox failed');
      });
      try {
        await this.#boot();
        this.#bridge.broadcastStatus('starting');
        this.#bridge.broadcastStatus('idle');
      } catch (err) {
        this.executionState = 'dead';
        this.reason = `restart failed: ${(err as Error).message}`;
        this.#bridge.broadcastStatus('dead');
        throw err;
      }
    })().finally(() => {
      this.#restarting = undefined;
    });
    return this.#restarting;
  }

  /**
   * Interrupts the running execution through the shared ladder (interrupt, then kill after the
   * grace period). With nothing running, only the interrupt_request is sent.
   */
  async interrupt(): Promise<void> {
    if (this.executionState === 'dead')
      throw new GatewayError('KERNEL_DEAD', `kernel ${this.id} is dead`);
    if (this.#executions.interrupt(this.executionState === 'busy')) return;
    await this.#sendInterrupt('request');
  }

  #sendInterrupt(cause: 'deadline' | 'request'): Promise<void> {
    this.opts.metrics?.interrupt(cause);
    void this.#link?.request('control', 'interrupt_request', {}, 1000);
    return Promise.resolve();
  }

  async #kill(reason: string, cause: 'deadline' | 'interrupt'): Promise<void> {
    if (this.#abuse !== undefined) return;
    this.#killReason = reason;
    this.#log.warn({ reason }, 'killing the sandbox');
    this.opts.metrics?.kill(cause);
    await this.#sandbox?.kill();
  }

  /**
   * Shuts the kernel down: shutdown_request and a short wait (unless `reason` says it is being
   * killed), then the sandbox is removed. Memoized.
   */
  shutdown(opts: { reason?: string; notice?: string } = {}): Promise<void> {
    this.#closed ??= (async () => {
      // A deleted, killed or panicked kernel loses its egress at once, before any wait.
      this.opts.egress?.close();
      this.#executions.disarmAll();
      const sandbox = this.#sandbox;
      if (opts.reason !== undefined) {
        this.reason = opts.reason;
        this.#bridge.broadcast(
          this.#synthetic.notice(opts.notice ?? `Kernel stopped: ${opts.reason}`),
        );
      } else if (sandbox && this.executionState !== 'dead') {
        await Promise.race([
          this.#link?.request('control', 'shutdown_request', { restart: false }, 1000),
          sandbox.exited,
        ]);
      }
      this.#generation++;
      this.executionState = 'dead';
      this.#bridge.broadcastStatus('dead');
      this.#bridge.settleAll(
        'KernelShutdown',
        'The kernel was shut down before this request finished.',
      );
      this.#bridge.clients.closeAll(CloseCode.GOING_AWAY, 'kernel shut down');
      this.#closeLinks();
      await sandbox?.destroy();
      this.#log.info(opts.reason === undefined ? {} : { reason: opts.reason }, 'kernel shut down');
    })();
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  async #onSandboxExit(exit: SandboxExit): Promise<void> {
    // An abusive kernel is killed for good (a restart would hand it a fresh sandbox to abuse).
    const killedByWatchdog = this.#killReason !== undefined && this.#abuse === undefined;
    const { reason, cause } = describeDeath(
      exit,
      this.#killReason,
      killedByWatchdog ? this.#executions.cause : undefined,
    );
    this.#log.warn({ reason, exit }, 'sandbox stopped');
    if (exit.oomKilled) this.opts.metrics?.oom();
    this.opts.onSandboxDeath?.({
      kernel_id: this.id,
      container_id: this.#sandbox?.id ?? null,
      cause,
      reason,
      exit_code: exit.exitCode,
    });
    this.reason = reason;
    this.#bridge.broadcast(this.#synthetic.notice(`Kernel died: ${reason}`));
    // The execution the ladder was stopping gets ExecutionKilled; everything else KernelDied.
    this.#executions.sandboxDied(killedByWatchdog);
    this.#bridge.settleAll('KernelDied', `The kernel died: ${reason}`);
    if (killedByWatchdog && this.opts.restartAfterKill) {
      await this.restart().catch((err: unknown) => {
        this.#log.error({ err: String(err) }, 'restart after kill failed');
      });
      this.reason = reason;
      return;
    }
    this.#generation++;
    this.#closeLinks();
    this.executionState = 'dead';
    this.#bridge.broadcastStatus('dead');
  }

  // ---- clients ----------------------------------------------------------------------------

  /**
   * The client session `sessionId`, created (with its own ZMQ identity) when new. Throws
   * TOO_MANY_SESSIONS when the table is full of attached sessions.
   */
  channelsFor(sessionId: string): ClientChannels {
    return this.#bridge.clients.channelsFor(sessionId);
  }

  /**
   * Attaches a sink (a WebSocket's, or the agent API's collector) as client session `sessionId`;
   * returns the channels, whose `receive()` sends the client's messages and `detach()` ends the
   * attachment.
   */
  attachSink(clientOrSession: ClientChannels | string, sink: ClientSink): ClientChannels {
    return this.#bridge.attachSink(clientOrSession, sink);
  }

  /** The channels were closed by their user (the agent API): forget them now. */
  expired(client: ClientChannels): void {
    this.#bridge.expired(client);
  }

  /** Logs about this kernel (warnings rate-limited). */
  log(level: 'debug' | 'info' | 'warn', msg: string, extra: Record<string, unknown> = {}): void {
    this.#bridge.log(level, msg, extra);
  }
}
