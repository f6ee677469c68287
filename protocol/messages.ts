/**
 * Jupyter messages in their two in-memory forms, and the conversions between them:
 *
 * - {@link JupyterMessage}, the parsed form (all four JSON parts are objects);
 * - {@link RawMessage}, the forwarding form (the JSON parts kept as the bytes that arrived, with
 *   only the header parsed), so the bridge can re-frame and re-sign without re-serialising.
 *
 * This module also re-exports the channel, header and message-catalogue types, so callers can
 * import the whole message model from one place.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#general-message-format
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto';
import type { Channel } from './channels.js';
import { PROTOCOL_VERSION, parseParentHeader, type Header } from './header.js';
import { isJsonObject, parseJson, parseJsonObject } from './json-bytes.js';
import type {
  ChannelOf,
  ContentOf,
  ExecuteRequestContent,
  Message,
  MsgType,
} from './message-types.js';

export * from './channels.js';
export * from './header.js';
export * from './message-types.js';

/**
 * A parsed message, as a client sends it over the legacy WebSocket framing.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#general-message-format
 */
export interface JupyterMessage {
  /** The channel it travels on. */
  channel: Channel;
  header: Header;
  /** The header of the message that caused this one, or `{}`. */
  parent_header: Header | Record<string, never>;
  metadata: Record<string, unknown>;
  content: Record<string, unknown>;
  /** Binary buffers after the JSON parts (never signed). */
  buffers: Buffer[];
}

/**
 * A message in forwarding form: the four JSON parts as bytes, exactly as they will be signed and
 * sent, plus the parsed and validated header the gateway routes on.
 *
 * `header` must describe `headerBytes`; the decoders in this folder guarantee it.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export interface RawMessage {
  channel: Channel;
  /** `headerBytes`, parsed and validated. */
  header: Header;
  /** The header as UTF-8 JSON bytes. */
  headerBytes: Buffer;
  /** The parent header as UTF-8 JSON bytes (`{}` when none). */
  parentHeader: Buffer;
  /** The metadata as UTF-8 JSON bytes. */
  metadata: Buffer;
  /** The content as UTF-8 JSON bytes. */
  content: Buffer;
  /** Binary buffers after the JSON parts. */
  buffers: Buffer[];
}

/**
 * Serialises a parsed message into forwarding form. The `buffers` array is copied; the Buffers in
 * it are not.
 *
 * @param msg - the parsed message.
 * @throws TypeError if a part cannot be serialised (a BigInt or a cycle), which is a bug in the
 *   caller, not bad input.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export function toRaw(msg: JupyterMessage): RawMessage {
  return {
    channel: msg.channel,
    header: msg.header,
    headerBytes: jsonBytes(msg.header),
    parentHeader: jsonBytes(msg.parent_header),
    metadata: jsonBytes(msg.metadata),
    content: jsonBytes(msg.content),
    buffers: [...msg.buffers],
  };
}

function jsonBytes(value: object): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/**
 * Parses the JSON parts of a forwarding-form message.
 *
 * @param raw - the message; its already-parsed `header` is reused.
 * @throws {@link ProtocolError} `BAD_JSON` if parent_header, metadata or content do not parse or
 *   are not objects; `BAD_HEADER` if a non-empty parent_header is not a valid header.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export function fromRaw(raw: RawMessage): JupyterMessage {
  return {
    channel: raw.channel,
    header: raw.header,
    parent_header: parseParentHeader(raw.parentHeader),
    metadata: parseJsonObject(raw.metadata, 'metadata'),
    content: parseJsonObject(raw.content, 'content'),
    buffers: [...raw.buffers],
  };
}

/**
 * Options for {@link createMessage}. When `msgType` is a literal from the catalogue, `channel` and
 * `content` are checked against it; any other string takes any channel and object content.
 *
 * @typeParam T - the message type.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#message-header
 */
export interface CreateMessageOptions<T extends string> {
  msgType: T;
  channel: T extends MsgType ? ChannelOf<T> : Channel;
  /**
   * The session id for `header.session`. For messages the gateway synthesises toward a client,
   * use the kernel's session id: JupyterLab drops queued messages whose session differs.
   */
  session: string;
  content: T extends MsgType ? ContentOf<T> : Record<string, unknown>;
  /** The header of the message this one answers; becomes `parent_header`. */
  parent?: Header;
  /** `header.username`; defaults to `''` as JupyterLab sends. */
  username?: string;
  metadata?: Record<string, unknown>;
  buffers?: Buffer[];
}

