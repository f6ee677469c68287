/**
 * One kernel: its sandbox, the gateway's own ZMQ sockets (one iopub SUB fanned out to every client,
 * plus shell and control DEALERs for readiness probes, interrupts and shutdown), the clients
 * attached to it, the execution watchdog and the kernel's lifecycle
 * (starting → idle/busy → restarting → … → dead).
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  createMessage,
  encodeZmq,
  Signer,
  toRaw,
  type Channel,
  type Header,
  type RawMessage,
} from '../../protocol/index.js';
import {
  ClientChannels,
  type ChannelHost,
  type ClientChannelsOptions,
  type ClientSink,
} from '../channels/client-channels.js';
import { IopubRateLimit } from './iopub-rate-limit.js';
import type { KernelDeath } from './kernel-deaths.js';
import {
  ExecutionDeadline,
  InterruptLadder,
  realTimers,
  sweepAfterDeadline,
  type SweepPolicy,
  type Timers,
} from '../base/deadline.js';
import { sweepSandbox } from './sandbox-sweep.js';
import { GatewayError } from '../base/errors.js';
import type { KernelEgressHandle } from '../runtime/egress-proxy.js';
import { InboundGate, zmqInbound, type InboundLimits } from '../channels/inbound-gate.js';
import { clip, clipFields, LogRateLimit } from '../base/log-limit.js';
import type { Logger } from '../base/logger.js';
import type { MetricsSink } from '../base/metrics.js';
import { parseJsonObject, peekParent } from '../channels/parent-peek.js';
import {
  describeSandboxExit,
  type ConnectionInfo,
  type Sandbox,
  type SandboxExit,
} from '../runtime/runtime.js';
import { ZmqLink } from '../runtime/zmq-link.js';

/** Jupyter's execution states (the only values clients accept). */
export type ExecutionState = 'starting' | 'idle' | 'busy' | 'restarting' | 'dead';

/** The kernel model of the REST API. */
export interface KernelModel {
  id: string;
  name: string;
  last_activity: string;
  execution_state: ExecutionState;
  connections: number;
  reason?: string;
}

export interface KernelSessionOptions {
  id: string;
  name: string;
  env: Record<string, string>;
  /** A fresh sandbox for this kernel: from the warm pool (`pooled`) or started cold. */
  acquire: (
    kernelId: string,
    env: Record<string, string>,
  ) => Promise<{ sandbox: Sandbox; pooled: boolean }>;
  logger: Logger;
  execTimeoutMs: number;
  killGraceMs: number;
  restartAfterKill: boolean;
  /** After a deadline's interrupt: kill what the execution left running; restart past the policy. */
  deadlineSweep?: SweepPolicy | undefined;
  startTimeoutMs: number;
  clients: ClientChannelsOptions;
  iopubRate: { msgsPerSecond: number; bytesPerSecond: number };
  /** Bounds on what the sandbox may send (see InboundGate). */
  inbound: InboundLimits;
  /** Client sessions kept; past it the oldest disconnected one is evicted. */
  maxClientSessions: number;
  timers?: Timers;
  metrics?: MetricsSink;
  /** The kernel's egress proxy (gateway/runtime/egress-proxy.ts); absent: egress is off. */
  egress?: KernelEgressHandle;
  /** Told when the sandbox stopped on its own or was killed by the ladder (not at shutdown). */
  onSandboxDeath?: (death: Omit<KernelDeath, 'at'>) => void;
}

/** Requests whose replies and status messages do not count as user activity. */
const UNTRACKED = new Set([
  'kernel_info_request',
  'comm_info_request',
  'interrupt_request',
  'shutdown_request',
  'debug_request',
  'usage_request',
]);

/** Fixed code that loads the kernel's environment from its private directory (see #injectEnv). */
const INJECT_ENV_CODE = [
  'def _aido_env():',
  '    import json, os',
  "    with open('/run/kernel/env.json', encoding='utf-8') as f:",
  '        os.environ.update(json.load(f))',
  '_aido_env()',
  'del _aido_env',
].join('\n');

/**
 * Requests awaiting a reply. A kernel that never replies must not grow this without bound: past
 * the cap, new requests are refused with an error reply (their client is not left waiting).
 */
const MAX_PENDING = 1024;

/** Largest content the gateway parses for its own decisions (a status, a reply's status). */
const POLICY_PARSE_MAX = 1024 ** 2;

/** Warnings about one kernel: this many per interval, then one line says how many were left out. */
const WARNINGS_PER_INTERVAL = 10;
const WARNING_INTERVAL_MS = 10_000;

