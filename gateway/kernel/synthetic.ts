/**
 * Messages the gateway writes itself, in the kernel's name: status changes, notices (a stderr
 * stream on iopub) and the error replies that settle a client's request the kernel will not
 * answer. Clients drop queued messages whose header.session differs from the kernel's, so they
 * carry the kernel's own session id (learnt from what it sends).
 */
import {
  createMessage,
  toRaw,
  type Channel,
  type Header,
  type RawMessage,
} from '../../protocol/index.js';
import type { ExecutionState } from './kernel-model.js';
import { isRequest, replyTypeOf } from './message-routing.js';

/** Whoever a settling error goes to (a client session's channels). */
export interface Recipient {
  deliver(raw: RawMessage): void;
}

export class Synthetic {
  #kernelSession = '';

  /** `fallbackSession`: used until the kernel has said anything (the gateway's own session). */
  constructor(private readonly fallbackSession: string) {}

  /** Learns the kernel's session id from a message it sent. */
  note(raw: RawMessage): void {
    if (raw.header.session && raw.header.session !== this.#kernelSession)
      this.#kernelSession = raw.header.session;
  }

  message(
    msgType: string,
    channel: Channel,
    content: Record<string, unknown>,
    parent?: Header,
  ): RawMessage {
    const session = this.#kernelSession || this.fallbackSession;
    return toRaw(
      createMessage({ msgType, channel, session, content, ...(parent ? { parent } : {}) }),
    );
  }

  status(state: ExecutionState, parent?: Header): RawMessage {
    return this.message('status', 'iopub', { execution_state: state }, parent);
  }

  notice(text: string): RawMessage {
    return this.message('stream', 'iopub', { name: 'stderr', text: `[gateway] ${text}\n` });
  }

  /** Settles a client's request with an error: iopub error (for executions) and an error reply. */
  replyError(
    client: Recipient,
    request: Header,
    channel: Channel,
    ename: string,
    evalue: string,
  ): void {
    if (!isRequest(request.msg_type)) return;
    const error = { status: 'error', ename, evalue, traceback: [`${ename}: ${evalue}`] };
    const replyType = replyTypeOf(request.msg_type);
    if (request.msg_type === 'execute_request') {
      client.deliver(
        this.message('error', 'iopub', { ename, evalue, traceback: error.traceback }, request),
      );
      client.deliver(
        this.message(replyType, channel, { ...error, execution_count: null }, request),
      );
      client.deliver(this.status('idle', request));
    } else {
      client.deliver(this.message(replyType, channel, error, request));
    }
  }
}
