/**
 * A channels WebSocket as a client sink: the framing (legacy or v1), keepalive pings, and the
 * decoding of client frames. A malformed frame closes this connection with 1007; nothing else is
 * affected. A client that stops reading is dropped once its unsent data passes a cap (close 1008),
 * rather than letting the gateway's memory grow with the kernel's output.
 */
import type { WebSocket } from 'ws';
import {
  decodeLegacy,
  decodeV1,
  encodeLegacyRaw,
  encodeV1,
  ProtocolError,
  toRaw,
  type RawMessage,
} from '../../protocol/index.js';
import type { ClientChannels, ClientSink } from './client-channels.js';
import type { MetricsSink } from '../base/metrics.js';

/** Close code for a client dropped because it did not read (policy violation). */
export const SLOW_CLIENT_CLOSE_CODE = 1008;

/** How long a dropped client's close frame may wait behind its unsent data before the socket is cut. */
const SLOW_CLIENT_GRACE_MS = 1000;

/** The two WebSocket framings. */
export type WireProtocol = 'v1' | 'legacy';

export class WsSink implements ClientSink {
  #ping: NodeJS.Timeout | undefined;
  #alive = true;
  #dropped = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly protocol: WireProtocol,
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

  send(raw: RawMessage): boolean {
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return false;
    // Checked before each send, so the backlog is bounded by the cap plus one message.
    if (ws.bufferedAmount > this.maxBufferedBytes) {
      this.#dropSlowClient(ws.bufferedAmount);
      return false;
    }
    if (this.protocol === 'v1') {
      ws.send(encodeV1(raw), { binary: true });
      return true;
    }
    let frame: { data: Buffer | string; binary: boolean };
    try {
      // Splicing kernel bytes into one JSON text needs each part to be exactly one JSON object;
      // code in the kernel could otherwise forge fields of the message the client sees.
      frame = encodeLegacyRaw(raw);
    } catch (err) {
      this.log('warn', 'dropped a kernel message that is not valid JSON', {
        msg_type: raw.header.msg_type,
        err: String(err),
      });
      // Refused on purpose, not undeliverable: the client stays attached.
      return true;
    }
    ws.send(frame.data, { binary: frame.binary });
    return true;
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

  close(code: number, reason: string): void {
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
      raw =
        this.protocol === 'v1'
          ? decodeV1(buf)
          : toRaw(decodeLegacy(isBinary ? buf : buf.toString('utf8'), isBinary));
    } catch (err) {
      const reason =
        err instanceof ProtocolError ? `${err.code}: ${err.message}` : 'MALFORMED_FRAME';
      this.log('warn', 'malformed frame from client', { session: this.channels.sessionId, reason });
      // 1007: the frame's data is inconsistent with the protocol. Close reasons are capped at 123 bytes.
      this.ws.close(1007, Buffer.from(reason).subarray(0, 120).toString());
      return;
    }
    this.channels.receive(raw);
  }
}
