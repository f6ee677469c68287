/**
 * The client sessions of one kernel (each a ClientChannels with its own ZMQ identity), bounded:
 * each holds three ZeroMQ sockets for the replay TTL after its socket drops, so past the cap the
 * session disconnected longest ago is evicted; when every session is attached, a new one is
 * refused.
 */
import type { RawMessage } from '../../protocol/index.js';
import type { ClientChannels } from '../channels/client-channels.js';
import { GatewayError } from '../base/errors.js';
import { clip } from '../base/log-limit.js';
import type { Logger } from '../base/logger.js';
import type { ConnectionInfo } from '../runtime/runtime.js';
import { CloseCode } from '../base/close-codes.js';

export interface ClientTableOptions {
  kernelId: string;
  maxClientSessions: number;
  log: Logger;
  /** A new client session's channels. */
  create(sessionId: string): ClientChannels;
  /** A client session left the table (its pending requests can be dropped). */
  forgotten(client: ClientChannels): void;
}

export class ClientTable {
  #clients = new Map<string, ClientChannels>();

  constructor(private readonly o: ClientTableOptions) {}

  /** How many client sessions have a sink attached. */
  get connections(): number {
    let n = 0;
    for (const c of this.#clients.values()) if (c.attached) n++;
    return n;
  }

  /** The client session `sessionId`, created when new; throws TOO_MANY_SESSIONS when full. */
  channelsFor(sessionId: string): ClientChannels {
    let client = this.#clients.get(sessionId);
    if (!client) {
      this.#makeRoom();
      client = this.o.create(sessionId);
      this.#clients.set(sessionId, client);
    }
    return client;
  }

  /** Removes a client session (when it is still the one under its id). */
  forget(client: ClientChannels): void {
    if (this.#clients.get(client.sessionId) === client) this.#clients.delete(client.sessionId);
    this.o.forgotten(client);
  }

  /** To every attached client. */
  broadcast(raw: RawMessage): void {
    for (const c of this.#clients.values()) if (c.attached) c.deliver(raw);
  }

  /** An iopub message: to every attached client, and to the one it answers even when detached. */
  fanOut(raw: RawMessage, parentSession: string | undefined): void {
    for (const c of this.#clients.values()) {
      if (c.attached || parentSession === c.sessionId) c.deliver(raw);
    }
  }

  connectAll(connection: ConnectionInfo): void {
    for (const c of this.#clients.values()) c.connectZmq(connection);
  }

  disconnectAll(): void {
    for (const c of this.#clients.values()) c.disconnectZmq();
  }

  closeAll(code: CloseCode, reason: string): void {
    for (const c of this.#clients.values()) c.close(code, reason);
    this.#clients.clear();
  }

  #makeRoom(): void {
    if (this.#clients.size < this.o.maxClientSessions) return;
    let oldest: ClientChannels | undefined;
    for (const c of this.#clients.values()) {
      if (c.attached) continue;
      if (!oldest || c.detachedAt < oldest.detachedAt) oldest = c;
    }
    if (!oldest) {
      throw new GatewayError(
        'TOO_MANY_SESSIONS',
        `kernel ${this.o.kernelId} already has ${this.#clients.size} connected client sessions (AIDO_MAX_CLIENT_SESSIONS)`,
      );
    }
    this.o.log.info(
      { session: clip(oldest.sessionId) },
      'evicting the oldest disconnected client session',
    );
    this.forget(oldest);
    oldest.close(CloseCode.GOING_AWAY, 'client session evicted');
  }
}
