/**
 * One ZeroMQ socket with one read loop and a serialised send queue (zeromq.js allows a single
 * send in flight per socket). Closing the link closes the socket, which ends the loop.
 */
import * as zmq from 'zeromq';

export type ZmqSocket = zmq.Dealer | zmq.Subscriber;

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
  ) {
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
  ): ZmqLink {
    const sock = new zmq.Dealer({ routingId: identity, linger: 0, sendTimeout: 5000 });
    sock.connect(endpoint);
    return new ZmqLink(sock, onMessage, onError);
  }

  /** A SUB subscribed to every topic, connected to `endpoint`. */
  static subscriber(
    endpoint: string,
    onMessage: (frames: Buffer[]) => void,
    onError: (err: unknown) => void,
  ): ZmqLink {
    const sock = new zmq.Subscriber({ linger: 0 });
    sock.subscribe();
    sock.connect(endpoint);
    return new ZmqLink(sock, onMessage, onError);
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
    this.socket.close();
  }
}
