/**
 * One client session of one kernel: the client's own ZMQ identity (shell, control and stdin DEALERs
 * that share it, so input_request reaches the right client), the WebSocket currently attached to
 * it, and a bounded buffer of what arrived while no WebSocket was attached. The channels outlive a
 * dropped socket for a while, so a reconnect with the same session_id loses nothing.
 */
import type { WebSocket } from 'ws';
import {
  decodeLegacy,
  decodeV1,
  encodeLegacyRaw,
  encodeV1,
  encodeZmq,
  decodeZmq,
  ProtocolError,
  toRaw,
  type Channel,
  type RawMessage,
  type Signer,
} from '../protocol/index.js';
import type { ConnectionInfo } from './runtime.js';
import { ZmqLink } from './zmq-link.js';

/** The two WebSocket framings. */
export type WireProtocol = 'v1' | 'legacy';

type RequestChannel = 'shell' | 'control' | 'stdin';
const REQUEST_CHANNELS: readonly RequestChannel[] = ['shell', 'control', 'stdin'];

/** What the kernel session offers its client channels. */
export interface ChannelHost {
  readonly signer: Signer | undefined;
  /** A message from the client, before it is signed and sent; false drops it. */
  fromClient(client: ClientChannels, raw: RawMessage): boolean;
  /** A reply from the kernel on the client's own sockets, before delivery. Returns what to deliver. */
  fromKernel(client: ClientChannels, raw: RawMessage): RawMessage | undefined;
  /** The client's WebSocket attached or detached. */
  connectionsChanged(): void;
  /** The channels expired (no WebSocket for the replay TTL) and closed. */
  expired(client: ClientChannels): void;
  /** Builds a gateway notice (stderr stream on iopub) for this client. */
  notice(text: string): RawMessage;
  log(level: 'debug' | 'info' | 'warn', msg: string, extra?: Record<string, unknown>): void;
}

export interface ClientChannelsOptions {
  replayMaxMessages: number;
  replayMaxBytes: number;
  replayTtlMs: number;
  pingIntervalMs: number;
}

function sizeOf(raw: RawMessage): number {
  let n =
    raw.headerBytes.length + raw.parentHeader.length + raw.metadata.length + raw.content.length;
  for (const b of raw.buffers) n += b.length;
  return n;
}

export class ClientChannels {
  #ws: WebSocket | null = null;
  #protocol: WireProtocol = 'legacy';
  #links = new Map<RequestChannel, ZmqLink>();
  #buffer: RawMessage[] = [];
  #bufferBytes = 0;
  #dropped = 0;
  #expiry: NodeJS.Timeout | undefined;
  #ping: NodeJS.Timeout | undefined;
  #alive = true;
  #closed = false;

  constructor(
    private readonly host: ChannelHost,
    readonly sessionId: string,
    private readonly opts: ClientChannelsOptions,
  ) {}

