/**
 * A channels WebSocket as a client sink: the framing (legacy or v1), keepalive pings, and the
 * decoding of client frames. A malformed frame closes this connection with 1007; nothing else is
 * affected. A client that stops reading is dropped once its unsent data passes a cap (close 1008),
 * rather than letting the gateway's memory grow with the kernel's output.
 *
 * The bridge's cost per message is kept to the framing: a kernel message fanned out to many
 * clients is encoded once per framing and the same Buffer is handed to every socket (never
 * mutated after encoding), and the frames sent to one socket in one event-loop turn leave in one
 * write (see {@link WsSink.send}).
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import {
  decodeRawFrame,
  encodeRawFrame,
  ProtocolError,
  type RawMessage,
  type WsFraming,
} from '../../protocol/index.js';
import type { ClientChannels, ClientSink } from './client-channels.js';
import type { MetricsSink } from '../base/metrics.js';
import { CloseCode } from '../base/close-codes.js';

/** Close code for a client dropped because it did not read (policy violation). */
export const SLOW_CLIENT_CLOSE_CODE = CloseCode.POLICY;

/** How long a dropped client's close frame may wait behind its unsent data before the socket is cut. */
const SLOW_CLIENT_GRACE_MS = 1000;

/** An encoded kernel message, ready for `ws.send`, or why it cannot be encoded. */
type Frame = { data: Buffer | string; binary: boolean } | { error: string };

// The encoded frames of each message, per framing, keyed by the RawMessage every client of the
// kernel receives (iopub is fanned out): one encoding, however many clients. A RawMessage is not
// changed after it is delivered (rewrites build a new one), so the cached frame stays its frame.
const v1Frames = new WeakMap<RawMessage, Frame>();
const legacyFrames = new WeakMap<RawMessage, Frame>();

function encodeFor(protocol: WsFraming, raw: RawMessage): Frame {
  const cache = protocol === 'v1' ? v1Frames : legacyFrames;
  const cached = cache.get(raw);
  if (cached) return cached;
  let frame: Frame;
  try {
    // Legacy: splicing kernel bytes into one JSON text needs each part to be exactly one JSON
    // object; code in the kernel could otherwise forge fields of the message the client sees.
    frame = encodeRawFrame(raw, protocol);
  } catch (err) {
    frame = { error: String(err) };
  }
  cache.set(raw, frame);
  return frame;
}

/**
 * The TCP socket under a ws WebSocket, when it can be corked. ws (8.x) has no public way to send
 * several messages in one write: its sender corks the socket around each frame's header and
 * payload only, so every message is its own write system call (and, with TCP_NODELAY, its own
 * segment). An outer cork held until the end of the event-loop turn gathers them; ws's own
 * cork/uncork pairs nest inside it. `_socket` is ws's internal field; without it (another ws
 * version) sends are simply not batched.
 */
function corkable(ws: WebSocket): Pick<Socket, 'cork' | 'uncork'> | undefined {
  const socket = (ws as unknown as { _socket?: Partial<Socket> | null })._socket;
  return typeof socket?.cork === 'function' && typeof socket.uncork === 'function'
    ? (socket as Socket)
    : undefined;
}

