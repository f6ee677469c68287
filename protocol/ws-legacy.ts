/**
 * The legacy Jupyter WebSocket framing (no subprotocol), used by Jupyter Server in gateway mode
 * and by any client that does not offer `v1.kernel.websocket.jupyter.org`:
 *
 * - a message without buffers is a text frame holding one JSON object
 *   `{channel, header, parent_header, metadata, content}`;
 * - a message with buffers is a binary frame: `nbufs` (u32 big-endian, the JSON counts as the
 *   first buffer), `nbufs` u32 big-endian offsets from the start of the frame, the UTF-8 JSON, then
 *   each buffer; the last buffer runs to the end of the frame.
 *
 * Like jupyter_server, frames we send also carry top-level `msg_id` and `msg_type` (scripts
 * written against Jupyter Server read them), and text frames carry `"buffers": []`.
 *
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 * @packageDocumentation
 */
import { isUtf8 } from 'node:buffer';
import { isChannel, type Channel } from './channels.js';
import { ProtocolError } from './errors.js';
import { readOffsets } from './offset-table.js';
import { validateHeader, validateParentHeader } from './header.js';
import { isJsonObject, isJsonObjectBytes, parseJson } from './json-bytes.js';
import type { JupyterMessage, RawMessage } from './messages.js';

/**
 * Limits applied by {@link decodeLegacy}.
 *
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 */
export interface LegacyLimits {
  /** Most bytes accepted in one frame (UTF-8 bytes for a text frame). */
  maxBytes?: number;
  /** Most binary buffers accepted in one binary frame. */
  maxBuffers?: number;
}

/**
 * A frame to send: `binary` says whether to send it as a binary or a text WebSocket frame.
 *
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 */
export interface EncodedFrame {
  /** The frame. A Buffer sent as text is valid UTF-8. */
  data: Buffer | string;
  binary: boolean;
}

/** Size of one big-endian u32 in the binary form. */
const U32 = 4;

/**
 * Decodes one frame received from a client speaking the legacy framing.
 *
 * A missing (or null) `channel` means `shell`, as in jupyter_server; missing `parent_header`,
 * `metadata` or `content` mean `{}`. Top-level `msg_id`, `msg_type` and `buffers` keys are ignored:
 * the header is authoritative and buffers come only from the binary form. Binary buffers are views
 * into `data`, not copies.
 *
 * @param data - the frame payload (text as a string or as its UTF-8 bytes).
 * @param isBinary - whether it arrived as a binary frame.
 * @param limits - optional size bounds.
 * @throws {@link ProtocolError} `FRAME_TOO_LARGE`, `MALFORMED_FRAME` (bad binary layout),
 *   `BAD_JSON`, `UNKNOWN_CHANNEL` or `BAD_HEADER`.
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 */
export function decodeLegacy(
  data: Buffer | string,
  isBinary: boolean,
  limits: LegacyLimits = {},
): JupyterMessage {
  if (limits.maxBytes !== undefined) {
    const size = typeof data === 'string' ? Buffer.byteLength(data, 'utf8') : data.length;
    if (size > limits.maxBytes) {
      throw new ProtocolError(
        'FRAME_TOO_LARGE',
        `frame has ${size} bytes, over the limit of ${limits.maxBytes}`,
      );
    }
  }
  if (!isBinary) return messageFromJson(parseJson(data, 'message'), []);

  const frame = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const { json, buffers } = splitBinary(frame, limits.maxBuffers);
  return messageFromJson(parseJson(json, 'message'), buffers);
}

/** Reads and bound-checks the offset table of a binary frame; returns views into `frame`. */
function splitBinary(
  frame: Buffer,
  maxBuffers: number | undefined,
): { json: Buffer; buffers: Buffer[] } {
  const len = frame.length;
  if (len < U32) {
    throw new ProtocolError('MALFORMED_FRAME', `binary frame of ${len} bytes has no part count`);
  }
  const nbufs = frame.readUInt32BE(0);
  if (nbufs < 2) {
    throw new ProtocolError(
      'MALFORMED_FRAME',
      `binary frame must hold the JSON and at least one buffer, nbufs=${nbufs}`,
    );
  }
  if (maxBuffers !== undefined && nbufs - 1 > maxBuffers) {
    throw new ProtocolError(
      'FRAME_TOO_LARGE',
      `frame has ${nbufs - 1} buffers, over the limit of ${maxBuffers}`,
    );
  }
  const tableEnd = U32 * (nbufs + 1);
  if (tableEnd > len) {
    throw new ProtocolError(
      'MALFORMED_FRAME',
      `offset table for ${nbufs} parts needs ${tableEnd} bytes, frame has ${len}`,
    );
  }
  const offsets = readOffsets(nbufs, (i) => frame.readUInt32BE(U32 * (i + 1)), tableEnd, len);
  offsets.push(len);
  const parts: Buffer[] = [];
  for (let i = 0; i < nbufs; i++) {
    parts.push(frame.subarray(offsets[i], offsets[i + 1]));
  }
  const [json, ...buffers] = parts;
  if (json === undefined) throw new ProtocolError('MALFORMED_FRAME', 'binary frame has no JSON');
  return { json, buffers };
}

