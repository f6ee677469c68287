/**
 * The ZeroMQ multipart framing of a Jupyter message:
 *
 * ```
 * [identity …] "<IDS|MSG>" signature header parent_header metadata content [buffer …]
 * ```
 *
 * Decoding checks the frame count before touching any index, verifies the signature on the bytes
 * as received (before parsing anything), and only then parses the header.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 * @packageDocumentation
 */
import type { Channel } from './channels.js';
import { ProtocolError } from './errors.js';
import { parseHeader } from './header.js';
import type { RawMessage } from './messages.js';
import type { Signer } from './signing.js';

const DELIMITER_TEXT = '<IDS|MSG>';

/**
 * The frame that separates routing identities from the message. Shared: do not mutate it.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export const DELIMITER: Buffer = Buffer.from(DELIMITER_TEXT, 'ascii');

// A private copy for comparisons, so a caller mutating the exported Buffer cannot break decoding.
const DELIMITER_CHECK = Buffer.from(DELIMITER_TEXT, 'ascii');

/** The frames after the delimiter that every message has: signature and the four JSON parts. */
const MIN_PARTS_AFTER_DELIMITER = 5;

/**
 * What {@link encodeZmq} needs: the four JSON parts as bytes and the buffers.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export type ZmqParts = Pick<
  RawMessage,
  'headerBytes' | 'parentHeader' | 'metadata' | 'content' | 'buffers'
>;

/**
 * Builds the multipart frames of a message, signing the four JSON parts. The part Buffers are
 * placed in the result as they are, not copied.
 *
 * @param raw - the message in forwarding form.
 * @param signer - signs with the kernel's key.
 * @param identities - routing prefix (a ROUTER peer's identity), usually none from a DEALER.
 * @returns `[...identities, DELIMITER, signature, header, parent_header, metadata, content, ...buffers]`.
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export function encodeZmq(
  raw: ZmqParts,
  signer: Signer,
  identities: readonly Buffer[] = [],
): Buffer[] {
  const signature = signer.sign([raw.headerBytes, raw.parentHeader, raw.metadata, raw.content]);
  return [
    ...identities,
    DELIMITER,
    Buffer.from(signature, 'latin1'),
    raw.headerBytes,
    raw.parentHeader,
    raw.metadata,
    raw.content,
    ...raw.buffers,
  ];
}

/**
 * Limits applied by {@link decodeZmq}, all checked on byte lengths before the signature is
 * verified and before any part is parsed, so an oversized message costs neither an HMAC over its
 * bytes nor a JSON parse.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export interface ZmqLimits {
  /** Most frames accepted in one multipart message, identities and buffers included. */
  maxFrames?: number;
  /** Most bytes accepted across all frames. */
  maxBytes?: number;
  /** Most routing identities before the delimiter (a DEALER or SUB peer sends at most one). */
  maxIdentities?: number;
  /** Most bytes of the header part, and of the parent_header part (which echoes a header). */
  maxHeaderBytes?: number;
  /** Most bytes of the metadata part. */
  maxMetadataBytes?: number;
}

/**
 * A decoded multipart message.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export interface DecodedZmq {
  /** The frames before the delimiter (ROUTER identities, or the IOPub topic). */
  identities: Buffer[];
  raw: RawMessage;
}

/**
 * Splits, authenticates and decodes the frames of one message received on a ZMQ socket.
 *
 * Checks, in order: frame count and total size, the delimiter (among the first
 * `maxIdentities + 1` frames), at least five frames after it, the sizes of header, parent_header
 * and metadata, the signature (when the signer has a key: present, then correct), and the header.
 * Only the header is parsed.
 *
 * @param frames - the multipart message as received.
 * @param channel - the channel of the socket it arrived on.
 * @param signer - the kernel's key.
 * @param limits - bounds on frame count, total size, identities and the size of each JSON part.
 * @throws {@link ProtocolError} `FRAME_TOO_LARGE`, `MISSING_DELIMITER`, `MALFORMED_FRAME`,
 *   `UNSIGNED`, `BAD_SIGNATURE`, `BAD_JSON` or `BAD_HEADER`.
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export function decodeZmq(
  frames: readonly Buffer[],
  channel: Channel,
  signer: Signer,
  limits: ZmqLimits = {},
): DecodedZmq {
  if (limits.maxFrames !== undefined && frames.length > limits.maxFrames) {
    throw new ProtocolError(
      'FRAME_TOO_LARGE',
      `message has ${frames.length} frames, over the limit of ${limits.maxFrames}`,
    );
  }
  if (limits.maxBytes !== undefined) {
    let total = 0;
    for (const f of frames) total += f.length;
    if (total > limits.maxBytes) {
      throw new ProtocolError(
        'FRAME_TOO_LARGE',
        `message has ${total} bytes, over the limit of ${limits.maxBytes}`,
      );
    }
  }

  const maxIds = limits.maxIdentities ?? frames.length;
  let d = -1;
  // Only the first maxIdentities + 1 frames can be the delimiter: a message of many identity-like
  // frames is refused without comparing every one of them.
  for (let i = 0; i < frames.length && i <= maxIds; i++) {
    if (frames[i]?.equals(DELIMITER_CHECK)) {
      d = i;
      break;
    }
  }
  if (d < 0) {
    throw new ProtocolError(
      'MISSING_DELIMITER',
      frames.length > maxIds + 1
        ? `no <IDS|MSG> delimiter frame within the first ${maxIds + 1} frames`
        : 'no <IDS|MSG> delimiter frame',
    );
  }
  if (frames.length - d - 1 < MIN_PARTS_AFTER_DELIMITER) {
    throw new ProtocolError(
      'MALFORMED_FRAME',
      `need signature and 4 JSON frames after the delimiter, got ${frames.length - d - 1} frames`,
    );
  }
  const signature = frameAt(frames, d + 1);
  const headerBytes = frameAt(frames, d + 2);
  const parentHeader = frameAt(frames, d + 3);
  const metadata = frameAt(frames, d + 4);
  const content = frameAt(frames, d + 5);

  checkPartSize('header', headerBytes, limits.maxHeaderBytes);
  checkPartSize('parent_header', parentHeader, limits.maxHeaderBytes);
  checkPartSize('metadata', metadata, limits.maxMetadataBytes);

  if (signer.enabled) {
    if (signature.length === 0) throw new ProtocolError('UNSIGNED', 'message is not signed');
    if (!signer.verify([headerBytes, parentHeader, metadata, content], signature)) {
      throw new ProtocolError('BAD_SIGNATURE', 'signature does not match the message');
    }
  }

  const header = parseHeader(headerBytes);
  return {
    identities: frames.slice(0, d),
    raw: {
      channel,
      header,
      headerBytes,
      parentHeader,
      metadata,
      content,
      buffers: frames.slice(d + 6),
    },
  };
}

function frameAt(frames: readonly Buffer[], i: number): Buffer {
  const f = frames[i];
  if (f === undefined) throw new ProtocolError('MALFORMED_FRAME', `missing frame ${i}`);
  return f;
}

function checkPartSize(name: string, part: Buffer, max: number | undefined): void {
  if (max !== undefined && part.length > max) {
    throw new ProtocolError(
      'FRAME_TOO_LARGE',
      `${name} has ${part.length} bytes, over the limit of ${max}`,
    );
  }
}
