/** The channels WebSocket with a raw `ws` client: both framings, buffers, stdin, fan-out, reconnect, bad input. */
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { WebSocket } from 'ws';
import {
  createMessage,
  executeRequest,
  V1_PROTOCOL,
  type JupyterMessage,
} from '../../protocol/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { stdout, TestClient } from '../helpers/ws-client.js';

const ECHO_COMM = `
def _target(comm, open_msg):
    @comm.on_msg
    def _echo(msg):
        comm.send({'echo': msg['content']['data']}, buffers=[bytes(b)[::-1] for b in msg['buffers']])
get_ipython().kernel.comm_manager.register_target('echo', _target)
`;

function refusedStatus(
  url: string,
  opts: { headers?: Record<string, string>; protocols?: string[] } = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts.protocols ?? [], { headers: opts.headers ?? {} });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
    });
    ws.on('open', () => {
      ws.close();
      reject(new Error('upgrade unexpectedly accepted'));
    });
    ws.on('error', () => undefined);
  });
}

describe('channels WebSocket (real sandboxes)', function () {
  this.timeout(120_000);
  let t: TestGateway;
  let kernelA: string;
  let kernelB: string;
  const url = (id: string): string => `${t.wsBase}/api/kernels/${id}/channels`;

  before(async () => {
    // A generous kill grace: these tests interrupt and expect KeyboardInterrupt, never a kill,
    // even on a loaded machine (the ladder's kill is tested in watchdog.test.ts).
    t = await startTestGateway({ maxFrameBytes: 1024 * 1024, killGraceS: 20 });
    [kernelA, kernelB] = (await Promise.all([t.startKernel(), t.startKernel()])).map(
      (k) => k.id,
    ) as [string, string];
  });
  after(async () => {
    await t.close();
  });

  for (const protocol of ['v1', 'legacy'] as const) {
    describe(`${protocol} framing`, () => {
      let c: TestClient;
      before(async () => {
        c = await TestClient.connect(url(kernelA), { token: t.token, protocol });
      });
      after(() => {
        c.close();
      });

      it('negotiates the subprotocol only when offered', () => {
        expect(c.ws.protocol).to.equal(protocol === 'v1' ? V1_PROTOCOL : '');
      });

      it('answers kernel_info and runs 1+1 → execute_result 2', async () => {
        const info = await c.request('shell', 'kernel_info_request', {});
        expect(info.reply.content.status).to.equal('ok');
        expect((info.reply.content.language_info as { name: string }).name).to.equal('python');
        const r = await c.execute('1+1');
        expect(r.reply.content.status).to.equal('ok');
        const result = r.iopub.find((m) => m.header.msg_type === 'execute_result');
        expect((result?.content.data as Record<string, string>)['text/plain']).to.equal('2');
      });

      it('delivers stream output and errors', async () => {
        const out = await c.execute("print('hello'); import sys; print('oops', file=sys.stderr)");
        expect(stdout(out)).to.equal('hello\n');
        const err = await c.execute('1/0');
        expect(err.reply.content.status).to.equal('error');
        expect(err.reply.content.ename).to.equal('ZeroDivisionError');
        expect(err.iopub.some((m) => m.header.msg_type === 'error')).to.equal(true);
      });

      it('carries binary buffers both ways (comm echo)', async () => {
        await c.execute(ECHO_COMM);
        const commId = randomUUID();
        c.send(
          createMessage({
            msgType: 'comm_open',
            channel: 'shell',
            session: c.session,
            content: { comm_id: commId, target_name: 'echo', data: {} },
          }),
        );
        const msg = createMessage({
          msgType: 'comm_msg',
          channel: 'shell',
          session: c.session,
          content: { comm_id: commId, data: { x: 1 } },
          buffers: [Buffer.from([1, 2, 3]), Buffer.from('abcdef')],
        });
        c.send(msg);
        const echo = await c.waitFor(
          (m) =>
            m.header.msg_type === 'comm_msg' &&
            m.channel === 'iopub' &&
            (m.parent_header as { msg_id?: string }).msg_id === msg.header.msg_id,
          'comm echo',
        );
        expect(echo.content.data).to.deep.equal({ echo: { x: 1 } });
        expect(echo.buffers.map((b) => [...b])).to.deep.equal([
          [3, 2, 1],
          [...Buffer.from('fedcba')],
        ]);
      });
    });
  }

  it('answers input_request through the client that asked (stdin shares the shell identity)', async () => {
    const c = await TestClient.connect(url(kernelA), { token: t.token });
    const other = await TestClient.connect(url(kernelA), { token: t.token });
    try {
      const run = c.execute("x = input('name? '); print('hi', x)", 30000, { allow_stdin: true });
      const req = await c.waitFor((m) => m.header.msg_type === 'input_request', 'input_request');
      expect(req.channel).to.equal('stdin');
      expect(req.content.prompt).to.equal('name? ');
      c.send(
        createMessage({
          msgType: 'input_reply',
          channel: 'stdin',
          session: c.session,
          content: { value: 'ada' },
          parent: req.header,
        }),
      );
      const r = await run;
      expect(stdout(r)).to.equal('hi ada\n');
      // iopub reaches every client; once the other client has the output, it would also have had
      // the input_request and the reply had they been routed to it.
      await other.waitFor(
        (m) => m.header.msg_type === 'stream' && m.content.text === 'hi ada\n',
        'iopub output on the other client',
      );
      await other.waitFor(
        (m) =>
          m.header.msg_type === 'status' &&
          m.content.execution_state === 'idle' &&
          (m.parent_header as { msg_id?: string }).msg_id === r.reply.parent_header.msg_id,
        'idle on the other client',
      );
      expect(
        other.messages.some((m) => m.header.msg_type === 'input_request'),
        'the other client saw no input_request',
      ).to.equal(false);
      expect(
        other.messages.some((m) => m.header.msg_type === 'execute_reply'),
        'replies go only to the requester',
      ).to.equal(false);
      const model = (await (await t.api(`/api/kernels/${kernelA}`)).json()) as {
        connections: number;
      };
      expect(model.connections).to.equal(2);
    } finally {
      c.close();
      other.close();
    }
  });

  it('replays output that arrived while the client was away, on reconnect with the same session_id', async () => {
    const session = `replay-${randomUUID()}`;
    const first = await TestClient.connect(url(kernelB), { token: t.token, session });
    const msg = executeRequest(session, "import time; time.sleep(1.5); print('late')");
    first.send(msg);
    await first.waitFor(
      (m) => m.header.msg_type === 'status' && m.content.execution_state === 'busy',
      'busy',
    );
    first.ws.terminate();
    await first.closed;
    const second = await TestClient.connect(url(kernelB), { token: t.token, session });
    try {
      const isMine = (m: JupyterMessage): boolean =>
        (m.parent_header as { msg_id?: string }).msg_id === msg.header.msg_id;
      const reply = await second.waitFor(
        (m) => isMine(m) && m.header.msg_type === 'execute_reply',
        'replayed execute_reply',
      );
      expect(reply.content.status).to.equal('ok');
      const out = await second.waitFor(
        (m) => isMine(m) && m.header.msg_type === 'stream',
        'replayed stream',
      );
      expect(out.content.text).to.equal('late\n');
    } finally {
      second.close();
    }
  });

  it('replaces a stale connection that reuses a session_id', async () => {
    const session = `dup-${randomUUID()}`;
    const a = await TestClient.connect(url(kernelB), { token: t.token, session });
    const b = await TestClient.connect(url(kernelB), { token: t.token, session });
    const closed = await a.closed;
    expect(closed.code).to.equal(1000);
    const r = await b.execute('2*21');
    expect(
      (
        r.iopub.find((m) => m.header.msg_type === 'execute_result')?.content.data as Record<
          string,
          string
        >
      )['text/plain'],
    ).to.equal('42');
    b.close();
  });

  it('refuses upgrades without a token, with a wrong token, for unknown kernels and from foreign origins', async () => {
    expect(await refusedStatus(url(kernelA))).to.equal(401);
    expect(await refusedStatus(`${url(kernelA)}?token=wrong`)).to.equal(401);
    expect(await refusedStatus(`${url(randomUUID())}?token=${t.token}`)).to.equal(404);
    expect(
      await refusedStatus(`${url(kernelA)}?token=${t.token}`, {
        headers: { Origin: 'http://evil.example' },
      }),
    ).to.equal(403);
    const viaQuery = await TestClient.connect(`${url(kernelA)}?token=${t.token}`);
    viaQuery.close();
  });

  it('closes a connection that sends malformed or oversized frames, and keeps serving everyone else', async () => {
    const bystander = await TestClient.connect(url(kernelB), {
      token: t.token,
      protocol: 'legacy',
    });
    for (const [protocol, frame, code] of [
      ['legacy', 'this is not json', 1007],
      ['legacy', JSON.stringify({ channel: 'shell', header: { msg_id: 1 }, content: {} }), 1007],
      ['v1', Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3]), 1007],
      ['v1', Buffer.alloc(2 * 1024 * 1024), 1009],
    ] as const) {
      const bad = await TestClient.connect(url(kernelA), { token: t.token, protocol });
      bad.ws.send(frame);
      const closed = await bad.closed;
      expect(closed.code, `${protocol} ${String(frame).slice(0, 20)}`).to.equal(code);
    }
    const r = await bystander.execute("print('still here')");
    expect(stdout(r)).to.equal('still here\n');
    bystander.close();
    const again = await TestClient.connect(url(kernelA), { token: t.token });
    expect((await again.execute('3')).reply.content.status).to.equal('ok');
    again.close();
  });

  it('drops kernel messages with a wrong signature (code in the kernel forging iopub) and keeps serving', async () => {
    const c = await TestClient.connect(url(kernelB), { token: t.token });
    try {
      const forged = [
        'k = get_ipython().kernel',
        'from jupyter_client.session import Session',
        "s = Session(key=b'not-the-key', session=k.session.session)",
        "s.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': 'FORGED\\n'}, parent=k.get_parent('shell'))",
        "print('sent')",
      ].join('\n');
      const r = await c.execute(forged);
      expect(stdout(r)).to.equal('sent\n');
      expect(
        c.messages.some((m) => m.content.text === 'FORGED\n'),
        'the forged message never reaches a client',
      ).to.equal(false);
      expect(stdout(await c.execute("print('fine')"))).to.equal('fine\n');
    } finally {
      c.close();
    }
  });

  it('interrupts a running execution through the REST endpoint (KeyboardInterrupt)', async () => {
    const c = await TestClient.connect(url(kernelB), { token: t.token });
    try {
      // Interrupt once the cell is inside the sleep (see the @jupyterlab/services test).
      const run = c.execute("import time; print('sleeping', flush=True); time.sleep(60)");
      await c.waitFor(
        (m) => m.header.msg_type === 'stream' && m.content.text === 'sleeping\n',
        'the cell to start sleeping',
      );
      expect(
        (await t.api(`/api/kernels/${kernelB}/interrupt`, { method: 'POST' })).status,
      ).to.equal(204);
      const r = await run;
      expect(r.reply.content.status).to.equal('error');
      expect(r.reply.content.ename).to.equal('KeyboardInterrupt');
    } finally {
      c.close();
    }
  });
});
