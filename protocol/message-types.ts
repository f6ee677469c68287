/**
 * The catalogue of Jupyter message types: one row per `msg_type` holding its channel and the shape
 * of its content. {@link Message}, {@link MsgType} and the routing table {@link REQUEST_CHANNEL}
 * are derived from it, so the compiler knows that `interrupt_request` goes on `control`.
 *
 * Content types are object type aliases (not interfaces) so that a typed message is assignable to
 * the untyped `JupyterMessage`, whose content is `Record<string, unknown>`. Content from the wire
 * is never cast to these types: kernels and clients must tolerate extra fields and unknown types,
 * and this module only documents what the spec promises.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#messages-on-the-shell-router-dealer-channel
 * @packageDocumentation
 *
 * Longer than 400 lines because it is the protocol's catalogue: one row per message type.
 */
import type { Channel } from './channels.js';
import type { Header } from './header.js';

/**
 * A MIME bundle: MIME type → data (a string, a list of lines, or JSON for `application/*+json`).
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#display-data
 */
export type MimeBundle = Record<string, unknown>;

/**
 * The `error` arm every reply may take.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#request-reply
 */
export type ReplyErrorContent = {
  status: 'error';
  ename: string;
  evalue: string;
  traceback: string[];
};

/**
 * The `aborted` arm a reply takes when the kernel dropped the request (after an earlier error with
 * `stop_on_error`). The spec text says `abort` in one place; kernels send `aborted`.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#request-reply
 */
export type ReplyAbortedContent = { status: 'aborted' };

/**
 * A reply's content: the type's own `ok` fields, or the shared error and aborted arms.
 *
 * @typeParam T - the fields of the `ok` reply.
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#request-reply
 */
export type ReplyContent<T extends object> =
  ({ status: 'ok' } & T) | ReplyErrorContent | ReplyAbortedContent;

/**
 * An empty content object (`{}`).
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#request-reply
 */
export type EmptyContent = Record<string, never>;

/**
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#execute
 */
export type ExecuteRequestContent = {
  code: string;
  silent?: boolean;
  store_history?: boolean;
  user_expressions?: Record<string, string>;
  /** When false the kernel must not send `input_request` (agents should send false). */
  allow_stdin?: boolean;
  stop_on_error?: boolean;
};

/**
 * `execute_reply` always carries `execution_count`, on error too.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#execution-results
 */
export type ExecuteReplyContent =
  | {
      status: 'ok';
      execution_count: number;
      payload?: Record<string, unknown>[];
      user_expressions?: Record<string, unknown>;
    }
  | (ReplyErrorContent & { execution_count: number })
  | (ReplyAbortedContent & { execution_count?: number });

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#introspection */
export type InspectRequestContent = { code: string; cursor_pos: number; detail_level?: 0 | 1 };

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#introspection */
export type InspectReplyContent = ReplyContent<{
  found: boolean;
  data: MimeBundle;
  metadata: Record<string, unknown>;
}>;

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#completion */
export type CompleteRequestContent = { code: string; cursor_pos: number };

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#completion */
export type CompleteReplyContent = ReplyContent<{
  matches: string[];
  cursor_start: number;
  cursor_end: number;
  metadata: Record<string, unknown>;
}>;

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#history */
export type HistoryRequestContent = {
  output: boolean;
  raw: boolean;
  hist_access_type: 'range' | 'tail' | 'search';
  session?: number;
  start?: number;
  stop?: number;
  n?: number;
  pattern?: string;
  unique?: boolean;
};

/**
 * Entries are `[session, line_number, input]`, or `[session, line_number, [input, output]]` when
 * output was requested.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#history
 */
export type HistoryReplyContent = ReplyContent<{
  history: ([number, number, string] | [number, number, [string, string | null]])[];
}>;

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#code-completeness */
export type IsCompleteRequestContent = { code: string };

/**
 * Its `status` is the verdict, not `ok`; `indent` comes with `incomplete`.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#code-completeness
 */
export type IsCompleteReplyContent =
  | { status: 'complete' | 'invalid' | 'unknown' }
  | { status: 'incomplete'; indent?: string }
  | ReplyErrorContent;

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#comm-info */
export type CommInfoRequestContent = { target_name?: string };

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#comm-info */
export type CommInfoReplyContent = ReplyContent<{
  comms: Record<string, { target_name: string }>;
}>;

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#kernel-info */
export type LanguageInfo = {
  name: string;
  version: string;
  mimetype?: string;
  file_extension?: string;
  pygments_lexer?: string;
  codemirror_mode?: string | Record<string, unknown>;
  nbconvert_exporter?: string;
};

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#kernel-info */
export type KernelInfoReplyContent = ReplyContent<{
  protocol_version: string;
  implementation: string;
  implementation_version: string;
  language_info: LanguageInfo;
  banner: string;
  debugger?: boolean;
  help_links?: { text: string; url: string }[];
  supported_features?: string[];
}>;

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#kernel-shutdown */
export type ShutdownRequestContent = { restart: boolean };

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#kernel-shutdown */
export type ShutdownReplyContent = ReplyContent<{ restart: boolean }>;

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#kernel-interrupt */
export type InterruptReplyContent = ReplyContent<EmptyContent>;

