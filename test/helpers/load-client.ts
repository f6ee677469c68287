/**
 * A lean Jupyter WebSocket client for load tests, speaking either framing through the project's
 * protocol module. Unlike TestClient it indexes every message by its parent msg_id as it arrives
 * (constant work per message, no scans), because the test process also hosts the gateway and
 * thousands of executions must not slow it down.
 */
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import {
  decodeFrame,
  encodeFrame,
  executeRequest,
  subprotocolsFor,
  type JupyterMessage,
} from '../../protocol/index.js';

/** One execution as this client saw it. */
export interface Execution {
  request: JupyterMessage;
  reply: JupyterMessage;
  /** The iopub messages parented to the request, in arrival order, up to and including idle. */
  iopub: JupyterMessage[];
  /** From sending the request to receiving its execute_reply. */
  roundTripMs: number;
}

function parentIdOf(m: JupyterMessage): string | undefined {
  const id = (m.parent_header as { msg_id?: unknown }).msg_id;
  return typeof id === 'string' ? id : undefined;
}

function isIdle(m: JupyterMessage): boolean {
  return m.header.msg_type === 'status' && m.content.execution_state === 'idle';
}

export class LoadClient {
  /** Every message received, counted. */
  received = 0;
  /** iopub messages by parent msg_id, in arrival order (this client's requests and others'). */
  readonly iopubByParent = new Map<string, JupyterMessage[]>();
  /** Messages on shell, control or stdin by parent msg_id. */
  readonly repliesByParent = new Map<string, JupyterMessage[]>();
  /** Messages without a parent msg_id. */
  readonly parentless: JupyterMessage[] = [];
  /** Frames that did not decode. */
  readonly decodeErrors: string[] = [];
  /** msg_ids of the requests this client sent. */
  readonly sent = new Set<string>();
  readonly #watchers = new Map<string, Set<() => void>>();
  readonly closed: Promise<void>;

  private constructor(
    readonly ws: WebSocket,
    readonly session: string,
    readonly protocol: 'v1' | 'legacy',
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.#onFrame(data, isBinary);
    });
    this.closed = new Promise((resolve) => {
      ws.once('close', () => {
        resolve();
      });
    });
  }

  static connect(
    url: string,
    opts: { token: string; session: string; protocol: 'v1' | 'legacy' },
  ): Promise<LoadClient> {
    const ws = new WebSocket(
      `${url}?session_id=${encodeURIComponent(opts.session)}`,
      subprotocolsFor(opts.protocol),
      { headers: { Authorization: `token ${opts.token}` }, perMessageDeflate: false },
    );
    const client = new LoadClient(ws, opts.session, opts.protocol);
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        resolve(client);
      });
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`upgrade refused: ${res.statusCode}`));
      });
    });
  }

  #onFrame(data: Buffer, isBinary: boolean): void {
    this.received++;
    let msg: JupyterMessage;
    try {
      msg = decodeFrame(data, isBinary, this.protocol);
    } catch (err) {
      this.decodeErrors.push(String(err));
      return;
    }
    const parent = parentIdOf(msg);
    if (parent === undefined) {
      this.parentless.push(msg);
      return;
    }
    const index = msg.channel === 'iopub' ? this.iopubByParent : this.repliesByParent;
    let list = index.get(parent);
    if (!list) {
      list = [];
      index.set(parent, list);
    }
    list.push(msg);
    const watchers = this.#watchers.get(parent);
    if (watchers) for (const w of [...watchers]) w();
  }

  /** Resolves once `done()` holds for the messages parented to `parentId`. */
  #until(parentId: string, done: () => boolean, what: string, timeoutMs: number): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      let watchers = this.#watchers.get(parentId);
      if (!watchers) {
        watchers = new Set();
        this.#watchers.set(parentId, watchers);
      }
      const stop = (): void => {
        clearTimeout(timer);
        watchers.delete(check);
        if (watchers.size === 0) this.#watchers.delete(parentId);
      };
      const check = (): void => {
        if (!done()) return;
        stop();
        resolve();
      };
      const timer = setTimeout(() => {
        stop();
        reject(new Error(`${this.session}: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      watchers.add(check);
    });
  }

  /** Waits until this client received the idle status of request `parentId` (anyone's). */
  waitIdle(parentId: string, what: string, timeoutMs: number): Promise<void> {
    return this.#until(
      parentId,
      () => (this.iopubByParent.get(parentId) ?? []).some(isIdle),
      what,
      timeoutMs,
    );
  }

  /** Sends an execute_request and resolves with its reply and its iopub messages up to idle. */
  async execute(code: string, timeoutMs: number): Promise<Execution> {
    const request = executeRequest(this.session, code, { store_history: true });
    const id = request.header.msg_id;
    this.sent.add(id);
    const started = performance.now();
    let roundTripMs = Number.NaN;
    const replied = this.#until(
      id,
      () => {
        if (!Number.isNaN(roundTripMs)) return true;
        if (!this.repliesByParent.has(id)) return false;
        roundTripMs = performance.now() - started;
        return true;
      },
      `the execute_reply to ${id}`,
      timeoutMs,
    );
    const idle = this.waitIdle(id, `idle after ${id}`, timeoutMs);
    const { data, binary } = encodeFrame(request, this.protocol);
    this.ws.send(data, { binary });
    await Promise.all([replied, idle]);
    const replies = this.repliesByParent.get(id) ?? [];
    const reply = replies[0];
    if (!reply) throw new Error(`no reply recorded for ${id}`);
    return { request, reply, iopub: this.iopubByParent.get(id) ?? [], roundTripMs };
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    await this.closed;
  }
}