export class WsSink implements ClientSink {
  #ping: NodeJS.Timeout | undefined;
  #alive = true;
  #dropped = false;
  /** True while this turn's frames are held (the socket is corked until setImmediate). */
  #corked = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly protocol: WsFraming,
    private readonly channels: ClientChannels,
    private readonly log: (
      level: 'debug' | 'warn',
      msg: string,
      extra?: Record<string, unknown>,
    ) => void,
    pingIntervalMs: number,
    private readonly maxBufferedBytes: number,
    private readonly metrics?: MetricsSink,
  ) {
    metrics?.websocketOpened();
    ws.on('message', (data: Buffer | Buffer[] | ArrayBuffer, isBinary: boolean) => {
      this.#onFrame(data, isBinary);
    });
    ws.on('pong', () => {
      this.#alive = true;
    });
    ws.on('close', (code: number) => {
      metrics?.websocketClosed();
      clearInterval(this.#ping);
      this.channels.detach(this);
      this.log('debug', 'channels disconnected', { code });
    });
    ws.on('error', (err) => {
      this.log('debug', 'websocket error', { err: String(err) });
    });
    if (pingIntervalMs > 0) {
      this.#ping = setInterval(() => {
        // A client that did not answer the last ping is gone (or wedged): drop it.
        if (!this.#alive) {
          ws.terminate();
          return;
        }
        this.#alive = false;
        ws.ping();
      }, pingIntervalMs);
    }
  }

  /**
   * Sends one kernel message. The first send of an event-loop turn corks the socket and the check
   * phase of that turn uncorks it, so the messages that arrived together (busy, execute_input and
   * the reply of a short execution, say) reach the client in one write and one segment, in order.
   * Corked bytes count in `bufferedAmount`, so the slow-client cap sees them as before.
   */
  send(raw: RawMessage): boolean {
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return false;
    // Checked before each send, so the backlog is bounded by the cap plus one message.
    if (ws.bufferedAmount > this.maxBufferedBytes) {
      this.#dropSlowClient(ws.bufferedAmount);
      return false;
    }
    const frame = encodeFor(this.protocol, raw);
    if ('error' in frame) {
      this.log('warn', 'dropped a kernel message that is not valid JSON', {
        msg_type: raw.header.msg_type,
        err: frame.error,
      });
      // Refused on purpose, not undeliverable: the client stays attached.
      return true;
    }
    this.#cork();
    ws.send(frame.data, { binary: frame.binary });
    return true;
  }

  #cork(): void {
    if (this.#corked) return;
    const socket = corkable(this.ws);
    if (!socket) return;
    this.#corked = true;
    socket.cork();
    setImmediate(() => {
      this.#corked = false;
      // A socket that ended meanwhile was uncorked by end(); uncork on it does nothing.
      socket.uncork();
    });
  }

  /**
   * The client did not read: its connection is closed, and cut after a short grace (its close
   * frame waits behind data it does not read). Its session learns of the gap, so a reconnect with
   * the same session_id is told output is missing before it gets what was buffered since.
   */
  #dropSlowClient(buffered: number): void {
    if (this.#dropped) return;
    this.#dropped = true;
    this.metrics?.slowClientDropped();
    this.log('warn', 'dropping a client that does not read its messages', {
      session: this.channels.sessionId,
      buffered_bytes: buffered,
      limit_bytes: this.maxBufferedBytes,
    });
    this.channels.noteGap(
      `The previous connection of this session was dropped because it did not read its messages ` +
        `(over ${this.maxBufferedBytes} bytes unsent, AIDO_WS_MAX_BUFFERED): output sent before ` +
        `the drop may be missing.`,
    );
    this.ws.close(SLOW_CLIENT_CLOSE_CODE, 'client too slow: send buffer over the limit');
    setTimeout(() => {
      this.ws.terminate();
    }, SLOW_CLIENT_GRACE_MS).unref();
  }

  close(code: CloseCode, reason: string): void {
    clearInterval(this.#ping);
    this.ws.close(code, reason);
  }

  #onFrame(data: Buffer | Buffer[] | ArrayBuffer, isBinary: boolean): void {
    const buf = Buffer.isBuffer(data)
      ? data
      : Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.from(data);
    let raw: RawMessage;
    try {
      raw = decodeRawFrame(buf, isBinary, this.protocol);
    } catch (err) {
      const reason =
        err instanceof ProtocolError ? `${err.code}: ${err.message}` : 'MALFORMED_FRAME';
      this.log('warn', 'malformed frame from client', { session: this.channels.sessionId, reason });
      // 1007: the frame's data is inconsistent with the protocol. Close reasons are capped at 123 bytes.
      this.ws.close(CloseCode.INVALID_DATA, Buffer.from(reason).subarray(0, 120).toString());
      return;
    }
    this.channels.receive(raw);
  }
}