/** Validates the parsed JSON object of a legacy frame. */
function messageFromJson(value: unknown, buffers: Buffer[]): JupyterMessage {
  if (!isJsonObject(value)) throw new ProtocolError('BAD_JSON', 'message must be a JSON object');
  return {
    channel: channelOf(value['channel']),
    header: validateHeader(value['header']),
    parent_header:
      value['parent_header'] === undefined ? {} : validateParentHeader(value['parent_header']),
    metadata: objectPart(value['metadata'], 'metadata'),
    content: objectPart(value['content'], 'content'),
    buffers,
  };
}

function channelOf(value: unknown): Channel {
  if (value === undefined || value === null) return 'shell';
  if (typeof value === 'string' && isChannel(value)) return value;
  throw new ProtocolError(
    'UNKNOWN_CHANNEL',
    `unknown channel ${JSON.stringify(typeof value === 'string' ? value.slice(0, 32) : typeof value)}`,
  );
}

function objectPart(value: unknown, what: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (!isJsonObject(value)) throw new ProtocolError('BAD_JSON', `${what} must be a JSON object`);
  return value;
}

/**
 * Encodes a parsed message for a legacy client: a text frame when it has no buffers, else the
 * binary form.
 *
 * @param msg - the message (not modified).
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 */
export function encodeLegacy(msg: JupyterMessage): EncodedFrame {
  const envelope = {
    channel: msg.channel,
    msg_id: msg.header.msg_id,
    msg_type: msg.header.msg_type,
    header: msg.header,
    parent_header: msg.parent_header,
    metadata: msg.metadata,
    content: msg.content,
  };
  if (msg.buffers.length === 0) {
    return { data: JSON.stringify({ ...envelope, buffers: [] }), binary: false };
  }
  return {
    data: buildBinary([Buffer.from(JSON.stringify(envelope), 'utf8')], msg.buffers),
    binary: true,
  };
}

/**
 * Encodes a forwarding-form message for a legacy client without parsing its JSON parts: the JSON
 * text is spliced together from the parts' bytes. This is the kernel→client fast path.
 *
 * Each part is first checked to be exactly one JSON object ({@link isJsonObjectBytes}), because
 * the kernel runs untrusted code that holds the signing key and could otherwise forge fields of the
 * spliced object. A text frame whose bytes are not valid UTF-8 is returned as a string with U+FFFD
 * replacements (the structure is unaffected: non-ASCII bytes only occur inside JSON strings).
 *
 * @param raw - the message in forwarding form.
 * @throws {@link ProtocolError} `BAD_JSON` if any of the four parts is not one JSON object.
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 */
export function encodeLegacyRaw(raw: RawMessage): EncodedFrame {
  const parts: [string, Buffer][] = [
    ['header', raw.headerBytes],
    ['parent_header', raw.parentHeader],
    ['metadata', raw.metadata],
    ['content', raw.content],
  ];
  for (const [what, bytes] of parts) {
    if (!isJsonObjectBytes(bytes)) {
      throw new ProtocolError('BAD_JSON', `${what} is not a single JSON object`);
    }
  }
  const pieces = [
    Buffer.from(
      `{"channel":${JSON.stringify(raw.channel)},"msg_id":${JSON.stringify(raw.header.msg_id)},` +
        `"msg_type":${JSON.stringify(raw.header.msg_type)},"header":`,
      'utf8',
    ),
    raw.headerBytes,
    PARENT_KEY,
    raw.parentHeader,
    METADATA_KEY,
    raw.metadata,
    CONTENT_KEY,
    raw.content,
  ];
  if (raw.buffers.length > 0) {
    pieces.push(CLOSE);
    return { data: buildBinary(pieces, raw.buffers), binary: true };
  }
  pieces.push(EMPTY_BUFFERS_CLOSE);
  const text = Buffer.concat(pieces);
  return { data: isUtf8(text) ? text : text.toString('utf8'), binary: false };
}

const PARENT_KEY = Buffer.from(',"parent_header":');
const METADATA_KEY = Buffer.from(',"metadata":');
const CONTENT_KEY = Buffer.from(',"content":');
const CLOSE = Buffer.from('}');
const EMPTY_BUFFERS_CLOSE = Buffer.from(',"buffers":[]}');

/**
 * Builds a binary frame in one allocation: the offset table, the JSON (given as pieces to
 * concatenate), then the buffers.
 */
function buildBinary(jsonPieces: readonly Buffer[], buffers: readonly Buffer[]): Buffer {
  const nbufs = 1 + buffers.length;
  const tableEnd = U32 * (nbufs + 1);
  let jsonLength = 0;
  for (const p of jsonPieces) jsonLength += p.length;
  let total = tableEnd + jsonLength;
  for (const b of buffers) total += b.length;
  if (total > 0xffffffff) {
    // u32 offsets cannot address past 4 GiB; no real message comes near this.
    throw new RangeError(`legacy binary frame of ${total} bytes exceeds the u32 offset range`);
  }

  const frame = Buffer.allocUnsafe(total);
  frame.writeUInt32BE(nbufs, 0);
  let pos = tableEnd;
  for (const p of jsonPieces) pos += p.copy(frame, pos);
  let offset = tableEnd + jsonLength;
  frame.writeUInt32BE(tableEnd, U32);
  for (const [i, b] of buffers.entries()) {
    frame.writeUInt32BE(offset, U32 * (i + 2));
    offset += b.copy(frame, offset);
  }
  return frame;
}
