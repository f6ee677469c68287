/**
 * The gateway's own link to one sandbox: a shell and a control DEALER for its own requests
 * (readiness probes, the env hand-over, interrupts, shutdown) and the one iopub SUB whose messages
 * are fanned out to every client. One link per sandbox; closing it stops every callback.
 */
import {
  createMessage,
  encodeZmq,
  toRaw,
  type Channel,
  type ChannelOf,
  type ContentOf,
  type RawMessage,
  type Signer,
} from '../../protocol/index.js';
import { zmqInbound, type InboundGate, type InboundLimits } from '../channels/inbound-gate.js';
import { peekParent } from '../channels/parent-peek.js';
import type { Sandbox } from '../runtime/runtime.js';
import { ZmqLink } from '../runtime/zmq-link.js';
import type { RequestType } from './message-routing.js';

/** How long after a kernel's socket dropped the gateway looks whether the sandbox still runs. */
const DISCONNECT_CHECK_MS = 1000;

export interface KernelLinkOptions {
  sandbox: Sandbox;
  signer: Signer;
  /** The gateway's own Jupyter session (its requests' header.session). */
  session: string;
  gate: InboundGate;
  inbound: InboundLimits;
  /** False while the kernel must not be read (it abused the protocol). */
  readable(): boolean;
  /** Every decoded message from the kernel, before anything else sees it. */
  onAny(raw: RawMessage): void;
  onIopub(raw: RawMessage): void;
  warn(fields: Record<string, unknown>, msg: string): void;
}

export class KernelLink {
  #shell: ZmqLink;
  #control: ZmqLink;
  #iopub: ZmqLink;
  #waiters = new Map<string, (raw: RawMessage) => void>();
  #iopubSeen = false;
  #sandboxExited = false;
  #closed = false;

  constructor(private readonly o: KernelLinkOptions) {
    const ep = o.sandbox.connection.endpoints;
    void o.sandbox.exited.then(() => {
      this.#sandboxExited = true;
    });
    this.#iopub = this.#subscribe(ep.iopub);
    this.#shell = this.#dealer('shell', ep.shell);
    this.#control = this.#dealer('control', ep.control);
  }

  /** Whether an iopub message has arrived (the subscription is live). */
  get iopubSeen(): boolean {
    return this.#iopubSeen;
  }

  /**
   * Sends a request from the gateway's own socket; resolves with the reply or undefined on timeout.
   * The catalogue types the channel and the content (interrupt_request goes on control only).
   */
  request<R extends RequestType>(
    channel: ChannelOf<R> & ('shell' | 'control'),
    msgType: R,
    content: ContentOf<R>,
    timeoutMs: number,
  ): Promise<RawMessage | undefined> {
    if (this.#closed) return Promise.resolve(undefined);
    const link = channel === 'shell' ? this.#shell : this.#control;
    // Typed at this signature; createMessage's own generics need not see through R.
    const type: string = msgType;
    const raw = toRaw(
      createMessage({
        msgType: type,
        channel,
        session: this.o.session,
        content,
      }),
    );
    const id = raw.header.msg_id;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(id);
        resolve(undefined);
      }, timeoutMs);
      this.#waiters.set(id, (reply) => {
        clearTimeout(timer);
        this.#waiters.delete(id);
        resolve(reply);
      });
      link.send(encodeZmq(raw, this.o.signer));
    });
  }

  close(): void {
    this.#closed = true;
    this.#shell.close();
    this.#control.close();
    this.#iopub.close();
  }

  #live(): boolean {
    return !this.#closed && this.o.readable();
  }

  #dealer(channel: 'shell' | 'control', endpoint: string): ZmqLink {
    return ZmqLink.dealer(
      endpoint,
      this.o.session,
      (frames) => {
        this.#onReply(channel, frames);
      },
      (err) => {
        this.o.warn({ err: String(err) }, 'gateway ZMQ socket failed');
      },
      zmqInbound(this.o.inbound, () => {
        this.#peerDropped(channel);
      }),
    );
  }

  /** The gateway's one iopub subscription to the sandbox (fanned out to every client). */
  #subscribe(endpoint: string): ZmqLink {
    return ZmqLink.subscriber(
      endpoint,
      (frames) => {
        if (!this.#live()) return;
        const raw = this.o.gate.decode(frames, 'iopub', this.o.signer);
        if (!raw) return;
        this.#iopubSeen = true;
        this.o.onAny(raw);
        this.o.onIopub(raw);
      },
      (err) => {
        this.o.warn({ err: String(err) }, 'gateway ZMQ socket failed');
      },
      zmqInbound(this.o.inbound, () => {
        this.#peerDropped('iopub');
      }),
    );
  }

  #onReply(channel: Channel, frames: Buffer[]): void {
    if (!this.#live()) return;
    const raw = this.o.gate.decode(frames, channel, this.o.signer);
    if (!raw) return;
    this.o.onAny(raw);
    const parentId = peekParent(raw.parentHeader).msg_id;
    if (parentId !== undefined) this.#waiters.get(parentId)?.(raw);
  }

  /**
   * One of the gateway's own sockets lost its kernel peer. libzmq does that when the kernel sends
   * a frame over the size limit (or a broken frame); it also happens when the kernel exits. A
   * moment later, a sandbox that still runs committed a violation.
   */
  #peerDropped(channel: Channel): void {
    // Resubscribe only the socket that dropped: a kernel that drops its connection again and
    // again must not make every pending check rebuild the subscription the previous one made.
    const dropped = channel === 'iopub' ? this.#iopub : undefined;
    const timer = setTimeout(() => {
      if (this.#closed || this.#sandboxExited) return;
      this.o.gate.violation(
        'PEER_DISCONNECTED',
        `libzmq dropped the kernel's ${channel} connection: a frame over ${this.o.inbound.maxMessageBytes} bytes or a broken frame`,
        { channel },
      );
      // libzmq does not always reconnect after a protocol error: subscribe afresh, so one
      // oversized output does not leave the kernel without output for the rest of its life.
      if (dropped !== this.#iopub || this.#iopub.closed || !this.#live()) return;
      this.#iopub.close();
      this.#iopub = this.#subscribe(this.o.sandbox.connection.endpoints.iopub);
    }, DISCONNECT_CHECK_MS);
    timer.unref();
  }
}
