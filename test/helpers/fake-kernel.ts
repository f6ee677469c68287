/**
 * A small Jupyter kernel for the integration tier (test/integration): a ZeroMQ peer that binds the
 * five channels of a connection (shell, control and stdin ROUTERs, an iopub PUB, an hb REP) on real
 * sockets, signs and frames with protocol/ (so the gateway's gate checks it as it checks ipykernel),
 * and runs a tiny line language instead of Python. It answers what the gateway and the tests need
 * the way ipykernel does: every request wrapped in busy/idle on iopub with it as parent, the reply
 * on the socket it came from before the idle, executions one at a time, control beside them.
 *
 * The language, one statement per line (or `;`-separated):
 *   print TEXT   a stdout stream "TEXT\n"           result TEXT  an execute_result (text/plain)
 *   sleep S      waits S seconds; an interrupt ends it with KeyboardInterrupt
 *   hang         waits until killed: it ignores interrupts (a loop with SIGINT ignored)
 *   input PROMPT an input_request on stdin to the requester; prints "got VALUE"
 *   fail TEXT    raises ValueError TEXT             exit CODE    the kernel exits with CODE
 *   set NAME     stores NAME in the kernel's state  has NAME     prints True or False
 *   forge TEXT   publishes a stdout stream TEXT signed with a key that is not the kernel's
 * A comm opened with target `echo` answers each comm_msg with {echo: data} and its buffers reversed.
 *
 * Runs in the test process (FakeRuntime's default: fast) or as its own process
 * (fake-kernel-main.ts: a kill is a real SIGKILL).
 */
import { randomUUID } from 'node:crypto';
import * as zmq from 'zeromq';
import {
  createMessage,
  decodeZmq,
  encodeZmq,
  fromRaw,
  Signer,
  toRaw,
  type Channel,
  type Header,
  type JupyterMessage,
} from '../../protocol/index.js';
import type { ConnectionInfo, ZmqChannel } from '../../gateway/runtime/runtime.js';

/** ipc endpoints of the five channels in `dir`. */
export function endpointsIn(dir: string): Record<ZmqChannel, string> {
  const ep = (name: string): string => `ipc://${dir}/${name}`;
  return {
    shell: ep('shell'),
    control: ep('control'),
    stdin: ep('stdin'),
    iopub: ep('iopub'),
    hb: ep('hb'),
  };
}

/** An exception of the executed code, reported as ipykernel reports a Python one. */
class KernelError extends Error {
  constructor(
    readonly ename: string,
    readonly evalue: string,
  ) {
    super(`${ename}: ${evalue}`);
  }
}

/** zeromq.js allows one send in flight per socket: sends are chained. */
class Outbox {
  #chain: Promise<void> = Promise.resolve();
  constructor(private readonly sock: { send(frames: Buffer[]): Promise<void> }) {}
  send(frames: Buffer[]): void {
    this.#chain = this.#chain.then(() => this.sock.send(frames)).catch(() => undefined);
  }
  /** Settles once everything queued so far was handed to libzmq. */
  drained(): Promise<void> {
    return this.#chain;
  }
}

/** The request being executed (what output, stdin and interrupts refer to). */
interface Running {
  ids: Buffer[];
  parent: Header;
  allowStdin: boolean;
  /** Ends the current wait with KeyboardInterrupt; absent while the code ignores interrupts. */
  interrupt?: (() => void) | undefined;
}

export class FakeKernel {
  readonly session = randomUUID();
  /** The msg_type of every shell and control message received, in order (tests look at it). */
  readonly received: string[] = [];
  readonly #signer: Signer;
  readonly #sockets: zmq.Socket[];
  readonly #shell = new zmq.Router({ linger: 0 });
  readonly #control = new zmq.Router({ linger: 0 });
  readonly #stdin = new zmq.Router({ linger: 0 });
  readonly #iopub = new zmq.Publisher({ linger: 0 });
  readonly #hb = new zmq.Reply({ linger: 0 });
  readonly #out: Record<'shell' | 'control' | 'stdin' | 'iopub', Outbox>;
  #shellQueue: Promise<void> = Promise.resolve();
  #count = 0;
  #running: Running | undefined;
  #inputWaiter: ((value: string) => void) | undefined;
  #names = new Set<string>();
  #comms = new Set<string>();
  #closed = false;

