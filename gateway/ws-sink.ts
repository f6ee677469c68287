/**
 * A channels WebSocket as a client sink: the framing (legacy or v1), keepalive pings, and the
 * decoding of client frames. A malformed frame closes this connection with 1007; nothing else is
 * affected.
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
} from '../protocol/index.js';
import type { ClientChannels, ClientSink } from './client-channels.js';
import type { MetricsSink } from './metrics.js';

/** The two WebSocket framings. */
export type WireProtocol = 'v1' | 'legacy';

export class WsSink implements ClientSink {
  #ping: NodeJS.Timeout | undefined;
  #alive = true;

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
    metrics?: MetricsSink,
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

  send(raw: RawMessage): void {
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return;
    if (this.protocol === 'v1') {
      ws.send(encodeV1(raw), { binary: true });
      return;
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
      return;
    }
    ws.send(frame.data, { binary: frame.binary });
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
