/**
 * The `v1.kernel.websocket.jupyter.org` WebSocket framing, always a binary frame:
 *
 * ```
 * n (u64 LE) | o0 … o(n-1) (u64 LE, from frame start) | channel | header | parent_header | metadata | content | buffer…
 * ```
 *
 * with `n` = 1 channel + 4 JSON parts + the buffers + 1, `o0 = 8·(1 + n)`, part `k` in
 * `[o(k), o(k+1))` and the last offset equal to the frame length. The JSON parts stay bytes, so
 * the bridge forwards them to ZeroMQ without re-serialising, as jupyter_server does.
 *
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 * @packageDocumentation
 */
import { isChannel } from './channels.js';
import { ProtocolError } from './errors.js';
import { readOffsets } from './offset-table.js';
import { parseHeader } from './header.js';
import type { RawMessage } from './messages.js';

/**
 * The subprotocol name a client offers in `Sec-WebSocket-Protocol` to get this framing.
 *
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 */
export const V1_PROTOCOL = 'v1.kernel.websocket.jupyter.org';

/**
 * Limits applied by {@link decodeV1}.
 *
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 */
export interface V1Limits {
  /** Most bytes accepted in one frame. */
  maxBytes?: number;
  /** Most binary buffers accepted in one frame. */
  maxBuffers?: number;
}

/** Size of one u64 in the frame. */
const U64 = 8;
/** Offsets of a message without buffers: channel, 4 JSON parts, and the end. */
const MIN_OFFSETS = 6;
/** Longest channel name (`control`, `shell`, … are at most 7 bytes); longer is refused unread. */
const MAX_CHANNEL_BYTES = 16;
const TWO_POW_32 = 0x1_0000_0000;

/**
 * Decodes one binary frame from a client speaking the v1 framing. Every count and offset is
 * checked before it is used; the parts are views into `data`, not copies.
 *
 * @param data - the frame payload.
 * @param limits - optional size bounds.
 * @throws {@link ProtocolError} `FRAME_TOO_LARGE`, `MALFORMED_FRAME` (bad offset table),
 *   `UNKNOWN_CHANNEL`, `BAD_JSON` or `BAD_HEADER` (the header is parsed; the other JSON parts are
 *   not).
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 */
export function decodeV1(data: Buffer, limits: V1Limits = {}): RawMessage {
  const len = data.length;
  if (limits.maxBytes !== undefined && len > limits.maxBytes) {
    throw new ProtocolError(
      'FRAME_TOO_LARGE',
      `frame has ${len} bytes, over the limit of ${limits.maxBytes}`,
    );
  }
  if (len < U64) {
    throw new ProtocolError('MALFORMED_FRAME', `frame of ${len} bytes has no offset count`);
  }
  // Compare as u64 before converting: a huge count must not lose precision and slip through.
  const countBig = data.readBigUInt64LE(0);
  if (countBig < BigInt(MIN_OFFSETS)) {
    throw new ProtocolError(
      'MALFORMED_FRAME',
      `need at least ${MIN_OFFSETS} offsets (channel, 4 JSON parts, end), got ${countBig}`,
    );
  }
  if (BigInt(U64) * (countBig + 1n) > BigInt(len)) {
    throw new ProtocolError(
      'MALFORMED_FRAME',
      `offset table for ${countBig} offsets does not fit in the ${len}-byte frame`,
    );
  }
  const count = Number(countBig);
  if (limits.maxBuffers !== undefined && count - MIN_OFFSETS > limits.maxBuffers) {
    throw new ProtocolError(
      'FRAME_TOO_LARGE',
      `frame has ${count - MIN_OFFSETS} buffers, over the limit of ${limits.maxBuffers}`,
    );
  }

  const tableEnd = U64 * (count + 1);
  const offsets = readOffsets(
    count,
    (i) => {
      const at = U64 * (i + 1);
      // hi·2^32 + lo is exact below 2^53 and far past any frame length above it.
      return data.readUInt32LE(at + 4) * TWO_POW_32 + data.readUInt32LE(at);
    },
    tableEnd,
    len,
  );
  const prev = offsets[offsets.length - 1] ?? tableEnd;
  if (prev !== len) {
    throw new ProtocolError(
      'MALFORMED_FRAME',
      `last offset (${prev}) must equal the frame length (${len})`,
    );
  }

  const part = (k: number): Buffer => data.subarray(offsets[k], offsets[k + 1]);
  const channelBytes = part(0);
  const channel =
    channelBytes.length <= MAX_CHANNEL_BYTES ? channelBytes.toString('utf8') : undefined;
  if (channel === undefined || !isChannel(channel)) {
    throw new ProtocolError(
      'UNKNOWN_CHANNEL',
      channel === undefined
        ? `unknown channel (${channelBytes.length} bytes)`
        : `unknown channel ${JSON.stringify(channel)}`,
    );
  }
  const headerBytes = part(1);
  const buffers: Buffer[] = [];
  for (let k = 5; k < count - 1; k++) buffers.push(part(k));
  return {
    channel,
    header: parseHeader(headerBytes),
    headerBytes,
    parentHeader: part(2),
    metadata: part(3),
    content: part(4),
    buffers,
  };
}

/**
 * Encodes a forwarding-form message as one v1 frame, in a single allocation. The result is a
 * Buffer that may be a view into Node's shared pool: send it as a Buffer (ws honours its offset),
 * never as `buf.buffer`.
 *
 * @param raw - the message in forwarding form.
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 */
export function encodeV1(raw: RawMessage): Buffer {
  const channel = Buffer.from(raw.channel, 'utf8');
  const parts = [
    channel,
    raw.headerBytes,
    raw.parentHeader,
    raw.metadata,
    raw.content,
    ...raw.buffers,
  ];
  const count = parts.length + 1;
  const tableEnd = U64 * (count + 1);
  let total = tableEnd;
  for (const p of parts) total += p.length;

  const frame = Buffer.allocUnsafe(total);
  writeU64(frame, 0, count);
  let offset = tableEnd;
  for (const [i, p] of parts.entries()) {
    writeU64(frame, U64 * (i + 1), offset);
    offset += p.copy(frame, offset);
  }
  writeU64(frame, U64 * count, offset);
  return frame;
}

function writeU64(buf: Buffer, at: number, value: number): void {
  buf.writeUInt32LE(value % TWO_POW_32, at);
  buf.writeUInt32LE(Math.floor(value / TWO_POW_32), at + 4);
}