  private constructor(
    key: string,
    private readonly exit: (code: number) => void,
  ) {
    this.#signer = new Signer(key);
    this.#sockets = [this.#shell, this.#control, this.#stdin, this.#iopub, this.#hb];
    this.#out = {
      shell: new Outbox(this.#shell),
      control: new Outbox(this.#control),
      stdin: new Outbox(this.#stdin),
      iopub: new Outbox(this.#iopub),
    };
  }

  /** Binds the connection's endpoints and starts serving; `exit` is called for `exit` and shutdown. */
  static async start(conn: ConnectionInfo, exit: (code: number) => void): Promise<FakeKernel> {
    const k = new FakeKernel(conn.key, exit);
    const ep = conn.endpoints;
    await Promise.all([
      k.#shell.bind(ep.shell),
      k.#control.bind(ep.control),
      k.#stdin.bind(ep.stdin),
      k.#iopub.bind(ep.iopub),
      k.#hb.bind(ep.hb),
    ]);
    k.#serve(k.#shell, 'shell', (ids, m) => {
      // Shell requests run one at a time, in order, as in ipykernel.
      k.#shellQueue = k.#shellQueue.then(() => k.#onShell(ids, m)).catch(() => undefined);
    });
    k.#serve(k.#control, 'control', (ids, m) => void k.#onControl(ids, m));
    k.#serve(k.#stdin, 'stdin', (_ids, m) => {
      if (m.header.msg_type === 'input_reply') k.#inputWaiter?.(String(m.content.value));
    });
    void (async () => {
      for await (const frames of k.#hb) await k.#hb.send(frames).catch(() => undefined);
    })().catch(() => undefined);
    k.#publish('status', { execution_state: 'starting' });
    return k;
  }

