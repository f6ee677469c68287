/**
 * The channels WebSocket's two framings behind one switch: the binary v1 framing
 * (`v1.kernel.websocket.jupyter.org`) and the legacy JSON framing. Everything that speaks the
 * channels socket picks its encoder and decoder here: the gateway's sink, the test and load
 * clients, and the benchmarks' client.
 */
import { fromRaw, toRaw, type JupyterMessage, type RawMessage } from './messages.js';
import {
  decodeLegacy,
  encodeLegacy,
  encodeLegacyRaw,
  type EncodedFrame,
  type LegacyLimits,
} from './ws-legacy.js';
import { decodeV1, encodeV1, V1_PROTOCOL, type V1Limits } from './ws-v1.js';

export type WsFraming = 'v1' | 'legacy';

/** The subprotocols a client offers for a framing (legacy offers none). */
export function subprotocolsFor(framing: WsFraming): string[] {
  return framing === 'v1' ? [V1_PROTOCOL] : [];
}

/** A wire message as one frame, ready for `ws.send(data, { binary })`. */
export function encodeRawFrame(raw: RawMessage, framing: WsFraming): EncodedFrame {
  return framing === 'v1' ? { data: encodeV1(raw), binary: true } : encodeLegacyRaw(raw);
}

/** A message as one frame (legacy frames are built from the message, not from its bytes). */
export function encodeFrame(msg: JupyterMessage, framing: WsFraming): EncodedFrame {
  return framing === 'v1' ? { data: encodeV1(toRaw(msg)), binary: true } : encodeLegacy(msg);
}

function legacyInput(data: Buffer, isBinary: boolean): Buffer | string {
  return isBinary ? data : data.toString('utf8');
}

/** One received frame as a wire message (header parsed, the other parts as bytes). */
export function decodeRawFrame(
  data: Buffer,
  isBinary: boolean,
  framing: WsFraming,
  limits: { v1?: V1Limits; legacy?: LegacyLimits } = {},
): RawMessage {
  return framing === 'v1'
    ? decodeV1(data, limits.v1)
    : toRaw(decodeLegacy(legacyInput(data, isBinary), isBinary, limits.legacy));
}

/** One received frame as a parsed message. */
export function decodeFrame(data: Buffer, isBinary: boolean, framing: WsFraming): JupyterMessage {
  return framing === 'v1'
    ? fromRaw(decodeV1(data))
    : decodeLegacy(legacyInput(data, isBinary), isBinary);
}
