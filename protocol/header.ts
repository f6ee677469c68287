/**
 * The message header: the one JSON part the gateway always parses, because routing needs its
 * `msg_type`, `msg_id` and `session`.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#message-header
 * @packageDocumentation
 */
import { ProtocolError } from './errors.js';
import { isJsonObject, parseJson } from './json-bytes.js';

/**
 * The protocol version this gateway writes into the headers it creates. The kernel image carries
 * ipykernel 6.17, which speaks 5.3.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#versioning
 */
export const PROTOCOL_VERSION = '5.3';

/**
 * A message header. Unknown extra fields are kept at run time (the spec asks both sides to
 * tolerate them) but are not part of the type.
 *
 * @typeParam T - the `msg_type`, when known.
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#message-header
 */
export interface Header<T extends string = string> {
  /** Unique per message; replies and outputs point back at it through `parent_header.msg_id`. */
  msg_id: string;
  /** The sending client's session id (for the kernel: its own session). */
  session: string;
  /** Informational; JupyterLab sends `''`. */
  username: string;
  /** ISO 8601 timestamp of creation. */
  date: string;
  /** What the message is, e.g. `execute_request`. */
  msg_type: T;
  /** Protocol version of the sender, e.g. `'5.3'`. */
  version: string;
  /** Subshell the request targets (protocol 5.5); `null` or absent for the main shell. */
  subshell_id?: string | null;
}

/** Fields that must be strings, and the ones that must also be non-empty (routing keys). */
const STRING_FIELDS = ['msg_id', 'session', 'username', 'date', 'msg_type', 'version'] as const;
const NON_EMPTY_FIELDS = new Set<string>(['msg_id', 'msg_type']);

/**
 * Checks that a parsed JSON value is a {@link Header}: an object whose `msg_id`, `session`,
 * `username`, `date`, `msg_type` and `version` are strings (`msg_id` and `msg_type` non-empty), and
 * whose `subshell_id`, if present, is a string or null. Extra fields are kept.
 *
 * @param value - a value from `JSON.parse`.
 * @param what - the part's name, for the error message (`header`, `parent_header`).
 * @throws {@link ProtocolError} `BAD_HEADER` naming the first bad field.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#message-header
 */
export function validateHeader(value: unknown, what = 'header'): Header {
  if (!isJsonObject(value)) {
    throw new ProtocolError('BAD_HEADER', `${what} must be a JSON object`);
  }
  for (const field of STRING_FIELDS) {
    const v = value[field];
    if (typeof v !== 'string') {
      throw new ProtocolError('BAD_HEADER', `${what}.${field} must be a string`);
    }
    if (v === '' && NON_EMPTY_FIELDS.has(field)) {
      throw new ProtocolError('BAD_HEADER', `${what}.${field} must not be empty`);
    }
  }
  const subshell = value['subshell_id'];
  if (subshell !== undefined && subshell !== null && typeof subshell !== 'string') {
    throw new ProtocolError('BAD_HEADER', `${what}.subshell_id must be a string or null`);
  }
  // Every declared field was checked above; the extras are carried along untouched.
  return value as unknown as Header;
}

/**
 * Parses and validates header bytes (UTF-8 JSON) as received on any transport.
 *
 * @param bytes - the header part.
 * @throws {@link ProtocolError} `BAD_JSON` if it does not parse, `BAD_HEADER` if it is not a valid
 *   header.
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#message-header
 */
export function parseHeader(bytes: Buffer): Header {
  return validateHeader(parseJson(bytes, 'header'));
}

/**
 * Parses parent header bytes: `{}` (no parent) or a valid header.
 *
 * @param bytes - the parent_header part.
 * @returns the header, or an empty object when the message has no parent.
 * @throws {@link ProtocolError} `BAD_JSON` if it does not parse or is not an object, `BAD_HEADER`
 *   if it is a non-empty object that is not a valid header.
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#parent-header
 */
export function parseParentHeader(bytes: Buffer): Header | Record<string, never> {
  return validateParentHeader(parseJson(bytes, 'parent_header'));
}

/**
 * Checks a parsed parent header: `{}` or a valid {@link Header}.
 *
 * @param value - a value from `JSON.parse`.
 * @throws {@link ProtocolError} `BAD_JSON` if it is not an object, `BAD_HEADER` if it is a
 *   non-empty object that is not a valid header.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#parent-header
 */
export function validateParentHeader(value: unknown): Header | Record<string, never> {
  if (!isJsonObject(value)) {
    throw new ProtocolError('BAD_JSON', 'parent_header must be a JSON object');
  }
  if (Object.keys(value).length === 0) return {};
  return validateHeader(value, 'parent_header');
}
