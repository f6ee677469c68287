/**
 * Prometheus metrics (`GET /metrics`). The gateway's parts report events through the narrow
 * {@link MetricsSink} interface, so they need not know prom-client; {@link GatewayMetrics} turns the
 * events into metrics in a registry of its own (never prom-client's global one: tests run several
 * gateways in one process). State (kernels by state, the warm pool) is read when scraped.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Channel } from '../../protocol/index.js';

/** Where a kernel's first sandbox came from. */
export type StartSource = 'pool' | 'cold' | 'adopted';
/** Why the gateway killed a sandbox. */
export type KillCause = 'deadline' | 'interrupt' | 'panic' | 'abuse';
/** Who asked for an interrupt: the execution deadline, or a client (REST or control channel). */
export type InterruptCause = 'deadline' | 'request';
/** Which way a message crossed the bridge. */
export type Direction = 'to_kernel' | 'to_client';

/** The events the gateway's parts report. Every method must be cheap: some run per message. */
export interface MetricsSink {
  kernelStart(source: StartSource, outcome: 'ok' | 'error', seconds: number): void;
  /** An execute_request was answered (by the kernel, or by the gateway when the kernel died). */
  execution(status: 'ok' | 'error' | 'aborted', seconds: number): void;
  executionTimeout(): void;
  interrupt(cause: InterruptCause): void;
  kill(cause: KillCause): void;
  oom(): void;
  culled(): void;
  websocketOpened(): void;
  websocketClosed(): void;
  /** One message through the bridge; `bytes` counts its parts (frames' framing excluded). */
  message(channel: Channel, direction: Direction, bytes: number): void;
  /** A kernel sent something the inbound gate refused (`code`: a ProtocolError code). */
  protocolViolation(code: string): void;
  /** A client was dropped because it did not read (its send buffer passed the cap). */
  slowClientDropped(): void;
}

/** What the gauges read at scrape time. */
export interface MetricsSource {
  /** Execution state of every kernel, including those still starting. */
  kernelStates(): Iterable<string>;
  pool(): { ready: number; starting: number };
}

const KERNEL_STATES = ['starting', 'idle', 'busy', 'restarting', 'dead'] as const;
const CHANNELS: readonly Channel[] = ['shell', 'control', 'stdin', 'iopub'];
const DIRECTIONS: readonly Direction[] = ['to_kernel', 'to_client'];
const CHANNEL_INDEX: Record<Channel, number> = { shell: 0, control: 1, stdin: 2, iopub: 3 };

/** The proxy's events, for Prometheus (the egress proxy reports them here). */
export interface EgressMetricsSink {
  /** `denied`: by the policy or a limit; `failed`: allowed, but the upstream could not be reached. */
  egressConnection(verdict: 'allowed' | 'denied' | 'failed'): void;
  egressBytes(direction: 'up' | 'down', bytes: number): void;
  egressOpen(delta: 1 | -1): void;
}

export class GatewayMetrics implements MetricsSink, EgressMetricsSink {
  readonly registry = new Registry();
  #source: MetricsSource | undefined;

  // Per-message counts live in plain arrays (no label hashing on the hot path) and are copied into
  // the counters when scraped.
  readonly #msgs = new Float64Array(CHANNELS.length * DIRECTIONS.length);
  readonly #bytes = new Float64Array(CHANNELS.length * DIRECTIONS.length);

  readonly #starts: Counter<'source' | 'outcome'>;
  readonly #startSeconds: Histogram<'source'>;
  readonly #executions: Counter<'status'>;
  readonly #executionSeconds: Histogram;
  readonly #timeouts: Counter;
  readonly #interrupts: Counter<'cause'>;
  readonly #kills: Counter<'cause'>;
  readonly #ooms: Counter;
  readonly #culled: Counter;
  readonly #wsOpen: Gauge;
  readonly #wsConnects: Counter;
  readonly #violations: Counter<'code'>;
  readonly #slowClients: Counter;
  readonly #egressConnections: Counter<'verdict'>;
  readonly #egressBytes: Counter<'direction'>;
  readonly #egressOpen: Gauge;

