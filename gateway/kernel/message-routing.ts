/**
 * What the bridge needs to know of a message type, from the protocol's catalogue
 * (protocol/message-types.ts): whether a client's message is a request the kernel will answer,
 * and with which reply type; whether a kernel's message is a reply (so it settles a request).
 * Known types are decided by the catalogue, checked by the compiler; types it does not know (a
 * kernel's own extensions, such as ipykernel's usage_request) by Jupyter's naming convention, as
 * the bridge always did.
 */
import type { Channel, ClientMsgType, MsgType } from '../../protocol/index.js';

/** The client→kernel message types the kernel answers with a reply. */
export type RequestType = Extract<ClientMsgType, `${string}_request`>;

/** The reply type of request `R`, as the catalogue names it. */
export type ReplyOf<R extends RequestType> = R extends `${infer B}_request`
  ? Extract<MsgType, `${B}_reply`>
  : never;

/** Every request's reply type; the compiler checks it is complete and each reply exists. */
const replies = {
  execute_request: 'execute_reply',
  inspect_request: 'inspect_reply',
  complete_request: 'complete_reply',
  history_request: 'history_reply',
  is_complete_request: 'is_complete_reply',
  comm_info_request: 'comm_info_reply',
  kernel_info_request: 'kernel_info_reply',
  shutdown_request: 'shutdown_reply',
  interrupt_request: 'interrupt_reply',
  debug_request: 'debug_reply',
  create_subshell_request: 'create_subshell_reply',
  delete_subshell_request: 'delete_subshell_reply',
  list_subshell_request: 'list_subshell_reply',
} as const satisfies { [R in RequestType]: ReplyOf<R> };

/** Null-prototype, so untrusted keys such as `constructor` find nothing. */
const REPLY_OF: Readonly<Record<string, string>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, string>, replies),
);
const REPLY_TYPES: ReadonlySet<string> = new Set(Object.values(replies));
const CATALOGUED = new Set<string>([
  'input_request',
  'input_reply',
  'status',
  'stream',
  'display_data',
  'update_display_data',
  'execute_input',
  'execute_result',
  'error',
  'clear_output',
  'comm_open',
  'comm_msg',
  'comm_close',
  'iopub_welcome',
  'debug_event',
  ...Object.keys(replies),
  ...REPLY_TYPES,
] satisfies string[]);

function isRequestType(msgType: string): msgType is RequestType {
  return Object.hasOwn(REPLY_OF, msgType);
}

/** The reply type a request gets (known: from the catalogue; unknown: `x_request` → `x_reply`). */
export function replyTypeOf(requestType: string): string {
  if (isRequestType(requestType)) return replies[requestType];
  return requestType.endsWith('_request')
    ? `${requestType.slice(0, -'_request'.length)}_reply`
    : `${requestType}_reply`;
}

/** Whether a message type is a request, answered by a reply (input_reply, comms: no). */
export function isRequest(msgType: string): boolean {
  if (isRequestType(msgType)) return true;
  if (CATALOGUED.has(msgType)) return false;
  return msgType.endsWith('_request');
}

/** Whether a client's message waits for a reply from the kernel (nothing on stdin does). */
export function awaitsReply(msgType: string, channel: Channel): boolean {
  return channel !== 'stdin' && isRequest(msgType);
}

/** Whether a message from the kernel is a reply, which settles the request it answers. */
export function isReply(msgType: string): boolean {
  if (REPLY_TYPES.has(msgType)) return true;
  if (CATALOGUED.has(msgType)) return false;
  return msgType.endsWith('_reply');
}