  get attached(): boolean {
    return this.#ws !== null;
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
          this.host.log('warn', 'client ZMQ socket failed', { channel: ch, err: String(err) });
        },
      );
      this.#links.set(ch, link);
    }
  }

  disconnectZmq(): void {
    for (const link of this.#links.values()) link.close();
    this.#links.clear();
  }

  /** Attaches a WebSocket, replacing a stale one, and replays what was buffered. */
  attach(ws: WebSocket, protocol: WireProtocol): void {
    if (this.#ws && this.#ws !== ws) {
      this.host.log('info', 'replacing stale connection', { session: this.sessionId });
      const stale = this.#ws;
      this.#ws = null;
      stale.close(1000, 'replaced by a new connection with the same session_id');
    }
    clearTimeout(this.#expiry);
    this.#expiry = undefined;
    this.#ws = ws;
    this.#protocol = protocol;
    this.#alive = true;
    ws.on('message', (data: Buffer | Buffer[] | ArrayBuffer, isBinary: boolean) => {
      this.#onFrame(ws, data, isBinary);
    });
    ws.on('pong', () => {
      this.#alive = true;
    });
    ws.on('close', () => {
      this.#detach(ws);
    });
    ws.on('error', (err) => {
      this.host.log('debug', 'websocket error', { err: String(err) });
    });
    if (this.opts.pingIntervalMs > 0) {
      this.#ping = setInterval(() => {
        if (!this.#alive) {
          ws.terminate();
          return;
        }
        this.#alive = false;
        ws.ping();
      }, this.opts.pingIntervalMs);
    }
    this.host.connectionsChanged();
    if (this.#dropped > 0) {
      this.#write(
        this.host.notice(
          `${this.#dropped} messages were dropped while this client was disconnected (replay buffer full).`,
        ),
      );
      this.#dropped = 0;
    }
    const replay = this.#buffer;
    this.#buffer = [];
    this.#bufferBytes = 0;
    for (const raw of replay) this.#write(raw);
  }

  #detach(ws: WebSocket): void {
    if (this.#ws !== ws) return;
    this.#ws = null;
    clearInterval(this.#ping);
    this.#ping = undefined;
    this.host.connectionsChanged();
    if (this.#closed) return;
    this.#expiry = setTimeout(() => {
      this.close();
      this.host.expired(this);
    }, this.opts.replayTtlMs);
  }

  /** Sends a kernel message to the client, or buffers it while no WebSocket is attached. */
  deliver(raw: RawMessage): void {
    if (this.#closed) return;
    if (this.#ws) {
      this.#write(raw);
      return;
    }
    const size = sizeOf(raw);
    this.#buffer.push(raw);
    this.#bufferBytes += size;
    while (
      this.#buffer.length > 0 &&
      (this.#buffer.length > this.opts.replayMaxMessages ||
        this.#bufferBytes > this.opts.replayMaxBytes)
    ) {
      const old = this.#buffer.shift();
      if (old) this.#bufferBytes -= sizeOf(old);
      this.#dropped++;
    }
  }

  #write(raw: RawMessage): void {
    const ws = this.#ws;
    if (!ws || ws.readyState !== ws.OPEN) return;
    if (this.#protocol === 'v1') {
      ws.send(encodeV1(raw), { binary: true });
      return;
    }
    let frame: { data: Buffer | string; binary: boolean };
    try {
      // Splicing kernel bytes into one JSON text needs each part to be exactly one JSON object;
      // code in the kernel could otherwise forge fields of the message the client sees.
      frame = encodeLegacyRaw(raw);
    } catch (err) {
      this.host.log('warn', 'dropped a kernel message that is not valid JSON', {
        msg_type: raw.header.msg_type,
        err: String(err),
      });
      return;
    }
    ws.send(frame.data, { binary: frame.binary });
  }

  #onFrame(ws: WebSocket, data: Buffer | Buffer[] | ArrayBuffer, isBinary: boolean): void {
    const buf = Buffer.isBuffer(data)
      ? data
      : Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.from(data);
    let raw: RawMessage;
    try {
      raw =
        this.#protocol === 'v1'
          ? decodeV1(buf)
          : toRaw(decodeLegacy(isBinary ? buf : buf.toString('utf8'), isBinary));
    } catch (err) {
      const reason =
        err instanceof ProtocolError ? `${err.code}: ${err.message}` : 'MALFORMED_FRAME';
      this.host.log('warn', 'malformed frame from client', { session: this.sessionId, reason });
      // 1007: the frame's data is inconsistent with the protocol. Close reasons are capped at 123 bytes.
      ws.close(1007, Buffer.from(reason).subarray(0, 120).toString());
      return;
    }
    if (!isRequestChannel(raw.channel)) {
      this.#write(
        this.host.notice(
          `messages on the ${raw.channel} channel cannot be sent by clients; dropped ${raw.header.msg_type}`,
        ),
      );
      return;
    }
    if (!this.host.fromClient(this, raw)) return;
    this.sendToKernel(raw);
  }

  /** Signs and sends a message on the client's own socket for its channel. */
  sendToKernel(raw: RawMessage): void {
    const signer = this.host.signer;
    const link = isRequestChannel(raw.channel) ? this.#links.get(raw.channel) : undefined;
    if (!signer || !link) return;
    link.send(encodeZmq(raw, signer));
  }

  #onKernelFrames(channel: RequestChannel, frames: Buffer[]): void {
    const signer = this.host.signer;
    if (!signer) return;
    let raw: RawMessage;
    try {
      raw = decodeZmq(frames, channel, signer).raw;
    } catch (err) {
      this.host.log('warn', 'dropped an invalid message from the kernel', {
        channel,
        err: String(err),
      });
      return;
    }
    const out = this.host.fromKernel(this, raw);
    if (out) this.deliver(out);
  }

  /** Closes the WebSocket (with `code`), the ZMQ sockets and the buffer. Idempotent. */
  close(code = 1001, reason = 'kernel shut down'): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#expiry);
    clearInterval(this.#ping);
    this.disconnectZmq();
    this.#buffer = [];
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.close(code, reason);
  }
}

function isRequestChannel(ch: Channel): ch is RequestChannel {
  return ch === 'shell' || ch === 'control' || ch === 'stdin';
}