/**
 * Builds a new message: a fresh UUID `msg_id`, the current time as ISO 8601 with `Z`, and
 * `version` {@link PROTOCOL_VERSION}.
 *
 * @typeParam T - the message type; a catalogue literal gives a typed {@link Message}.
 * @param opts - what goes in the message.
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#message-header
 */
export function createMessage<T extends string>(
  opts: CreateMessageOptions<T>,
): T extends MsgType ? Message<T> : JupyterMessage {
  const msg: JupyterMessage = {
    channel: opts.channel,
    header: {
      msg_id: randomUUID(),
      session: opts.session,
      username: opts.username ?? '',
      date: new Date().toISOString(),
      msg_type: opts.msgType,
      version: PROTOCOL_VERSION,
    },
    parent_header: opts.parent ? { ...opts.parent } : {},
    metadata: opts.metadata ?? {},
    content: opts.content,
    buffers: opts.buffers ?? [],
  };
  // The conditional option types above guarantee the channel/content pairing for catalogue types.
  return msg as T extends MsgType ? Message<T> : JupyterMessage;
}

/** The bytes of a wire message's parts (header, parent header, metadata, content, buffers). */
export function rawSize(raw: RawMessage): number {
  let n =
    raw.headerBytes.length + raw.parentHeader.length + raw.metadata.length + raw.content.length;
  for (const b of raw.buffers) n += b.length;
  return n;
}

/**
 * A whole `execute_request` content, every field sent as jupyter_client sends it: not silent, no
 * history, no stdin, stop on error; `fields` overrides any of them.
 */
export function executeContent(
  code: string,
  fields: Omit<ExecuteRequestContent, 'code'> = {},
): Required<ExecuteRequestContent> {
  return {
    code,
    silent: false,
    store_history: false,
    user_expressions: {},
    allow_stdin: false,
    stop_on_error: true,
    ...fields,
  };
}

/** A new `execute_request` on shell for `session` (see {@link executeContent}). */
export function executeRequest(
  session: string,
  code: string,
  fields: Omit<ExecuteRequestContent, 'code'> = {},
): Message<'execute_request'> {
  return createMessage({
    msgType: 'execute_request',
    channel: 'shell',
    session,
    content: executeContent(code, fields),
  });
}

/**
 * The `msg_id` of the parent header, read from its bytes. Cheap enough for every IOPub message
 * (parent headers are small), and never throws: routing must survive a kernel's odd bytes.
 *
 * @param raw - a forwarding-form message.
 * @returns the parent's `msg_id`, or `undefined` when there is no parent, the bytes are not JSON,
 *   or `msg_id` is not a non-empty string.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#parent-header
 */
export function parentMsgId(raw: Pick<RawMessage, 'parentHeader'>): string | undefined {
  let parent: unknown;
  try {
    parent = parseJson(raw.parentHeader, 'parent_header');
  } catch {
    return undefined;
  }
  if (!isJsonObject(parent)) return undefined;
  const id = parent['msg_id'];
  return typeof id === 'string' && id !== '' ? id : undefined;
}

/**
 * The parsed parent header of a forwarding-form message.
 *
 * @param raw - a forwarding-form message.
 * @returns the parent header, or `undefined` when it is `{}`.
 * @throws {@link ProtocolError} `BAD_JSON` or `BAD_HEADER` if the bytes are not `{}` or a valid
 *   header.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#parent-header
 */
export function parentHeaderOf(raw: Pick<RawMessage, 'parentHeader'>): Header | undefined {
  const parent = parseParentHeader(raw.parentHeader);
  return isHeader(parent) ? parent : undefined;
}

function isHeader(h: Header | Record<string, never>): h is Header {
  return 'msg_id' in h;
}

/**
 * Narrows a parsed message's parent header to a {@link Header}, or `undefined` if it has none.
 *
 * @param msg - a parsed message.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#parent-header
 */
export function parentOf(msg: Pick<JupyterMessage, 'parent_header'>): Header | undefined {
  return isHeader(msg.parent_header) ? msg.parent_header : undefined;
}