  /** Closes every socket at once, as a process that dies does. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#sockets) s.close();
  }

  #serve(
    sock: zmq.Router,
    channel: Channel,
    handle: (ids: Buffer[], m: JupyterMessage) => void,
  ): void {
    void (async () => {
      for await (const frames of sock) {
        let decoded;
        try {
          decoded = decodeZmq(frames, channel, this.#signer);
        } catch {
          continue; // ipykernel drops what it cannot authenticate, too
        }
        const msg = fromRaw(decoded.raw);
        if (channel !== 'stdin') this.received.push(msg.header.msg_type);
        handle(decoded.identities, msg);
      }
    })().catch(() => undefined);
  }

  #frames(
    msgType: string,
    channel: Channel,
    content: Record<string, unknown>,
    parent: Header | undefined,
    ids: Buffer[],
    signer = this.#signer,
    buffers: Buffer[] = [],
  ): Buffer[] {
    const msg = createMessage({
      msgType,
      channel,
      session: this.session,
      content,
      buffers,
      ...(parent ? { parent } : {}),
    });
    return encodeZmq(toRaw(msg), signer, ids);
  }

  #publish(
    msgType: string,
    content: Record<string, unknown>,
    parent?: Header,
    buffers?: Buffer[],
  ): void {
    const topic = [Buffer.from(`kernel.${this.session}.${msgType}`)];
    this.#out.iopub.send(
      this.#frames(msgType, 'iopub', content, parent, topic, undefined, buffers),
    );
  }

  #reply(channel: 'shell' | 'control', ids: Buffer[], req: JupyterMessage, content: object): void {
    const type = req.header.msg_type.replace(/_request$/, '_reply');
    this.#out[channel].send(this.#frames(type, channel, { ...content }, req.header, ids));
  }

  /** ipykernel's frame around every request: busy, the handler (which replies), idle. */
  async #handle(req: JupyterMessage, body: () => Promise<void> | void): Promise<void> {
    this.#publish('status', { execution_state: 'busy' }, req.header);
    await body();
    this.#publish('status', { execution_state: 'idle' }, req.header);
  }

  async #onControl(ids: Buffer[], req: JupyterMessage): Promise<void> {
    const type = req.header.msg_type;
    await this.#handle(req, () => {
      if (type === 'interrupt_request') {
        this.#running?.interrupt?.();
        this.#reply('control', ids, req, { status: 'ok' });
      } else if (type === 'shutdown_request') {
        this.#reply('control', ids, req, { status: 'ok', restart: req.content.restart === true });
        setTimeout(() => {
          this.exit(0);
        }, 20);
      } else this.#answer('control', ids, req);
    });
  }

  async #onShell(ids: Buffer[], req: JupyterMessage): Promise<void> {
    await this.#handle(req, async () => {
      if (req.header.msg_type === 'execute_request') await this.#execute(ids, req);
      else if (req.header.msg_type === 'comm_open') {
        if (req.content.target_name === 'echo') this.#comms.add(String(req.content.comm_id));
      } else if (req.header.msg_type === 'comm_msg') {
        if (!this.#comms.has(String(req.content.comm_id))) return;
        const reversed = req.buffers.map((b) => Buffer.from(b).reverse());
        const data = { echo: (req.content as { data?: unknown }).data ?? null };
        this.#publish('comm_msg', { comm_id: req.content.comm_id, data }, req.header, reversed);
      } else this.#answer('shell', ids, req);
    });
  }

  /** The requests that only ask something of the kernel. Unknown types get no reply (ipykernel). */
  #answer(channel: 'shell' | 'control', ids: Buffer[], req: JupyterMessage): void {
    const answers: Record<string, object> = {
      kernel_info_request: {
        status: 'ok',
        protocol_version: '5.3',
        implementation: 'fake-kernel',
        implementation_version: '1.0',
        language_info: {
          name: 'fake',
          version: '1.0',
          mimetype: 'text/plain',
          file_extension: '.txt',
        },
        banner: 'the integration tier’s fake kernel',
      },
      is_complete_request: { status: 'complete' },
      comm_info_request: { status: 'ok', comms: {} },
      complete_request: { status: 'ok', matches: [], cursor_start: 0, cursor_end: 0, metadata: {} },
    };
    const content = answers[req.header.msg_type];
    if (content) this.#reply(channel, ids, req, content);
  }

  async #execute(ids: Buffer[], req: JupyterMessage): Promise<void> {
    const code = typeof req.content.code === 'string' ? req.content.code : '';
    const n = ++this.#count;
    this.#publish('execute_input', { code, execution_count: n }, req.header);
    this.#running = { ids, parent: req.header, allowStdin: req.content.allow_stdin === true };
    const statements = code.split(/[\n;]/).map((s) => s.trim());
    try {
      for (const stmt of statements) if (stmt !== '') await this.#run(stmt, this.#running);
      // ipykernel flushes the output before it replies.
      await this.#out.iopub.drained();
      this.#reply('shell', ids, req, {
        status: 'ok',
        execution_count: n,
        user_expressions: {},
        payload: [],
      });
    } catch (err) {
      const e = err instanceof KernelError ? err : new KernelError('RuntimeError', String(err));
      const error = { ename: e.ename, evalue: e.evalue, traceback: [e.message] };
      this.#publish('error', error, req.header);
      await this.#out.iopub.drained();
      this.#reply('shell', ids, req, { status: 'error', execution_count: n, ...error });
    } finally {
      this.#running = undefined;
    }
  }

  async #run(stmt: string, run: Running): Promise<void> {
    const [verb = '', ...rest] = stmt.split(' ');
    const arg = rest.join(' ');
    const stdout = (text: string): void => {
      this.#publish('stream', { name: 'stdout', text: `${text}\n` }, run.parent);
    };
    switch (verb) {
      case 'print':
        stdout(arg);
        return;
      case 'result': {
        const data = { 'text/plain': arg };
        const content = { data, metadata: {}, execution_count: this.#count };
        this.#publish('execute_result', content, run.parent);
        return;
      }
      case 'sleep':
        return this.#interruptible(run, (done) => setTimeout(done, Number(arg) * 1000));
      case 'hang':
        run.interrupt = undefined;
        return new Promise(() => undefined);
      case 'input': {
        if (!run.allowStdin)
          throw new KernelError('StdinNotImplementedError', 'input() is not supported here');
        const value = await this.#interruptible<string>(run, (done) => {
          this.#inputWaiter = done;
          const request = { prompt: arg, password: false };
          this.#out.stdin.send(
            this.#frames('input_request', 'stdin', request, run.parent, run.ids),
          );
        });
        stdout(`got ${value}`);
        return;
      }
      case 'fail':
        throw new KernelError('ValueError', arg);
      case 'exit':
        this.exit(Number(arg));
        return new Promise(() => undefined);
      case 'set':
        this.#names.add(arg);
        return;
      case 'has':
        stdout(this.#names.has(arg) ? 'True' : 'False');
        return;
      case 'forge': {
        const forger = new Signer('not-the-key');
        const content = { name: 'stdout', text: `${arg}\n` };
        const topic = [Buffer.from('kernel.forged.stream')];
        this.#out.iopub.send(this.#frames('stream', 'iopub', content, run.parent, topic, forger));
        return;
      }
      default:
        throw new KernelError('SyntaxError', `unknown statement: ${stmt}`);
    }
  }

  /** Waits for `start`'s callback, or for an interrupt (KeyboardInterrupt). */
  #interruptible<T = void>(run: Running, start: (done: (v: T) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      run.interrupt = () => {
        reject(new KernelError('KeyboardInterrupt', ''));
      };
      start(resolve);
    }).finally(() => {
      run.interrupt = undefined;
      this.#inputWaiter = undefined;
    });
  }
}