/**
 * A Debug Adapter Protocol request, carried verbatim.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#debug-request
 */
export type DebugRequestContent = {
  seq: number;
  type: 'request';
  command: string;
  arguments?: Record<string, unknown>;
};

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#debug-request */
export type DebugReplyContent = {
  seq: number;
  type: 'response';
  request_seq: number;
  success: boolean;
  command: string;
  message?: string;
  body?: Record<string, unknown>;
};

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#additions-to-the-dap */
export type DebugEventContent = {
  seq: number;
  type: 'event';
  event: string;
  body?: Record<string, unknown>;
};

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#create-subshell */
export type CreateSubshellReplyContent = ReplyContent<{ subshell_id: string }>;

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#delete-subshell */
export type DeleteSubshellRequestContent = { subshell_id: string };

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#list-subshells */
export type ListSubshellReplyContent = ReplyContent<{ subshell_id: string[] }>;

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#messages-on-the-stdin-router-dealer-channel */
export type InputRequestContent = { prompt: string; password: boolean };

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#messages-on-the-stdin-router-dealer-channel */
export type InputReplyContent = { value: string; status?: 'ok' | 'error' };

/**
 * `starting` once at process start, then `busy`/`idle` around each request. `restarting` and
 * `dead` are sent by servers, not kernels; JupyterLab refuses any other value.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#kernel-status
 */
export type StatusContent = {
  execution_state: 'starting' | 'idle' | 'busy' | 'restarting' | 'dead';
};

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#streams-stdout-stderr-etc */
export type StreamContent = { name: 'stdout' | 'stderr'; text: string };

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#display-data */
export type DisplayDataContent = {
  data: MimeBundle;
  metadata: Record<string, unknown>;
  transient?: { display_id?: string } & Record<string, unknown>;
};

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#update-display-data */
export type UpdateDisplayDataContent = {
  data: MimeBundle;
  metadata: Record<string, unknown>;
  transient: { display_id: string } & Record<string, unknown>;
};

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#code-inputs */
export type ExecuteInputContent = { code: string; execution_count: number };

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#id7 */
export type ExecuteResultContent = {
  execution_count: number;
  data: MimeBundle;
  metadata: Record<string, unknown>;
  transient?: Record<string, unknown>;
};

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#execution-errors */
export type ErrorContent = { ename: string; evalue: string; traceback: string[] };

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#clear-output */
export type ClearOutputContent = { wait: boolean };

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#opening-a-comm */
export type CommOpenContent = {
  comm_id: string;
  target_name: string;
  data: Record<string, unknown>;
  target_module?: string;
};

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#comm-messages */
export type CommMsgContent = { comm_id: string; data: Record<string, unknown> };

/** @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#tearing-down-comms */
export type CommCloseContent = { comm_id: string; data?: Record<string, unknown> };

/**
 * Sent by an XPUB IOPub socket (protocol 5.5) when a subscription arrives; it has no parent.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#welcome-message
 */
export type IopubWelcomeContent = { subscription: string };

/**
 * The message catalogue: `msg_type` → the channel(s) it travels on and its content.
 *
 * A type that the spec allows on more than one channel lists them all (`kernel_info_request` on
 * shell, and on control since 5.5; comm messages on shell from the client and on iopub from the
 * kernel; `shutdown_reply` on control, also published on iopub by ipykernel). The runtime routing
 * table {@link REQUEST_CHANNEL} picks the one a client request is sent on.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html
 */
