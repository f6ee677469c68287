/** The reference front-end client, @jupyterlab/services, against the real gateway and real sandboxes. */
import { expect } from 'chai';
import {
  KernelManager,
  ServerConnection,
  type Kernel,
  type KernelMessage,
} from '@jupyterlab/services';
import { WebSocket } from 'ws';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

function waitForStatus(
  kernel: Kernel.IKernelConnection,
  status: Kernel.Status,
  timeoutMs = 60_000,
): Promise<void> {
  if (kernel.status === status) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`timed out waiting for kernel status ${status} (now ${kernel.status})`));
    }, timeoutMs);
    const onChange = (_: unknown, s: Kernel.Status): void => {
      if (s === status) {
        clearTimeout(timer);
        kernel.statusChanged.disconnect(onChange);
        resolve();
      }
    };
    kernel.statusChanged.connect(onChange);
  });
}

async function run(
  kernel: Kernel.IKernelConnection,
  code: string,
  onStdin?: (msg: KernelMessage.IStdinMessage) => void,
) {
  const iopub: KernelMessage.IIOPubMessage[] = [];
  const future = kernel.requestExecute({ code, allow_stdin: onStdin !== undefined });
  future.onIOPub = (msg) => {
    iopub.push(msg);
  };
  if (onStdin) future.onStdin = onStdin;
  const reply = await future.done;
  return { reply, iopub };
}

function stdoutOf(iopub: KernelMessage.IIOPubMessage[]): string {
  return iopub
    .filter(
      (m) => m.header.msg_type === 'stream' && (m.content as { name: string }).name === 'stdout',
    )
    .map((m) => (m.content as { text: string }).text)
    .join('');
}

describe('@jupyterlab/services client (real sandboxes)', function () {
  this.timeout(120_000);
  let t: TestGateway;
  let manager: KernelManager;
  let kernel: Kernel.IKernelConnection;

  before(async () => {
    t = await startTestGateway({ killGraceS: 20 });
    const serverSettings = ServerConnection.makeSettings({
      baseUrl: `${t.base}/`,
      wsUrl: `${t.wsBase}/`,
      token: t.token,
      appendToken: true,
      WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
    });
    manager = new KernelManager({ serverSettings });
    await manager.ready;
    kernel = await manager.startNew({ name: 'python3' });
    await kernel.info;
  });
  after(async () => {
    kernel.dispose();
    manager.dispose();
    await t.close();
  });

  it('connects with the v1 subprotocol and reports kernel info', async () => {
    const info = await kernel.info;
    expect(info.language_info.name).to.equal('python');
    expect(kernel.connectionStatus).to.equal('connected');
  });

  it('executes with execute_result, stream and error outputs', async () => {
    const ok = await run(kernel, "print('out'); 6*7");
    expect(ok.reply.content.status).to.equal('ok');
    expect(stdoutOf(ok.iopub)).to.equal('out\n');
    const result = ok.iopub.find((m) => m.header.msg_type === 'execute_result');
    expect((result?.content as { data: Record<string, string> }).data['text/plain']).to.equal('42');
    const err = await run(kernel, "raise ValueError('bad')");
    expect(err.reply.content.status).to.equal('error');
    expect((err.reply.content as { ename: string }).ename).to.equal('ValueError');
    expect(err.iopub.some((m) => m.header.msg_type === 'error')).to.equal(true);
  });

  it('answers input() from the client over stdin', async () => {
    const r = await run(kernel, "name = input('who? '); print('hello', name)", (msg) => {
      expect(msg.header.msg_type).to.equal('input_request');
      kernel.sendInputReply(
        { value: 'grace', status: 'ok' },
        msg.header as KernelMessage.IInputReplyMsg['parent_header'],
      );
    });
    expect(stdoutOf(r.iopub)).to.equal('hello grace\n');
  });

  it('answers complete, inspect, is_complete, history and comm_info', async () => {
    await run(kernel, 'import math');
    const complete = await kernel.requestComplete({ code: 'math.sq', cursor_pos: 7 });
    expect(complete.content.status).to.equal('ok');
    expect((complete.content as { matches: string[] }).matches).to.include('sqrt');
    const inspect = await kernel.requestInspect({
      code: 'math.sqrt',
      cursor_pos: 9,
      detail_level: 0,
    });
    expect((inspect.content as { found: boolean }).found).to.equal(true);
    const incomplete = await kernel.requestIsComplete({ code: 'for i in range(3):' });
    expect((incomplete.content as { status: string }).status).to.equal('incomplete');
    const history = await kernel.requestHistory({
      output: false,
      raw: true,
      hist_access_type: 'tail',
      n: 5,
    });
    expect(history.content.status).to.equal('ok');
    expect(JSON.stringify((history.content as { history: unknown[] }).history)).to.include(
      'import math',
    );
    const comms = await kernel.requestCommInfo({});
    expect(comms.content.status).to.equal('ok');
  });

  it('interrupts time.sleep(60) with KeyboardInterrupt', async () => {
    // Interrupt only once the cell is inside the sleep: a SIGINT that lands in the kernel's own
    // code before the cell runs is not a KeyboardInterrupt of the cell (as in any Jupyter kernel).
    const future = kernel.requestExecute({
      code: "import time; print('sleeping', flush=True); time.sleep(60)",
    });
    const sleeping = new Promise<void>((resolve) => {
      future.onIOPub = (msg) => {
        if (msg.header.msg_type === 'stream') resolve();
      };
    });
    await sleeping;
    await kernel.interrupt();
    const reply = await future.done.catch(
      (e: unknown) => (e as { content?: unknown; msg?: KernelMessage.IExecuteReplyMsg }).msg ?? e,
    );
    const content = (reply as KernelMessage.IExecuteReplyMsg).content as {
      status: string;
      ename: string;
    };
    expect(content.status).to.equal('error');
    expect(content.ename).to.equal('KeyboardInterrupt');
  });

  it('restarts on a fresh sandbox and keeps working', async () => {
    await run(kernel, 'marker = 123');
    await kernel.restart();
    await waitForStatus(kernel, 'idle');
    const r = await run(kernel, "print('marker' in dir())");
    expect(stdoutOf(r.iopub)).to.equal('False\n');
  });

  it('lets two connections to one kernel both see iopub', async () => {
    const second = manager.connectTo({ model: kernel.model });
    try {
      await second.info;
      const seen: string[] = [];
      second.iopubMessage.connect((_, msg) => {
        if (msg.header.msg_type === 'stream') seen.push((msg.content as { text: string }).text);
      });
      await run(kernel, "print('to both')");
      const deadline = Date.now() + 10_000;
      while (!seen.includes('to both\n') && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(seen).to.include('to both\n');
    } finally {
      second.dispose();
    }
  });

  it('reconnects and keeps executing', async () => {
    await kernel.reconnect();
    const r = await run(kernel, "print('after reconnect')");
    expect(stdoutOf(r.iopub)).to.equal('after reconnect\n');
  });
});
