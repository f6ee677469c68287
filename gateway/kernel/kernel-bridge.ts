/**
 * The kernel's side of its client sessions (the ChannelHost of their ClientChannels): the client
 * table, what a client's request must pass before it reaches the kernel, the replies that settle
 * pending requests, iopub's fan-out, and the gateway's own messages to clients.
 */
import type { RawMessage, Signer } from '../../protocol/index.js';
import {
  ClientChannels,
  type ChannelHost,
  type ClientChannelsOptions,
  type ClientSink,
} from '../channels/client-channels.js';
import type { InboundGate } from '../channels/inbound-gate.js';
import { clipFields, LogRateLimit } from '../base/log-limit.js';
import type { Logger } from '../base/logger.js';
import type { MetricsSink } from '../base/metrics.js';
import type { ConnectionInfo } from '../runtime/runtime.js';
import { ClientTable } from './client-table.js';
import type { Executions } from './executions.js';
import { IopubState } from './iopub-state.js';
import { UNTRACKED, type ExecutionState } from './kernel-model.js';
import { awaitsReply, isReply } from './message-routing.js';
import type { Synthetic } from './synthetic.js';

/** What the bridge reads of its kernel. */
export interface BridgeHost {
  state(): ExecutionState;
  setState(state: ExecutionState): void;
  /** The kernel was used now (its culling clock restarts). */
  touch(): void;
  signer(): Signer | undefined;
  /** The current sandbox's connection, undefined while there is none. */
  connection(): ConnectionInfo | undefined;
  /** False while the kernel must not be read (it abused the protocol). */
  readable(): boolean;
}

/** Warnings about one kernel: this many per interval, then one line says how many were left out. */
const WARNINGS_PER_INTERVAL = 10;
const WARNING_INTERVAL_MS = 10_000;

export interface BridgeOptions {
  kernelId: string;
  gatewaySession: string;
  gate: InboundGate;
  executions: Executions;
  synthetic: Synthetic;
  clients: ClientChannelsOptions;
  maxClientSessions: number;
  iopubRate: { msgsPerSecond: number; bytesPerSecond: number };
  maxHeaderBytes: number;
  log: Logger;
  metrics?: MetricsSink | undefined;
}

export class KernelBridge implements ChannelHost {
  readonly iopub: IopubState;
  readonly #clients: ClientTable;
  readonly #warnings = new LogRateLimit({
    perInterval: WARNINGS_PER_INTERVAL,
    intervalMs: WARNING_INTERVAL_MS,
  });

  constructor(
    private readonly host: BridgeHost,
    private readonly o: BridgeOptions,
  ) {
    this.#clients = new ClientTable({
      kernelId: o.kernelId,
      maxClientSessions: o.maxClientSessions,
      log: o.log,
      create: (sessionId) => {
        const client = new ClientChannels(this, sessionId, o.clients);
        const connection = host.connection();
        if (connection && host.state() !== 'restarting') client.connectZmq(connection);
        return client;
      },
      forgotten: (client) => {
        o.executions.forgetClient(client);
      },
    });
    this.iopub = new IopubState(
      {
        state: () => host.state(),
        setState: (state) => {
          host.setState(state);
        },
        touch: () => {
          host.touch();
        },
        executions: o.executions,
        gatewaySession: o.gatewaySession,
        fanOut: (raw, parentSession) => {
          this.#clients.fanOut(raw, parentSession);
        },
        broadcastNotice: (text) => {
          this.broadcast(this.notice(text));
        },
      },
      o.iopubRate,
    );
  }

  get signer(): Signer | undefined {
    return this.host.signer();
  }

  get gate(): InboundGate {
    return this.o.gate;
  }

  get clients(): ClientTable {
    return this.#clients;
  }

  /** To every attached client. */
  broadcast(raw: RawMessage): void {
    this.#clients.broadcast(raw);
  }

  broadcastStatus(state: ExecutionState): void {
    this.broadcast(this.o.synthetic.status(state));
  }

  /** Settles every pending request with an error (restart, death, shutdown). */
  settleAll(ename: string, evalue: string): void {
    this.iopub.clear();
    this.o.executions.settleAll(ename, evalue);
  }

  /** Attaches `sink` as client session `sessionId` (or to `client`); see Kernel.attachSink. */
  attachSink(clientOrSession: ClientChannels | string, sink: ClientSink): ClientChannels {
    const client =
      typeof clientOrSession === 'string'
        ? this.#clients.channelsFor(clientOrSession)
        : clientOrSession;
    client.attach(sink);
    if (this.host.state() === 'dead') client.deliver(this.o.synthetic.status('dead'));
    return client;
  }

  expired(client: ClientChannels): void {
    this.#clients.forget(client);
  }

  log(level: 'debug' | 'info' | 'warn', msg: string, extra: Record<string, unknown> = {}): void {
    if (level === 'warn') this.#warn(extra, msg);
    else this.o.log[level](clipFields(extra), msg);
  }

  /** A warning about this kernel: every string field clipped, at most a few per interval. */
  #warn(fields: Record<string, unknown>, msg: string): void {
    const suppressed = this.#warnings.take();
    if (suppressed === undefined) return;
    if (suppressed > 0)
      this.o.log.warn({ suppressed }, `suppressed ${suppressed} warnings about this kernel`);
    this.o.log.warn(clipFields(fields), msg);
  }

  notice(text: string): RawMessage {
    return this.o.synthetic.notice(text);
  }

  fromClient(client: ClientChannels, raw: RawMessage): boolean {
    const refuse = (ename: string, evalue: string): false => {
      this.o.synthetic.replyError(client, raw.header, raw.channel, ename, evalue);
      return false;
    };
    const state = this.host.state();
    if (state === 'dead' || state === 'restarting' || !this.host.connection())
      return refuse('KernelUnavailable', `The kernel is ${state}; request dropped.`);
    const type = raw.header.msg_type;
    // A kernel echoes a request's header as the parent_header of everything it answers; a header
    // over the kernel limit would make an honest kernel's replies look like abuse.
    const maxHeader = this.o.maxHeaderBytes;
    if (raw.headerBytes.length > maxHeader)
      return refuse(
        'RequestTooLarge',
        `The request header has ${raw.headerBytes.length} bytes, over the limit of ${maxHeader} (AIDO_KERNEL_MAX_HEADER).`,
      );
    if (!UNTRACKED.has(type)) this.host.touch();
    if (awaitsReply(type, raw.channel)) {
      if (!this.o.executions.track(client, raw)) return false;
      this.iopub.awaitStatus(raw.header.msg_id, type);
    }
    if (type === 'execute_request') {
      this.o.log.debug({ session: client.sessionId, msg_id: raw.header.msg_id }, 'execute_request');
    } else if (type === 'interrupt_request') {
      this.o.metrics?.interrupt('request');
    }
    return true;
  }

  fromKernel(_client: ClientChannels, raw: RawMessage): RawMessage | undefined {
    if (!this.host.readable()) return undefined;
    this.o.synthetic.note(raw);
    // Only replies settle anything: peek at the parent header of those alone.
    if (!isReply(raw.header.msg_type)) return raw;
    return this.o.executions.settle(raw);
  }
}