export interface MessageTypes {
  execute_request: { channel: 'shell'; content: ExecuteRequestContent };
  execute_reply: { channel: 'shell'; content: ExecuteReplyContent };
  inspect_request: { channel: 'shell'; content: InspectRequestContent };
  inspect_reply: { channel: 'shell'; content: InspectReplyContent };
  complete_request: { channel: 'shell'; content: CompleteRequestContent };
  complete_reply: { channel: 'shell'; content: CompleteReplyContent };
  history_request: { channel: 'shell'; content: HistoryRequestContent };
  history_reply: { channel: 'shell'; content: HistoryReplyContent };
  is_complete_request: { channel: 'shell'; content: IsCompleteRequestContent };
  is_complete_reply: { channel: 'shell'; content: IsCompleteReplyContent };
  comm_info_request: { channel: 'shell' | 'control'; content: CommInfoRequestContent };
  comm_info_reply: { channel: 'shell' | 'control'; content: CommInfoReplyContent };
  kernel_info_request: { channel: 'shell' | 'control'; content: EmptyContent };
  kernel_info_reply: { channel: 'shell' | 'control'; content: KernelInfoReplyContent };
  shutdown_request: { channel: 'control' | 'shell'; content: ShutdownRequestContent };
  shutdown_reply: { channel: 'control' | 'shell' | 'iopub'; content: ShutdownReplyContent };
  interrupt_request: { channel: 'control'; content: EmptyContent };
  interrupt_reply: { channel: 'control'; content: InterruptReplyContent };
  debug_request: { channel: 'control'; content: DebugRequestContent };
  debug_reply: { channel: 'control'; content: DebugReplyContent };
  debug_event: { channel: 'iopub'; content: DebugEventContent };
  create_subshell_request: { channel: 'control'; content: EmptyContent };
  create_subshell_reply: { channel: 'control'; content: CreateSubshellReplyContent };
  delete_subshell_request: { channel: 'control'; content: DeleteSubshellRequestContent };
  delete_subshell_reply: { channel: 'control'; content: ReplyContent<EmptyContent> };
  list_subshell_request: { channel: 'control'; content: EmptyContent };
  list_subshell_reply: { channel: 'control'; content: ListSubshellReplyContent };
  input_request: { channel: 'stdin'; content: InputRequestContent };
  input_reply: { channel: 'stdin'; content: InputReplyContent };
  status: { channel: 'iopub'; content: StatusContent };
  stream: { channel: 'iopub'; content: StreamContent };
  display_data: { channel: 'iopub'; content: DisplayDataContent };
  update_display_data: { channel: 'iopub'; content: UpdateDisplayDataContent };
  execute_input: { channel: 'iopub'; content: ExecuteInputContent };
  execute_result: { channel: 'iopub'; content: ExecuteResultContent };
  error: { channel: 'iopub'; content: ErrorContent };
  clear_output: { channel: 'iopub'; content: ClearOutputContent };
  comm_open: { channel: 'shell' | 'iopub'; content: CommOpenContent };
  comm_msg: { channel: 'shell' | 'iopub'; content: CommMsgContent };
  comm_close: { channel: 'shell' | 'iopub'; content: CommCloseContent };
  iopub_welcome: { channel: 'iopub'; content: IopubWelcomeContent };
}

/**
 * Every `msg_type` in the catalogue.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#general-message-format
 */
export type MsgType = keyof MessageTypes;

/**
 * The content type of message type `T`.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#content
 */
export type ContentOf<T extends MsgType> = MessageTypes[T]['content'];

/**
 * The channel(s) message type `T` may travel on.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#introduction
 */
export type ChannelOf<T extends MsgType> = MessageTypes[T]['channel'];

/**
 * A fully typed message of type `T` (a union when `T` is a union). Assignable to the untyped
 * parsed form `JupyterMessage`.
 *
 * @typeParam T - one or more message types; all of them by default.
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#general-message-format
 */
export type Message<T extends MsgType = MsgType> = {
  [K in T]: {
    channel: ChannelOf<K>;
    header: Header<K>;
    parent_header: Header | Record<string, never>;
    metadata: Record<string, unknown>;
    content: ContentOf<K>;
    buffers: Buffer[];
  };
}[T];

/**
 * The channel each client→kernel message type is sent on. Keys are the message types a client may
 * originate: requests, `input_reply`, and comm messages. Each value is checked by the compiler
 * against the catalogue.
 */
const requestChannels = {
  execute_request: 'shell',
  inspect_request: 'shell',
  complete_request: 'shell',
  history_request: 'shell',
  is_complete_request: 'shell',
  comm_info_request: 'shell',
  kernel_info_request: 'shell',
  comm_open: 'shell',
  comm_msg: 'shell',
  comm_close: 'shell',
  shutdown_request: 'control',
  interrupt_request: 'control',
  debug_request: 'control',
  create_subshell_request: 'control',
  delete_subshell_request: 'control',
  list_subshell_request: 'control',
  input_reply: 'stdin',
} as const satisfies { [K in MsgType]?: ChannelOf<K> };

/**
 * A message type a client may send to a kernel.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#messages-on-the-shell-router-dealer-channel
 */
export type ClientMsgType = keyof typeof requestChannels;

/**
 * Runtime routing table: client→kernel `msg_type` → the channel it is sent on (`interrupt_request`
 * → `control`, `input_reply` → `stdin`, …). A null-prototype frozen object, so untrusted keys such
 * as `constructor` or `__proto__` find nothing. Prefer {@link channelForRequest} for lookups.
 *
 * Deliberately absent: `connect_request` (deprecated, and it reveals the kernel's ports) and
 * ipykernel's non-standard `usage_request`.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#messages-on-the-control-router-dealer-channel
 */
export const REQUEST_CHANNEL: Readonly<Record<string, Channel>> & typeof requestChannels =
  Object.freeze(Object.assign(Object.create(null) as Record<string, Channel>, requestChannels));

/**
 * The channel a client→kernel message type is sent on, or `undefined` for a type a client does
 * not originate (replies, IOPub types, unknown names).
 *
 * @param msgType - an untrusted `msg_type`.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#messages-on-the-control-router-dealer-channel
 */
export function channelForRequest(msgType: string): Channel | undefined {
  return Object.hasOwn(REQUEST_CHANNEL, msgType) ? REQUEST_CHANNEL[msgType] : undefined;
}

/**
 * True if `msgType` is a message type a client may send to a kernel.
 *
 * @param msgType - an untrusted `msg_type`.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#messages-on-the-shell-router-dealer-channel
 */
export function isClientMsgType(msgType: string): msgType is ClientMsgType {
  return Object.hasOwn(REQUEST_CHANNEL, msgType);
}
