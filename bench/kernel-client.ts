/**
 * A minimal channels-WebSocket client for the benchmarks, speaking either the v1 subprotocol
 * (`v1.kernel.websocket.jupyter.org`) or the legacy JSON framing, built on the project's protocol
 * module. It talks to our gateway and to Jupyter Server alike (both accept
 * `Authorization: token <T>`), and tracks executions by the msg_id of their request: the
 * execute_reply on shell, the stream text and the `idle` status on IOPub.
 */
import { randomUUID } from 'node:crypto';
import { WebSocket } from 'ws';
import {
  decodeFrame,
  decodeRawFrame,
  encodeFrame,
  executeRequest,
  parentMsgId,
  subprotocolsFor,
  V1_PROTOCOL,
  type WsFraming,
} from '../protocol/index.js';

export type { WsFraming } from '../protocol/index.js';

export interface ExecuteResult {
  /** Send → execute_reply, ms. */
  replyMs: number;
  /** Send → `idle` on IOPub (only with untilIdle; else equals replyMs), ms. */
  idleMs: number;
  /** execute_reply status ('ok', 'error', 'aborted'). */
  status: string;
  /** Characters of stream text received for this execution. */
  streamChars: number;
  /** Stream messages received for this execution. */
  streamMessages: number;
  /** The stream text itself, only with collectText. */
  text: string;
}

interface Pending {
  t0: bigint;
  untilIdle: boolean;
  collectText: boolean;
  text: string;
  replyAt?: bigint;
  idleAt?: bigint;
  status?: string;
  streamChars: number;
  streamMessages: number;
  resolve: (r: ExecuteResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** What the client needs of a message it received. */
interface Seen {
  channel: string;
  msgType: string;
  parent: string | undefined;
  /** Parsed content, only for the message types the client reads (execute_reply, status, stream). */
  content: () => Record<string, unknown>;
}

const ms = (from: bigint, to: bigint): number => Number(to - from) / 1e6;

export class KernelWs {
  readonly session: string;
  #pending = new Map<string, Pending>();
  #closed: Promise<void>;

  private constructor(
    private readonly ws: WebSocket,
    readonly framing: WsFraming,
    session: string,
  ) {
    this.session = session;
    this.#closed = new Promise((resolve) =>
      ws.once('close', () => {
        resolve();
      }),
    );
    // Errors after the handshake end in 'close', which rejects whatever is pending.
    ws.on('error', () => undefined);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.#onMessage(data, isBinary);
    });
    ws.on('close', () => {
      for (const [id, p] of this.#pending) {
        clearTimeout(p.timer);
        p.reject(new Error(`WebSocket closed while waiting for ${id}`));
      }
      this.#pending.clear();
    });
  }

  /**
   * Opens `${wsBase}/api/kernels/${kernelId}/channels`. With `framing: 'v1'` the v1 subprotocol is
   * offered (and must be selected); with 'legacy' none is offered.
   */
  static async open(opts: {
    wsBase: string;
    kernelId: string;
    token: string;
    framing: WsFraming;
    session?: string;
    timeoutMs?: number;
  }): Promise<KernelWs> {
    const session = opts.session ?? `bench-${randomUUID()}`;
    const url = `${opts.wsBase}/api/kernels/${opts.kernelId}/channels?session_id=${session}`;
    const ws = new WebSocket(url, subprotocolsFor(opts.framing), {
      headers: { Authorization: `token ${opts.token}` },
      perMessageDeflate: false,
      maxPayload: 256 * 1024 * 1024,
      handshakeTimeout: opts.timeoutMs ?? 30_000,
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => {
        resolve();
      });
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`WebSocket upgrade refused: HTTP ${res.statusCode ?? '?'} on ${url}`));
      });
    });
    if (opts.framing === 'v1' && ws.protocol !== V1_PROTOCOL) {
      ws.terminate();
      throw new Error(`the server did not select ${V1_PROTOCOL} (got "${ws.protocol}")`);
    }
    return new KernelWs(ws, opts.framing, session);
  }

  #decode(data: Buffer, isBinary: boolean): Seen {
    // v1: the content is parsed only when asked for (the bench client must stay cheap).
    if (this.framing === 'v1') {
      const raw = decodeRawFrame(data, isBinary, 'v1');
      return {
        channel: raw.channel,
        msgType: raw.header.msg_type,
        parent: parentMsgId(raw),
        content: () => JSON.parse(raw.content.toString('utf8')) as Record<string, unknown>,
      };
    }
    const msg = decodeFrame(data, isBinary, 'legacy');
    const parent = (msg.parent_header as { msg_id?: unknown }).msg_id;
    return {
      channel: msg.channel,
      msgType: msg.header.msg_type,
      parent: typeof parent === 'string' ? parent : undefined,
      content: () => msg.content,
    };
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    let seen: Seen;
    try {
      seen = this.#decode(data, isBinary);
    } catch {
      return; // not ours to judge here; a bench only counts what it can read
    }
    const p = seen.parent === undefined ? undefined : this.#pending.get(seen.parent);
    if (!p || seen.parent === undefined) return;
    const now = process.hrtime.bigint();
    if (seen.channel === 'shell' && seen.msgType === 'execute_reply') {
      p.replyAt = now;
      const status = seen.content().status;
      p.status = typeof status === 'string' ? status : '?';
    } else if (seen.channel === 'iopub' && seen.msgType === 'stream') {
      const text = seen.content().text;
      if (typeof text === 'string') {
        p.streamChars += text.length;
        if (p.collectText) p.text += text;
      }
      p.streamMessages++;
    } else if (seen.channel === 'iopub' && seen.msgType === 'status') {
      if (seen.content().execution_state === 'idle') p.idleAt = now;
    }
    if (p.replyAt !== undefined && (!p.untilIdle || p.idleAt !== undefined)) {
      clearTimeout(p.timer);
      this.#pending.delete(seen.parent);
      const replyMs = ms(p.t0, p.replyAt);
      p.resolve({
        replyMs,
        idleMs: p.idleAt === undefined ? replyMs : ms(p.t0, p.idleAt),
        status: p.status ?? '?',
        streamChars: p.streamChars,
        streamMessages: p.streamMessages,
        text: p.text,
      });
    }
  }

  /**
   * Sends an execute_request and resolves on its execute_reply (and, with untilIdle, once the
   * kernel also reported `idle` for it). Rejects after timeoutMs.
   */
  execute(
    code: string,
    opts: { untilIdle?: boolean; collectText?: boolean; timeoutMs?: number } = {},
  ): Promise<ExecuteResult> {
    const msg = executeRequest(this.session, code);
    const id = msg.header.msg_id;
    const timeoutMs = opts.timeoutMs ?? 60_000;
    return new Promise<ExecuteResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new Error(`no execute_reply${opts.untilIdle ? '/idle' : ''} within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.#pending.set(id, {
        t0: process.hrtime.bigint(),
        untilIdle: opts.untilIdle ?? false,
        collectText: opts.collectText ?? false,
        text: '',
        streamChars: 0,
        streamMessages: 0,
        resolve,
        reject,
        timer,
      });
      const frame = encodeFrame(msg, this.framing);
      this.ws.send(frame.data, { binary: frame.binary });
    });
  }

  /** Closes the WebSocket and waits for the close (at most 5 s, then terminates it). */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    const t = setTimeout(() => {
      this.ws.terminate();
    }, 5000);
    await this.#closed;
    clearTimeout(t);
  }
}
