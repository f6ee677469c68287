/**
 * One ZeroMQ socket with one read loop and a serialised send queue (zeromq.js allows a single
 * send in flight per socket). Closing the link closes the socket, which ends the loop.
 */
import * as zmq from 'zeromq';

export type ZmqSocket = zmq.Dealer | zmq.Subscriber;

/**
 * Inbound bounds set on every socket that reads from a sandbox. libzmq enforces both before a
 * message reaches JavaScript: a frame over `maxMessageSize` makes it drop the connection to the
 * peer (the socket reconnects), and at most `receiveHighWaterMark` messages wait per peer.
 */
export interface ZmqInbound {
  /** Largest frame accepted, in bytes. */
  maxMessageSize: number;
  /** Most messages queued per peer before libzmq stops reading (or drops, for SUB). */
  receiveHighWaterMark: number;
  /**
   * Called when the peer connection drops while the link is open: a kernel that sent a frame over
   * the size limit, or one that closed its socket (it is exiting). Monitored only when given.
   */
  onDisconnect?: () => void;
}

/** Frames queued beyond this are dropped (the peer is not reading: a dead or wedged kernel). */
const MAX_QUEUED = 10_000;

export class ZmqLink {
  #queue: Buffer[][] = [];
  #pumping = false;
  #closed = false;

  constructor(
    private readonly socket: ZmqSocket,
    onMessage: (frames: Buffer[]) => void,
    onError: (err: unknown) => void,
    inbound?: ZmqInbound,
  ) {
    const onDisconnect = inbound?.onDisconnect;
    if (onDisconnect) {
      socket.events.on('disconnect', () => {
        if (!this.#closed) onDisconnect();
      });
    }
    void (async () => {
      try {
        for await (const frames of socket) {
          if (this.#closed) break;
          onMessage(frames);
        }
      } catch (err) {
        if (!this.#closed) onError(err);
      }
    })();
  }

  /** A DEALER with the given routing identity, connected to `endpoint`. */
  static dealer(
    endpoint: string,
    identity: string,
    onMessage: (frames: Buffer[]) => void,
    onError: (err: unknown) => void,
    inbound: ZmqInbound,
  ): ZmqLink {
    const sock = new zmq.Dealer({
      routingId: identity,
      linger: 0,
      sendTimeout: 5000,
      maxMessageSize: inbound.maxMessageSize,
      receiveHighWaterMark: inbound.receiveHighWaterMark,
    });
    sock.connect(endpoint);
    return new ZmqLink(sock, onMessage, onError, inbound);
  }

  /** A SUB subscribed to every topic, connected to `endpoint`. */
  static subscriber(
    endpoint: string,
    onMessage: (frames: Buffer[]) => void,
    onError: (err: unknown) => void,
    inbound: ZmqInbound,
  ): ZmqLink {
    const sock = new zmq.Subscriber({
      linger: 0,
      maxMessageSize: inbound.maxMessageSize,
      receiveHighWaterMark: inbound.receiveHighWaterMark,
    });
    sock.subscribe();
    sock.connect(endpoint);
    return new ZmqLink(sock, onMessage, onError, inbound);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a multipart message; sends happen in order, one at a time. */
  send(frames: Buffer[]): void {
    if (this.#closed || !(this.socket instanceof zmq.Dealer)) return;
    if (this.#queue.length >= MAX_QUEUED) return;
    this.#queue.push(frames);
    if (!this.#pumping) void this.#pump(this.socket);
  }

  async #pump(sock: zmq.Dealer): Promise<void> {
    this.#pumping = true;
    try {
      let next: Buffer[] | undefined;
      while (!this.#closed && (next = this.#queue.shift()) !== undefined) {
        try {
          await sock.send(next);
        } catch {
          // A send that times out means the kernel is gone or not reading; the kernel session
          // learns that from the container's exit, so the message is dropped here.
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    // The monitor (when there is one) ends with the socket.
    this.socket.close();
  }
}
