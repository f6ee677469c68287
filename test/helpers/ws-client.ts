/**
 * A minimal Jupyter WebSocket client for tests, speaking either framing through the project's own
 * protocol module: send a request, collect its iopub output until idle and its reply.
 */
import { WebSocket } from 'ws';
import {
  createMessage,
  decodeFrame,
  encodeFrame,
  executeContent,
  subprotocolsFor,
  type Channel,
  type JupyterMessage,
} from '../../protocol/index.js';

export interface Collected {
  reply: JupyterMessage;
  iopub: JupyterMessage[];
}

export class TestClient {
  readonly messages: JupyterMessage[] = [];
  #waiters: { pred: (m: JupyterMessage) => boolean; resolve: (m: JupyterMessage) => void }[] = [];
  closed: Promise<{ code: number; reason: string }>;

  private constructor(
    readonly ws: WebSocket,
    readonly session: string,
    readonly protocol: 'v1' | 'legacy',
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const msg = decodeFrame(data, isBinary, protocol);
      this.messages.push(msg);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(msg)) return true;
        w.resolve(msg);
        return false;
      });
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
      });
    });
  }

  static connect(
    url: string,
    opts: {
      token?: string;
      session?: string;
      protocol?: 'v1' | 'legacy';
      headers?: Record<string, string>;
    } = {},
  ): Promise<TestClient> {
    const session = opts.session ?? `test-${Math.random().toString(16).slice(2)}`;
    const protocol = opts.protocol ?? 'v1';
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.Authorization = `token ${opts.token}`;
    const ws = new WebSocket(
      `${url}${url.includes('?') ? '&' : '?'}session_id=${session}`,
      subprotocolsFor(protocol),
      { headers },
    );
    const client = new TestClient(ws, session, protocol);
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

  send(msg: JupyterMessage): void {
    const { data, binary } = encodeFrame(msg, this.protocol);
    this.ws.send(data, { binary });
  }

  /** Waits for the first message (already received or future) matching `pred`. */
  waitFor(
    pred: (m: JupyterMessage) => boolean,
    what: string,
    timeoutMs = 30000,
  ): Promise<JupyterMessage> {
    const seen = this.messages.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.#waiters.push({
        pred,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  /** Sends a request and resolves with its reply and its iopub messages up to status idle. */
  async request(
    channel: Channel,
    msgType: string,
    content: Record<string, unknown>,
    timeoutMs = 30000,
    buffers: Buffer[] = [],
  ): Promise<Collected> {
    const msg = createMessage({ msgType, channel, session: this.session, content, buffers });
    const id = msg.header.msg_id;
    const isChild = (m: JupyterMessage): boolean =>
      (m.parent_header as { msg_id?: string }).msg_id === id;
    this.send(msg);
    const reply = this.waitFor(
      (m) => isChild(m) && m.channel === channel && m.header.msg_type.endsWith('_reply'),
      `${msgType} reply`,
      timeoutMs,
    );
    const idle = this.waitFor(
      (m) =>
        isChild(m) &&
        m.channel === 'iopub' &&
        m.header.msg_type === 'status' &&
        m.content.execution_state === 'idle',
      `idle after ${msgType}`,
      timeoutMs,
    );
    const [r] = await Promise.all([reply, idle]);
    return { reply: r, iopub: this.messages.filter((m) => isChild(m) && m.channel === 'iopub') };
  }

  execute(
    code: string,
    timeoutMs = 30000,
    extra: Record<string, unknown> = {},
  ): Promise<Collected> {
    return this.request(
      'shell',
      'execute_request',
      executeContent(code, { store_history: true, ...extra }),
      timeoutMs,
    );
  }

  close(): void {
    this.ws.close();
  }
}

/** The text of all stdout stream messages. */
export function stdout(c: Collected): string {
  return c.iopub
    .filter((m) => m.header.msg_type === 'stream' && m.content.name === 'stdout')
    .map((m) => String(m.content.text))
    .join('');
}

/** The msg_id of a message's parent, if it has one. */
export function parentId(m: JupyterMessage): string | undefined {
  return (m.parent_header as { msg_id?: string }).msg_id;
}

/** A status the gateway broadcasts about the kernel itself (no parent): restarting, dead. */
export function isKernelStatus(state: string): (m: JupyterMessage) => boolean {
  return (m) =>
    m.channel === 'iopub' &&
    m.header.msg_type === 'status' &&
    m.content.execution_state === state &&
    parentId(m) === undefined;
}

/** A stderr notice the gateway itself sends on iopub ("[gateway] …"). */
export function isGatewayNotice(m: JupyterMessage): boolean {
  return (
    m.channel === 'iopub' &&
    m.header.msg_type === 'stream' &&
    m.content.name === 'stderr' &&
    String(m.content.text).startsWith('[gateway]')
  );
}
