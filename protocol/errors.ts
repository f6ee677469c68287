/**
 * The one error type thrown by `protocol/`. Every decoder and verifier in this folder turns bad
 * input into a {@link ProtocolError} with a stable {@link ProtocolErrorCode}; nothing else escapes
 * from decoding untrusted bytes. Mapping codes to WebSocket close codes or HTTP statuses is the
 * gateway's job, not this module's.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 * @packageDocumentation
 */

/**
 * Why a frame or message was refused.
 *
 * - `MALFORMED_FRAME`: the framing itself is wrong (too short, offsets outside the frame or out of
 *   order, too few parts).
 * - `FRAME_TOO_LARGE`: the frame is over a configured limit (bytes, buffers or ZMQ parts).
 * - `BAD_JSON`: a JSON part does not parse, or parses to the wrong kind of value (content,
 *   metadata and parent_header must be JSON objects).
 * - `BAD_HEADER`: the header is not an object or lacks a required field of the right type.
 * - `UNKNOWN_CHANNEL`: the channel is not one of `shell`, `control`, `iopub`, `stdin`.
 * - `BAD_SIGNATURE`: the HMAC does not match the message.
 * - `UNSIGNED`: a key is configured but the message carries no signature.
 * - `MISSING_DELIMITER`: a ZMQ multipart message has no `<IDS|MSG>` frame.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export type ProtocolErrorCode =
  | 'MALFORMED_FRAME'
  | 'FRAME_TOO_LARGE'
  | 'BAD_JSON'
  | 'BAD_HEADER'
  | 'UNKNOWN_CHANNEL'
  | 'BAD_SIGNATURE'
  | 'UNSIGNED'
  | 'MISSING_DELIMITER';

/**
 * Every {@link ProtocolErrorCode}, for exhaustive tables and tests.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export const PROTOCOL_ERROR_CODES: readonly ProtocolErrorCode[] = Object.freeze([
  'MALFORMED_FRAME',
  'FRAME_TOO_LARGE',
  'BAD_JSON',
  'BAD_HEADER',
  'UNKNOWN_CHANNEL',
  'BAD_SIGNATURE',
  'UNSIGNED',
  'MISSING_DELIMITER',
]);

/**
 * A frame or message that breaks the Jupyter wire protocol. Callers branch on {@link code}, never on
 * the message text; the message is for logs and may name offsets and field names, never payloads.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';

  /**
   * @param code - the stable reason code.
   * @param message - a short human-readable explanation.
   * @param options - standard `Error` options, e.g. the `cause` (a `SyntaxError` from JSON).
   */
  constructor(
    readonly code: ProtocolErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * True if `err` is a {@link ProtocolError}, optionally with the given code.
 *
 * @param err - any thrown value.
 * @param code - when given, the code it must carry.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export function isProtocolError(err: unknown, code?: ProtocolErrorCode): err is ProtocolError {
  return err instanceof ProtocolError && (code === undefined || err.code === code);
}
