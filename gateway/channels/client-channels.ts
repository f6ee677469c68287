/**
 * One client session of one kernel: the client's own ZMQ identity (shell, control and stdin DEALERs
 * that share it, so input_request reaches the right client), the sink currently attached to it (a
 * WebSocket, or the agent API's collector), and a bounded buffer of what arrived while nothing was
 * attached. The channels outlive a dropped socket for a while, so a reconnect with the same
 * session_id loses nothing.
 */
import {
  encodeZmq,
  rawSize,
  type Channel,
  type RawMessage,
  type Signer,
} from '../../protocol/index.js';
import { zmqInbound, type InboundGate } from './inbound-gate.js';
import type { MetricsSink } from '../base/metrics.js';
import type { ConnectionInfo } from '../runtime/runtime.js';
import { ZmqLink } from '../runtime/zmq-link.js';
import { CloseCode } from '../base/close-codes.js';

type RequestChannel = 'shell' | 'control' | 'stdin';
const REQUEST_CHANNELS: readonly RequestChannel[] = ['shell', 'control', 'stdin'];

/** Where a client session's messages go: a WebSocket, or an in-process collector. */
export interface ClientSink {
  /**
   * Delivers one kernel message to the client. False: the sink can no longer deliver (its
   * transport is closing, or it dropped a client that did not read), so the message was not sent.
   */
  send(raw: RawMessage): boolean;
  /** Ends the sink from the gateway's side (code and reason for WebSockets). */
  close(code: CloseCode, reason: string): void;
}

/** What the kernel session offers its client channels. */
export interface ChannelHost {
  readonly signer: Signer | undefined;
  /** The kernel's inbound gate: every message from the sandbox is decoded (and counted) there. */
  readonly gate: InboundGate;
  /** A message from the client, before it is signed and sent; false drops it. */
  fromClient(client: ClientChannels, raw: RawMessage): boolean;
  /** A reply from the kernel on the client's own sockets, before delivery. Returns what to deliver. */
  fromKernel(client: ClientChannels, raw: RawMessage): RawMessage | undefined;
  /** The channels expired (nothing attached for the replay TTL) and closed. */
  expired(client: ClientChannels): void;
  /** Builds a gateway notice (stderr stream on iopub) for this client. */
  notice(text: string): RawMessage;
  log(level: 'debug' | 'info' | 'warn', msg: string, extra?: Record<string, unknown>): void;
}

export interface ClientChannelsOptions {
  replayMaxMessages: number;
  replayMaxBytes: number;
  replayTtlMs: number;
  /** Counts messages and bytes per channel and direction. */
  metrics?: MetricsSink;
}

function isRequestChannel(ch: Channel): ch is RequestChannel {
  return ch === 'shell' || ch === 'control' || ch === 'stdin';
}