  constructor() {
    const registers = [this.registry];
    const self = (): GatewayMetrics => this;
    new Gauge({
      name: 'aido_kernels',
      help: 'Kernels by execution state',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<string, number>(KERNEL_STATES.map((s) => [s, 0]));
        for (const s of self().#source?.kernelStates() ?? [])
          counts.set(s, (counts.get(s) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'aido_warm_pool_ready',
      help: 'Warm-pool sandboxes ready for a kernel',
      registers,
      collect() {
        this.set(self().#source?.pool().ready ?? 0);
      },
    });
    new Gauge({
      name: 'aido_warm_pool_starting',
      help: 'Warm-pool sandboxes being started',
      registers,
      collect() {
        this.set(self().#source?.pool().starting ?? 0);
      },
    });
    this.#starts = new Counter({
      name: 'aido_kernel_starts_total',
      help: 'Kernel starts by sandbox source (pool, cold, adopted) and outcome (ok, error)',
      labelNames: ['source', 'outcome'],
      registers,
    });
    this.#startSeconds = new Histogram({
      name: 'aido_kernel_start_duration_seconds',
      help: 'Time from a start request to the kernel answering kernel_info',
      labelNames: ['source'],
      buckets: [0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60],
      registers,
    });
    this.#executions = new Counter({
      name: 'aido_executions_total',
      help: 'execute_requests answered, by reply status (ok, error, aborted)',
      labelNames: ['status'],
      registers,
    });
    this.#executionSeconds = new Histogram({
      name: 'aido_execution_duration_seconds',
      help: 'Time from execute_request to execute_reply',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.#timeouts = new Counter({
      name: 'aido_execution_timeouts_total',
      help: 'Executions that reached the execution deadline (AIDO_EXEC_TIMEOUT)',
      registers,
    });
    this.#interrupts = new Counter({
      name: 'aido_kernel_interrupts_total',
      help: 'Interrupts sent to kernels, by cause (deadline, request)',
      labelNames: ['cause'],
      registers,
    });
    this.#kills = new Counter({
      name: 'aido_kernel_kills_total',
      help: 'Sandboxes killed by the gateway, by cause (deadline, interrupt, panic, abuse)',
      labelNames: ['cause'],
      registers,
    });
    this.#ooms = new Counter({
      name: 'aido_kernel_ooms_total',
      help: 'Kernels OOM-killed (their sandbox exceeded its memory limit)',
      registers,
    });
    this.#culled = new Counter({
      name: 'aido_kernels_culled_total',
      help: 'Kernels shut down by the idle culler',
      registers,
    });
    this.#wsOpen = new Gauge({
      name: 'aido_websocket_connections',
      help: 'Open channels WebSockets',
      registers,
    });
    this.#wsConnects = new Counter({
      name: 'aido_websocket_connects_total',
      help: 'Channels WebSockets opened',
      registers,
    });
    this.#violations = new Counter({
      name: 'aido_kernel_protocol_violations_total',
      help: 'Messages from kernels refused by the inbound gate (size limits, framing, signature), by code',
      labelNames: ['code'],
      registers,
    });
    this.#slowClients = new Counter({
      name: 'aido_websocket_slow_client_drops_total',
      help: 'Channels WebSockets dropped because their unsent data passed AIDO_WS_MAX_BUFFERED',
      registers,
    });
    this.#egressConnections = new Counter({
      name: 'aido_egress_connections_total',
      help: 'Egress proxy connections and requests, by verdict (allowed, denied by policy or limit, failed upstream)',
      labelNames: ['verdict'],
      registers,
    });
    this.#egressBytes = new Counter({
      name: 'aido_egress_bytes_total',
      help: 'Bytes through the egress proxy, by direction (up: from sandboxes, down: to sandboxes)',
      labelNames: ['direction'],
      registers,
    });
    this.#egressOpen = new Gauge({
      name: 'aido_egress_open_connections',
      help: 'Open connections from sandboxes to the egress proxy',
      registers,
    });
    for (const verdict of ['allowed', 'denied', 'failed'] as const)
      this.#egressConnections.inc({ verdict }, 0);
    for (const direction of ['up', 'down'] as const) this.#egressBytes.inc({ direction }, 0);
    // Every label value a query may rate() on is present from the start, at 0.
    for (const source of ['pool', 'cold', 'adopted'] as const) {
      for (const outcome of ['ok', 'error'] as const) this.#starts.inc({ source, outcome }, 0);
      this.#startSeconds.zero({ source });
    }
    for (const status of ['ok', 'error', 'aborted'] as const) this.#executions.inc({ status }, 0);
    for (const cause of ['deadline', 'request'] as const) this.#interrupts.inc({ cause }, 0);
    for (const cause of ['deadline', 'interrupt', 'panic', 'abuse'] as const)
      this.#kills.inc({ cause }, 0);
    const copy = (from: Float64Array) =>
      function (this: Counter<'channel' | 'direction'>): void {
        this.reset();
        CHANNELS.forEach((channel, c) => {
          DIRECTIONS.forEach((direction, d) => {
            // Clients never send on iopub; every other pair is shown, from 0.
            if (channel === 'iopub' && direction === 'to_kernel') return;
            this.inc({ channel, direction }, from[c * DIRECTIONS.length + d] ?? 0);
          });
        });
      };
    new Counter({
      name: 'aido_messages_total',
      help: 'Jupyter messages through the bridge, by channel and direction (to_kernel, to_client: once per client session)',
      labelNames: ['channel', 'direction'],
      registers,
      collect: copy(this.#msgs),
    });
    new Counter({
      name: 'aido_message_bytes_total',
      help: 'Bytes of Jupyter messages through the bridge (header, parent header, metadata, content, buffers)',
      labelNames: ['channel', 'direction'],
      registers,
      collect: copy(this.#bytes),
    });
  }

  /** Where the gauges read kernel and pool state from. */
  observe(source: MetricsSource): void {
    this.#source = source;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  kernelStart(source: StartSource, outcome: 'ok' | 'error', seconds: number): void {
    this.#starts.inc({ source, outcome });
    this.#startSeconds.observe({ source }, seconds);
  }

  execution(status: 'ok' | 'error' | 'aborted', seconds: number): void {
    this.#executions.inc({ status });
    this.#executionSeconds.observe(seconds);
  }

  executionTimeout(): void {
    this.#timeouts.inc();
  }

  interrupt(cause: InterruptCause): void {
    this.#interrupts.inc({ cause });
  }

  kill(cause: KillCause): void {
    this.#kills.inc({ cause });
  }

  oom(): void {
    this.#ooms.inc();
  }

  culled(): void {
    this.#culled.inc();
  }

  websocketOpened(): void {
    this.#wsOpen.inc();
    this.#wsConnects.inc();
  }

  websocketClosed(): void {
    this.#wsOpen.dec();
  }

  message(channel: Channel, direction: Direction, bytes: number): void {
    const i = CHANNEL_INDEX[channel] * DIRECTIONS.length + (direction === 'to_kernel' ? 0 : 1);
    this.#msgs[i] = (this.#msgs[i] ?? 0) + 1;
    this.#bytes[i] = (this.#bytes[i] ?? 0) + bytes;
  }

  protocolViolation(code: string): void {
    this.#violations.inc({ code });
  }

  slowClientDropped(): void {
    this.#slowClients.inc();
  }

  egressConnection(verdict: 'allowed' | 'denied' | 'failed'): void {
    this.#egressConnections.inc({ verdict });
  }

  egressBytes(direction: 'up' | 'down', bytes: number): void {
    this.#egressBytes.inc({ direction }, bytes);
  }

  egressOpen(delta: 1 | -1): void {
    this.#egressOpen.inc(delta);
  }
}