/** How long after a kernel's socket dropped the gateway looks whether the sandbox still runs. */
const DISCONNECT_CHECK_MS = 1000;

interface PendingRequest {
  header: Header;
  channel: Channel;
  client: ClientChannels;
  /** performance.now() when the request was sent (execution durations). */
  at: number;
}

function parseJson(buf: Buffer): Record<string, unknown> {
  return parseJsonObject(buf, POLICY_PARSE_MAX);
}

function sizeOf(raw: RawMessage): number {
  let n =
    raw.headerBytes.length + raw.parentHeader.length + raw.metadata.length + raw.content.length;
  for (const b of raw.buffers) n += b.length;
  return n;
}

function replyTypeOf(requestType: string): string {
  return requestType.endsWith('_request')
    ? `${requestType.slice(0, -'_request'.length)}_reply`
    : `${requestType}_reply`;
}

export class KernelSession implements ChannelHost {
  readonly id: string;
  readonly name: string;
  executionState: ExecutionState = 'starting';
  lastActivity = new Date();
  reason: string | undefined;

  #signer: Signer | undefined;
  #sandbox: Sandbox | undefined;
  #links: ZmqLink[] = [];
  #gwShell: ZmqLink | undefined;
  #iopubLink: ZmqLink | undefined;
  #gwControl: ZmqLink | undefined;
  readonly #gwSession = `gateway-${randomUUID()}`;
  #kernelSession = '';
  #generation = 0;
  #clients = new Map<string, ClientChannels>();
  #pending = new Map<string, PendingRequest>();
  /**
   * Requests sent to the kernel whose busy/idle has not all come back: msg_id → its msg_type and
   * how many status messages of it may still pass a full rate-limit window (busy and idle).
   */
  #awaitingStatus = new Map<string, { msgType: string; left: number }>();
  #sandboxExited = false;
  #abuse: string | undefined;
  #gwWaiters = new Map<string, (raw: RawMessage) => void>();
  #iopubSeen = false;
  #activeExecution: string | undefined;
  /** Executions started (the deadline sweep judges only a window in which none did). */
  #executionsStarted = 0;
  #timedOut = new Set<string>();
  #killReason: string | undefined;
  /** Who started the interrupt ladder now climbing: the execution deadline or a client. */
  #ladderCause: 'deadline' | 'interrupt' = 'interrupt';
  #restarting: Promise<void> | undefined;
  #closed: Promise<void> | undefined;
  readonly #deadline: ExecutionDeadline;
  readonly #ladder: InterruptLadder;
  readonly #log: Logger;
  readonly #rate: IopubRateLimit;
  readonly #warnings = new LogRateLimit({
    perInterval: WARNINGS_PER_INTERVAL,
    intervalMs: WARNING_INTERVAL_MS,
  });
  readonly #gate: InboundGate;

  constructor(private readonly opts: KernelSessionOptions) {
    this.id = opts.id;
    this.name = opts.name;
    this.#log = opts.logger.child({ kernel: opts.id });
    this.#rate = new IopubRateLimit({ ...opts.iopubRate, windowMs: 3000 });
    this.#gate = new InboundGate(opts.inbound, {
      warn: (fields, msg) => {
        this.#warn(fields, msg);
      },
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
      onAbuse: (detail) => {
        void this.#onAbuse(detail);
      },
    });
    const timers = opts.timers ?? realTimers;
    this.#deadline = new ExecutionDeadline(opts.execTimeoutMs, timers);
    this.#ladder = new InterruptLadder(
      {
        interrupt: () =>
          this.#sendInterrupt(this.#ladderCause === 'deadline' ? 'deadline' : 'request'),
        kill: () =>
          this.#kill(
            this.#ladderCause === 'deadline'
              ? `killed by the watchdog: the execution exceeded the ${opts.execTimeoutMs / 1000} s limit and did not stop after an interrupt`
              : 'killed: the execution did not stop after an interrupt request',
          ),
      },
      opts.killGraceMs,
      timers,
    );
  }

  get signer(): Signer | undefined {
    return this.#signer;
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
    let n = 0;
    for (const c of this.#clients.values()) if (c.attached) n++;
    return n;
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
      throw new GatewayError('KERNEL_NOT_FOUND', `kernel ${this.id} was shut down while starting`);
    }
    this.#sandbox = sandbox;
    this.#signer = new Signer(sandbox.connection.key);
    this.#iopubSeen = false;
    this.#killReason = undefined;
    this.#abuse = undefined;
    this.#sandboxExited = false;
    this.#gate.reset();
    const ep = sandbox.connection.endpoints;
    const onErr = (err: unknown): void => {
      this.#warn({ err: String(err) }, 'gateway ZMQ socket failed');
    };
    const inbound = (channel: Channel) =>
      zmqInbound(this.opts.inbound, () => {
        this.#peerDropped(gen, channel);
      });
    const iopub = this.#subscribeIopub(gen, ep.iopub);
    this.#gwShell = ZmqLink.dealer(
      ep.shell,
      this.#gwSession,
      (f) => {
        this.#onGatewayReply(gen, 'shell', f);
      },
      onErr,
      inbound('shell'),
    );
    this.#gwControl = ZmqLink.dealer(
      ep.control,
      this.#gwSession,
      (f) => {
        this.#onGatewayReply(gen, 'control', f);
      },
      onErr,
      inbound('control'),
    );
    this.#links = [iopub, this.#gwShell, this.#gwControl];
    void sandbox.exited.then((exit) => {
      if (gen === this.#generation) this.#sandboxExited = true;
      if (gen === this.#generation && !this.#closed) void this.#onSandboxExit(exit);
    });
    try {
      await this.#waitReady(sandbox, gen);
      await sandbox.enforceLimits();
      // After the kernel directory is sealed and before any user code can run in this (never
      // reused) sandbox: the socket is created where nothing the kernel planted can be in the way.
      await this.opts.egress?.open(sandbox);
      if (pooled) await this.#injectEnv(sandbox);
    } catch (err) {
      this.#closeLinks();
      await sandbox.destroy().catch(() => undefined);
      throw err;
    }
    for (const c of this.#clients.values()) c.connectZmq(sandbox.connection);
    this.executionState = 'idle';
    this.reason = undefined;
    this.lastActivity = new Date();
    this.#log.info({ container: sandbox.id }, 'kernel ready');
  }

  /** Probes with kernel_info_request until a reply arrives and the iopub subscription is live. */
  async #waitReady(sandbox: Sandbox, gen: number): Promise<void> {
    const deadline = Date.now() + this.opts.startTimeoutMs;
    let exit: SandboxExit | undefined;
    void sandbox.exited.then((e) => (exit = e));
    let replied = false;
    while (!(replied && this.#iopubSeen)) {
      if (exit) {
        throw new GatewayError(
          'KERNEL_START_FAILED',
          `the sandbox stopped while starting (${describeSandboxExit(exit)})`,
        );
      }
      if (gen !== this.#generation || this.#closed) {
        throw new GatewayError(
          'KERNEL_NOT_FOUND',
          `kernel ${this.id} was shut down while starting`,
        );
      }
      if (Date.now() > deadline) {
        throw new GatewayError(
          'KERNEL_START_FAILED',
          `the kernel did not answer kernel_info within ${this.opts.startTimeoutMs} ms`,
        );
      }
      // On control: it answers even while the shell runs a cell (a kernel adopted mid-execution).
      const reply = await this.#gatewayRequest('control', 'kernel_info_request', {}, 250);
      if (reply) replied = true;
    }
  }

  /**
   * A pooled sandbox was started before its kernel existed: its environment (KERNEL_ID and the
   * client's allow-listed variables) arrives as a data file, read by fixed code, never spliced in.
   */
  async #injectEnv(sandbox: Sandbox): Promise<void> {
    await sandbox.putFile('env.json', JSON.stringify(this.opts.env));
    const reply = await this.#gatewayRequest(
      'shell',
      'execute_request',
      {
        code: INJECT_ENV_CODE,
        silent: true,
        store_history: false,
        user_expressions: {},
        allow_stdin: false,
        stop_on_error: false,
      },
      10_000,
    );
    if (!reply || parseJson(reply.content).status !== 'ok') {
      throw new GatewayError(
        'KERNEL_START_FAILED',
        'could not hand the environment to a pooled sandbox',
      );
    }
  }

  /** Sends a request from the gateway's own socket; resolves with the reply or undefined on timeout. */
  #gatewayRequest(
    channel: 'shell' | 'control',
    msgType: string,
    content: Record<string, unknown>,
    timeoutMs: number,
  ): Promise<RawMessage | undefined> {
    const link = channel === 'shell' ? this.#gwShell : this.#gwControl;
    const signer = this.#signer;
    if (!link || !signer) return Promise.resolve(undefined);
    const raw = toRaw(createMessage({ msgType, channel, session: this.#gwSession, content }));
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#gwWaiters.delete(raw.header.msg_id);
        resolve(undefined);
      }, timeoutMs);
      this.#gwWaiters.set(raw.header.msg_id, (reply) => {
        clearTimeout(timer);
        this.#gwWaiters.delete(raw.header.msg_id);
        resolve(reply);
      });
      link.send(encodeZmq(raw, signer));
    });
  }

  #onGatewayReply(gen: number, channel: Channel, frames: Buffer[]): void {
    if (gen !== this.#generation || !this.#signer || this.#abuse !== undefined) return;
    const raw = this.#gate.decode(frames, channel, this.#signer);
    if (!raw) return;
    this.#noteKernelSession(raw);
    const parentId = peekParent(raw.parentHeader).msg_id;
    if (parentId !== undefined) this.#gwWaiters.get(parentId)?.(raw);
  }

  /**
   * One of the gateway's own sockets lost its kernel peer. libzmq does that when the kernel sends
   * a frame over the size limit (or a broken frame); it also happens when the kernel exits. A
   * moment later, a sandbox that still runs committed a violation.
   */
  #peerDropped(gen: number, channel: Channel): void {
    const timer = setTimeout(() => {
      if (gen !== this.#generation || this.#sandboxExited || this.#closed) return;
      this.#gate.violation(
        'PEER_DISCONNECTED',
        `libzmq dropped the kernel's ${channel} connection: a frame over ${this.opts.inbound.maxMessageBytes} bytes or a broken frame`,
        { channel },
      );
      // libzmq does not always reconnect after a protocol error: subscribe afresh, so one
      // oversized output does not leave the kernel without output for the rest of its life.
      const old = this.#iopubLink;
      if (channel !== 'iopub' || !old || old.closed || this.#abuse !== undefined) return;
      const endpoint = this.#sandbox?.connection.endpoints.iopub;
      if (endpoint === undefined) return;
      old.close();
      const fresh = this.#subscribeIopub(gen, endpoint);
      this.#links = this.#links.map((l) => (l === old ? fresh : l));
    }, DISCONNECT_CHECK_MS);
    timer.unref();
  }

  /** The gateway's one iopub subscription to the sandbox (fanned out to every client). */
  #subscribeIopub(gen: number, endpoint: string): ZmqLink {
    const link = ZmqLink.subscriber(
      endpoint,
      (f) => {
        this.#onIopub(gen, f);
      },
      (err) => {
        this.#warn({ err: String(err) }, 'gateway ZMQ socket failed');
      },
      zmqInbound(this.opts.inbound, () => {
        this.#peerDropped(gen, 'iopub');
      }),
    );
    this.#iopubLink = link;
    return link;
  }

  /** A warning about this kernel: every string field clipped, at most a few per interval. */
  #warn(fields: Record<string, unknown>, msg: string): void {
    const suppressed = this.#warnings.take();
    if (suppressed === undefined) return;
    if (suppressed > 0)
      this.#log.warn({ suppressed }, `suppressed ${suppressed} warnings about this kernel`);
    this.#log.warn(clipFields(fields), msg);
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

  #noteKernelSession(raw: RawMessage): void {
    if (raw.header.session && raw.header.session !== this.#kernelSession)
      this.#kernelSession = raw.header.session;
  }

  #closeLinks(): void {
    this.opts.egress?.stop();
    for (const l of this.#links) l.close();
    this.#links = [];
    this.#iopubLink = undefined;
    this.#gwShell = undefined;
    this.#gwControl = undefined;
    for (const c of this.#clients.values()) c.disconnectZmq();
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
      this.#broadcastStatus('restarting');
      this.#settleAllPending(
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
        this.#broadcastStatus('starting');
        this.#broadcastStatus('idle');
      } catch (err) {
        this.executionState = 'dead';
        this.reason = `restart failed: ${(err as Error).message}`;
        this.#broadcastStatus('dead');
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
    if (this.#activeExecution !== undefined || this.executionState === 'busy') {
      if (!this.#ladder.running) this.#ladderCause = 'interrupt';
      void this.#ladder.run();
      return;
    }
    await this.#sendInterrupt('request');
  }

  #sendInterrupt(cause: 'deadline' | 'request'): Promise<void> {
    this.opts.metrics?.interrupt(cause);
    void this.#gatewayRequest('control', 'interrupt_request', {}, 1000);
    return Promise.resolve();
  }

  async #kill(reason: string): Promise<void> {
    if (this.#abuse !== undefined) return;
    this.#killReason = reason;
    this.#log.warn({ reason }, 'killing the sandbox');
    this.opts.metrics?.kill(this.#ladderCause);
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
      this.#deadline.disarmAll();
      const sandbox = this.#sandbox;
      if (opts.reason !== undefined) {
        this.reason = opts.reason;
        this.#broadcast(this.notice(opts.notice ?? `Kernel stopped: ${opts.reason}`));
      } else if (sandbox && this.executionState !== 'dead') {
        await Promise.race([
          this.#gatewayRequest('control', 'shutdown_request', { restart: false }, 1000),
          sandbox.exited,
        ]);
      }
      this.#generation++;
      this.executionState = 'dead';
      this.#broadcastStatus('dead');
      this.#settleAllPending(
        'KernelShutdown',
        'The kernel was shut down before this request finished.',
      );
      for (const c of this.#clients.values()) c.close(1001, 'kernel shut down');
      this.#clients.clear();
      this.#closeLinks();
      await sandbox?.destroy();
      this.#log.info(opts.reason === undefined ? {} : { reason: opts.reason }, 'kernel shut down');
    })();
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  // ---- clients ----------------------------------------------------------------------------

  /**
   * The client session `sessionId`, created (with its own ZMQ identity) when new. Throws
   * TOO_MANY_SESSIONS when the table is full of attached sessions.
   */
  channelsFor(sessionId: string): ClientChannels {
    let client = this.#clients.get(sessionId);
    if (!client) {
      this.#makeRoomForClient();
      client = new ClientChannels(this, sessionId, this.opts.clients);
      this.#clients.set(sessionId, client);
      if (this.#sandbox && this.executionState !== 'restarting')
        client.connectZmq(this.#sandbox.connection);
    }
    return client;
  }

  /**
   * Each client session holds three ZeroMQ sockets for the replay TTL after its socket drops, so
   * the count is capped: the session disconnected longest ago is evicted; when every session is
   * attached, the new one is refused.
   */
  #makeRoomForClient(): void {
    if (this.#clients.size < this.opts.maxClientSessions) return;
    let oldest: ClientChannels | undefined;
    for (const c of this.#clients.values()) {
      if (c.attached) continue;
      if (!oldest || c.detachedAt < oldest.detachedAt) oldest = c;
    }
    if (!oldest) {
      throw new GatewayError(
        'TOO_MANY_SESSIONS',
        `kernel ${this.id} already has ${this.#clients.size} connected client sessions (AIDO_MAX_CLIENT_SESSIONS)`,
      );
    }
    this.#log.info(
      { session: clip(oldest.sessionId) },
      'evicting the oldest disconnected client session',
    );
    this.#forgetClient(oldest);
    oldest.close(1001, 'client session evicted');
  }

  /** Drops a client session's pending requests (nobody can read their replies any more). */
  #forgetClient(client: ClientChannels): void {
    if (this.#clients.get(client.sessionId) === client) this.#clients.delete(client.sessionId);
    for (const [id, p] of this.#pending) if (p.client === client) this.#pending.delete(id);
  }

  /**
   * Attaches any sink (the agent API's collector, say) as client session `sessionId`; returns the
   * channels, whose `receive()` sends the client's messages and `detach()` ends the attachment.
   */
  attachSink(clientOrSession: ClientChannels | string, sink: ClientSink): ClientChannels {
    const client =
      typeof clientOrSession === 'string' ? this.channelsFor(clientOrSession) : clientOrSession;
    client.attach(sink);
    if (this.executionState === 'dead') client.deliver(this.#status('dead'));
    return client;
  }

  expired(client: ClientChannels): void {
    this.#forgetClient(client);
  }

  log(level: 'debug' | 'info' | 'warn', msg: string, extra: Record<string, unknown> = {}): void {
    if (level === 'warn') this.#warn(extra, msg);
    else this.#log[level](clipFields(extra), msg);
  }

  notice(text: string): RawMessage {
    return this.#synth('stream', 'iopub', { name: 'stderr', text: `[gateway] ${text}\n` });
  }

  fromClient(client: ClientChannels, raw: RawMessage): boolean {
    if (this.executionState === 'dead' || this.executionState === 'restarting' || !this.#sandbox) {
      this.#replyError(
        client,
        raw.header,
        raw.channel,
        'KernelUnavailable',
        `The kernel is ${this.executionState}; request dropped.`,
      );
      return false;
    }
    const type = raw.header.msg_type;
    // A kernel echoes a request's header as the parent_header of everything it answers; a header
    // over the kernel limit would make an honest kernel's replies look like abuse.
    if (raw.headerBytes.length > this.opts.inbound.maxHeaderBytes) {
      this.#replyError(
        client,
        raw.header,
        raw.channel,
        'RequestTooLarge',
        `The request header has ${raw.headerBytes.length} bytes, over the limit of ${this.opts.inbound.maxHeaderBytes} (AIDO_KERNEL_MAX_HEADER).`,
      );
      return false;
    }
    if (!UNTRACKED.has(type)) this.lastActivity = new Date();
    if (type.endsWith('_request') && raw.channel !== 'stdin') {
      if (this.#pending.size >= MAX_PENDING) {
        this.#replyError(
          client,
          raw.header,
          raw.channel,
          'TooManyPendingRequests',
          `The kernel has ${this.#pending.size} requests without a reply; request dropped.`,
        );
        return false;
      }
      this.#awaitStatus(raw.header.msg_id, type);
      this.#pending.set(raw.header.msg_id, {
        header: raw.header,
        channel: raw.channel,
        client,
        at: performance.now(),
      });
    }
    if (type === 'execute_request') {
      this.#log.debug({ session: client.sessionId, msg_id: raw.header.msg_id }, 'execute_request');
    } else if (type === 'interrupt_request') {
      this.opts.metrics?.interrupt('request');
    }
    return true;
  }

  fromKernel(_client: ClientChannels, raw: RawMessage): RawMessage | undefined {
    if (this.#abuse !== undefined) return undefined;
    this.#noteKernelSession(raw);
    // Only replies settle anything: peek at the parent header of those alone.
    const type = raw.header.msg_type;
    if (!type.endsWith('_reply')) return raw;
    const parentId = peekParent(raw.parentHeader).msg_id;
    if (parentId === undefined) return raw;
    const pending = this.#pending.get(parentId);
    this.#pending.delete(parentId);
    if (type !== 'execute_reply') return raw;
    let out = raw;
    if (this.#timedOut.has(parentId)) {
      this.#timedOut.delete(parentId);
      out = this.#asTimeoutReply(raw);
    }
    if (pending) this.#executionAnswered(pending, parseJson(out.content).status);
    return out;
  }

  /** An execute_request got its reply (from the kernel, or from the gateway for a dead kernel). */
  #executionAnswered(p: PendingRequest, status: unknown): void {
    const s = status === 'ok' || status === 'aborted' ? status : 'error';
    const seconds = (performance.now() - p.at) / 1000;
    this.opts.metrics?.execution(s, seconds);
    this.#log.debug(
      {
        session: p.client.sessionId,
        msg_id: p.header.msg_id,
        status: s,
        duration_ms: Math.round(seconds * 1000),
      },
      'execute_reply',
    );
  }

  #timeoutText(): string {
    return `Execution exceeded the ${this.opts.execTimeoutMs / 1000} s limit and was interrupted.`;
  }

  /** Rewrites the kernel's KeyboardInterrupt error output for an execution the deadline ended. */
  #asTimeoutError(raw: RawMessage): RawMessage {
    const content = parseJson(raw.content);
    const evalue = this.#timeoutText();
    return {
      ...raw,
      content: Buffer.from(
        JSON.stringify({
          ...content,
          ename: 'ExecutionTimeout',
          evalue,
          traceback: [`ExecutionTimeout: ${evalue}`],
        }),
      ),
    };
  }

  /** Rewrites an interrupted execute_reply so the client sees that the deadline ended it. */
  #asTimeoutReply(raw: RawMessage): RawMessage {
    const content = parseJson(raw.content);
    content.status = 'error';
    content.ename = 'ExecutionTimeout';
    content.evalue = this.#timeoutText();
    return { ...raw, content: Buffer.from(JSON.stringify(content)) };
  }

  // ---- kernel → clients -------------------------------------------------------------------

  #onIopub(gen: number, frames: Buffer[]): void {
    if (gen !== this.#generation || !this.#signer || this.#abuse !== undefined) return;
    const decoded = this.#gate.decode(frames, 'iopub', this.#signer);
    if (!decoded) return;
    let raw = decoded;
    this.#iopubSeen = true;
    this.#noteKernelSession(raw);
    const type = raw.header.msg_type;
    const {
      msg_id: parentId,
      msg_type: parentType,
      session: parentSession,
    } = peekParent(raw.parentHeader);

    const tracked = parentType === undefined || !UNTRACKED.has(parentType);
    const state = type === 'status' ? parseJson(raw.content).execution_state : undefined;
    if (type === 'status') {
      // Control requests (interrupt, shutdown, debug) and probes get busy/idle from the control
      // thread while an execution runs: they must not flip the kernel to idle (as in Jupyter Server).
      if (
        tracked &&
        (state === 'busy' || state === 'idle' || state === 'starting') &&
        this.executionState !== 'restarting' &&
        this.executionState !== 'dead'
      ) {
        this.executionState = state;
      }
      if (parentType === 'execute_request' && parentId) {
        if (state === 'busy') this.#executionStarted(parentId);
        else if (state === 'idle') this.#executionEnded(parentId);
      } else if (tracked && state === 'idle' && this.#activeExecution === undefined) {
        // A shell handler other than execute (a comm message, say) ended: an interrupt worked.
        this.#ladder.settle();
      }
    } else if (type === 'execute_input' && parentId) {
      this.#executionStarted(parentId);
    }
    // Output and the busy/idle of tracked requests count (so a long silent execution's end does);
    // the kernel's bare start-up status and what answers probes or interrupts do not.
    if (tracked && (type !== 'status' || parentType !== undefined)) this.lastActivity = new Date();
    // The kernel reports the deadline's interrupt as KeyboardInterrupt: say what happened.
    if (type === 'error' && parentId && this.#timedOut.has(parentId))
      raw = this.#asTimeoutError(raw);
    // The gateway's own probes stay between the gateway and the kernel.
    if (parentSession === this.#gwSession) return;
    const verdict = this.#rate.enabled
      ? this.#rate.check(sizeOf(raw), this.#statusExempt(type, state, parentId))
      : 'pass';
    if (verdict !== 'pass') {
      if (verdict === 'drop-and-notify') {
        this.#broadcast(
          this.notice(
            'IOPub output rate exceeded: output is dropped until this execution ends ' +
              `(limits: ${this.opts.iopubRate.msgsPerSecond || 'no'} messages/s, ${this.opts.iopubRate.bytesPerSecond || 'no'} bytes/s; ` +
              'AIDO_IOPUB_MSG_RATE_LIMIT, AIDO_IOPUB_DATA_RATE_LIMIT).',
          ),
        );
      }
      return;
    }
    for (const c of this.#clients.values()) {
      if (c.attached || parentSession === c.sessionId) c.deliver(raw);
    }
  }

  /** Remembers a request sent to the kernel, whose busy and idle may pass a full rate window. */
  #awaitStatus(msgId: string, msgType: string): void {
    // Bounded like the pending table; the oldest entries are the ones whose idle never came.
    while (this.#awaitingStatus.size >= MAX_PENDING) {
      const oldest = this.#awaitingStatus.keys().next().value;
      if (oldest === undefined) break;
      this.#awaitingStatus.delete(oldest);
    }
    this.#awaitingStatus.set(msgId, { msgType, left: 2 });
  }

  /**
   * Whether a status message is the busy or idle of a request the gateway sent (so it passes even
   * a full rate window: clients wait for it). The first idle of an execution also starts a fresh
   * window. A status the kernel made up, or repeats, is counted and dropped like any output.
   */
  #statusExempt(type: string, state: unknown, parentId: string | undefined): boolean {
    if (type !== 'status' || parentId === undefined) return false;
    const awaiting = this.#awaitingStatus.get(parentId);
    if (!awaiting || awaiting.left <= 0) return false;
    if (state === 'idle') {
      this.#awaitingStatus.delete(parentId);
      if (awaiting.msgType === 'execute_request') this.#rate.idle();
      return true;
    }
    if (state !== 'busy') return false;
    awaiting.left--;
    return true;
  }

  #executionStarted(msgId: string): void {
    this.#activeExecution = msgId;
    this.#executionsStarted++;
    this.#deadline.arm(msgId, () => {
      void this.#onDeadline(msgId);
    });
  }

  #executionEnded(msgId: string): void {
    this.#deadline.disarm(msgId);
    if (this.#activeExecution === msgId) this.#activeExecution = undefined;
    this.#ladder.settle();
  }

  async #onDeadline(msgId: string): Promise<void> {
    this.#log.warn(
      { msg_id: clip(msgId), limit_ms: this.opts.execTimeoutMs },
      'execution deadline reached: interrupting',
    );
    this.opts.metrics?.executionTimeout();
    this.#timedOut.add(msgId);
    if (!this.#ladder.running) this.#ladderCause = 'deadline';
    const outcome = await this.#ladder.run();
    this.#log.warn({ msg_id: clip(msgId), outcome }, 'execution deadline handled');
    if (outcome === 'interrupted' && this.opts.deadlineSweep)
      await this.#sweep(this.opts.deadlineSweep);
  }

  /** Deadline completeness: see {@link sweepAfterDeadline}. */
  async #sweep(policy: SweepPolicy): Promise<void> {
    const sandbox = this.#sandbox;
    if (!sandbox) return;
    const r = await sweepAfterDeadline(
      {
        sweep: (windowMs, samples) => sweepSandbox(sandbox, windowMs, samples),
        activity: () => ({
          started: this.#executionsStarted,
          busy: this.#activeExecution !== undefined,
        }),
        restart: async (why) => {
          if (this.#sandbox !== sandbox || this.#closed || this.#restarting) return;
          this.#log.warn({ why }, 'restarting after the execution deadline');
          this.#broadcast(this.notice(`Kernel restarted on a fresh sandbox: ${why}.`));
          await this.restart();
        },
      },
      policy,
    ).catch((err: unknown) => {
      this.#log.error({ err: String(err) }, 'deadline sweep failed');
      return undefined;
    });
    if (r) this.#log.info({ ...r }, 'deadline sweep done');
  }

  async #onSandboxExit(exit: SandboxExit): Promise<void> {
    // An abusive kernel is killed for good (a restart would hand it a fresh sandbox to abuse).
    const killedByWatchdog = this.#killReason !== undefined && this.#abuse === undefined;
    const reason =
      this.#killReason ??
      (exit.oomKilled
        ? 'OOM-killed: the kernel exceeded its memory limit'
        : exit.reason !== undefined
          ? `the sandbox stopped: ${describeSandboxExit(exit)}`
          : `the kernel exited with code ${exit.exitCode ?? 'unknown'}`);
    this.#log.warn({ reason, exit }, 'sandbox stopped');
    if (exit.oomKilled) this.opts.metrics?.oom();
    this.opts.onSandboxDeath?.({
      kernel_id: this.id,
      container_id: this.#sandbox?.id ?? null,
      cause: killedByWatchdog
        ? this.#ladderCause === 'deadline'
          ? 'watchdog_kill'
          : 'interrupt_kill'
        : exit.oomKilled
          ? 'oom'
          : 'exit',
      reason,
      exit_code: exit.exitCode,
    });
    this.#deadline.disarmAll();
    this.#ladder.settle();
    const active = this.#activeExecution;
    this.#activeExecution = undefined;
    this.reason = reason;
    this.#broadcast(this.notice(`Kernel died: ${reason}`));
    // The execution the ladder was stopping gets ExecutionKilled; everything else KernelDied.
    if (active && (this.#timedOut.has(active) || killedByWatchdog)) {
      this.#timedOut.delete(active);
      const p = this.#pending.get(active);
      if (p) {
        this.#pending.delete(active);
        const evalue =
          this.#ladderCause === 'deadline'
            ? `Execution exceeded the ${this.opts.execTimeoutMs / 1000} s limit, did not stop on interrupt, and the sandbox was killed.`
            : 'Execution did not stop after an interrupt request, and the sandbox was killed.';
        this.#replyError(p.client, p.header, p.channel, 'ExecutionKilled', evalue);
        this.#executionAnswered(p, 'error');
      }
    }
    this.#settleAllPending('KernelDied', `The kernel died: ${reason}`);
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
    this.#broadcastStatus('dead');
  }

  // ---- synthetic messages -----------------------------------------------------------------

  #synth(
    msgType: string,
    channel: Channel,
    content: Record<string, unknown>,
    parent?: Header,
  ): RawMessage {
    // Clients drop queued messages whose header.session differs from the kernel's, so synthetic
    // messages carry the kernel's own session id.
    const session = this.#kernelSession || this.#gwSession;
    return toRaw(
      createMessage({ msgType, channel, session, content, ...(parent ? { parent } : {}) }),
    );
  }

  #status(state: ExecutionState, parent?: Header): RawMessage {
    return this.#synth('status', 'iopub', { execution_state: state }, parent);
  }

  #broadcast(raw: RawMessage): void {
    for (const c of this.#clients.values()) if (c.attached) c.deliver(raw);
  }

  #broadcastStatus(state: ExecutionState): void {
    this.#broadcast(this.#status(state));
  }

  /** Settles a client's request with an error: iopub error (for executions) and an error reply. */
  #replyError(
    client: ClientChannels,
    request: Header,
    channel: Channel,
    ename: string,
    evalue: string,
  ): void {
    if (!request.msg_type.endsWith('_request')) return;
    const error = { status: 'error', ename, evalue, traceback: [`${ename}: ${evalue}`] };
    if (request.msg_type === 'execute_request') {
      client.deliver(
        this.#synth('error', 'iopub', { ename, evalue, traceback: error.traceback }, request),
      );
      client.deliver(
        this.#synth(
          replyTypeOf(request.msg_type),
          channel,
          { ...error, execution_count: null },
          request,
        ),
      );
      client.deliver(this.#status('idle', request));
    } else {
      client.deliver(this.#synth(replyTypeOf(request.msg_type), channel, error, request));
    }
  }

  #settleAllPending(ename: string, evalue: string): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#awaitingStatus.clear();
    this.#timedOut.clear();
    for (const p of pending) {
      this.#replyError(p.client, p.header, p.channel, ename, evalue);
      if (p.header.msg_type === 'execute_request') this.#executionAnswered(p, 'error');
    }
  }
}