export class ClientChannels {
  #sink: ClientSink | null = null;
  #links = new Map<RequestChannel, ZmqLink>();
  #buffer: RawMessage[] = [];
  #bufferBytes = 0;
  #dropped = 0;
  /** Why the last connection was dropped with its unsent output (told on the next attach). */
  #gap: string | undefined;
  #detachedAt = 0;
  #expiry: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    private readonly host: ChannelHost,
    readonly sessionId: string,
    readonly opts: ClientChannelsOptions,
  ) {}

  get attached(): boolean {
    return this.#sink !== null;
  }

  /** When the last sink went away (ms since the epoch); 0 while one is attached or never was. */
  get detachedAt(): number {
    return this.#detachedAt;
  }

  /**
   * The attached sink dropped output it could not deliver (a client that stopped reading): the
   * next connection of this session is told there is a gap before it gets the replay.
   */
  noteGap(reason: string): void {
    this.#gap = reason;
  }

  /** (Re)connects the client's DEALERs to a sandbox; called at creation and after every restart. */
  connectZmq(conn: ConnectionInfo): void {
    this.disconnectZmq();
    if (this.#closed) return;
    for (const ch of REQUEST_CHANNELS) {
      const link = ZmqLink.dealer(
        conn.endpoints[ch],
        this.sessionId,
        (frames) => {
          this.#onKernelFrames(ch, frames);
        },
        (err) => {
          this.host.log('warn', 'client ZMQ socket failed', {
            session: this.sessionId,
            channel: ch,
            err: String(err),
          });
        },
        zmqInbound(this.host.gate.limits),
      );
      this.#links.set(ch, link);
    }
  }

  disconnectZmq(): void {
    for (const link of this.#links.values()) link.close();
    this.#links.clear();
  }

  /** Attaches a sink, replacing a stale one, and replays what was buffered. */
  attach(sink: ClientSink): void {
    if (this.#closed) {
      sink.close(CloseCode.INTERNAL_ERROR, 'this client session has closed');
      return;
    }
    const stale = this.#sink;
    if (stale && stale !== sink) {
      this.host.log('info', 'replacing stale connection', { session: this.sessionId });
      this.#sink = null;
      stale.close(CloseCode.NORMAL, 'replaced by a new connection with the same session_id');
    }
    clearTimeout(this.#expiry);
    this.#expiry = undefined;
    this.#sink = sink;
    this.#detachedAt = 0;
    if (this.#gap !== undefined) {
      sink.send(this.host.notice(this.#gap));
      this.#gap = undefined;
    }
    if (this.#dropped > 0) {
      sink.send(
        this.host.notice(
          `${this.#dropped} messages were dropped while this client was disconnected (replay buffer full).`,
        ),
      );
      this.#dropped = 0;
    }
    const replay = this.#buffer;
    this.#buffer = [];
    this.#bufferBytes = 0;
    for (const raw of replay) sink.send(raw);
  }

  /** The sink went away (socket closed): buffer from now on, and expire after the replay TTL. */
  detach(sink: ClientSink): void {
    if (this.#sink !== sink) return;
    this.#sink = null;
    this.#detachedAt = Date.now();
    if (this.#closed) return;
    this.#expiry = setTimeout(() => {
      this.close();
      this.host.expired(this);
    }, this.opts.replayTtlMs);
  }

  /** Sends a kernel message to the client, or buffers it while nothing is attached. */
  deliver(raw: RawMessage): void {
    if (this.#closed) return;
    const size = rawSize(raw);
    this.opts.metrics?.message(raw.channel, 'to_client', size);
    if (this.#sink) {
      if (this.#sink.send(raw)) return;
      // The transport is going away but its close has not reached us yet (a client that vanished
      // mid-execution): buffer from here on, as after the close, instead of losing the message.
      this.detach(this.#sink);
    }
    this.#buffer.push(raw);
    this.#bufferBytes += size;
    while (
      this.#buffer.length > 0 &&
      (this.#buffer.length > this.opts.replayMaxMessages ||
        this.#bufferBytes > this.opts.replayMaxBytes)
    ) {
      const old = this.#buffer.shift();
      if (old) this.#bufferBytes -= rawSize(old);
      this.#dropped++;
    }
  }

  /** A decoded message from the client: checked by the kernel session, signed, and sent. */
  receive(raw: RawMessage): void {
    if (!isRequestChannel(raw.channel)) {
      this.deliver(
        this.host.notice(
          `messages on the ${raw.channel} channel cannot be sent by clients; dropped ${raw.header.msg_type}`,
        ),
      );
      return;
    }
    if (!this.host.fromClient(this, raw)) return;
    const signer = this.host.signer;
    const link = this.#links.get(raw.channel);
    if (!signer || !link) return;
    this.opts.metrics?.message(raw.channel, 'to_kernel', rawSize(raw));
    link.send(encodeZmq(raw, signer));
  }

  #onKernelFrames(channel: RequestChannel, frames: Buffer[]): void {
    const signer = this.host.signer;
    if (!signer) return;
    const raw = this.host.gate.decode(frames, channel, signer);
    if (!raw) return;
    const out = this.host.fromKernel(this, raw);
    if (out) this.deliver(out);
  }

  /** Closes the sink (with `code`), the ZMQ sockets and the buffer. Idempotent. */
  close(code: CloseCode = CloseCode.GOING_AWAY, reason = 'kernel shut down'): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#expiry);
    this.disconnectZmq();
    this.#buffer = [];
    const sink = this.#sink;
    this.#sink = null;
    sink?.close(code, reason);
  }
}
