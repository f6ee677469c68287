/**
 * The channels WebSocket against the real gateway and fake kernels (no Docker): both framings,
 * binary buffers, replies to the requester only, iopub fan-out, stdin through the client that
 * asked, interrupts, stale connections, and kernel messages with a forged signature.
 */
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { createMessage, type JupyterMessage } from '../../protocol/index.js';
import { startFakeGateway, type FakeGateway } from '../helpers/fake-gateway.js';
import { parentId, stdout, TestClient } from '../helpers/ws-client.js';

function textResult(m: JupyterMessage | undefined): string | undefined {
  return (m?.content.data as Record<string, string> | undefined)?.['text/plain'];
}

describe('channels WebSocket (integration: fake kernels)', function () {
  this.timeout(15_000);
  let t: FakeGateway;
  let kernelA: string;
  let kernelB: string;

  before(async () => {
    t = await startFakeGateway({ maxFrameBytes: 1024 * 1024, killGraceS: 10 });
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
        c = await TestClient.connect(t.url(kernelA), { token: t.token, protocol });
      });
      after(() => {
        c.close();
      });

      it('answers kernel_info and runs code: busy, execute_input, output, result, reply, idle', async () => {
        const info = await c.request('shell', 'kernel_info_request', {});
        expect(info.reply.content.implementation).to.equal('fake-kernel');
        const r = await c.execute('print hello; result 42');
        expect(r.reply.content.status).to.equal('ok');
        expect(r.iopub.map((m) => m.header.msg_type)).to.deep.equal([
          'status',
          'execute_input',
          'stream',
          'execute_result',
          'status',
        ]);
        expect(stdout(r)).to.equal('hello\n');
        expect(textResult(r.iopub.find((m) => m.header.msg_type === 'execute_result'))).to.equal(
          '42',
        );
      });

      it('delivers errors as an iopub error and an error reply', async () => {
        const r = await c.execute('fail nope');
        expect(r.reply.content).to.include({
          status: 'error',
          ename: 'ValueError',
          evalue: 'nope',
        });
        expect(r.iopub.find((m) => m.header.msg_type === 'error')?.content.ename).to.equal(
          'ValueError',
        );
      });

      it('carries binary buffers both ways (comm echo)', async () => {
        const commId = randomUUID();
        const open = createMessage({
          msgType: 'comm_open',
          channel: 'shell',
          session: c.session,
          content: { comm_id: commId, target_name: 'echo', data: {} },
        });
        c.send(open);
        await c.waitFor(
          (m) => parentId(m) === open.header.msg_id && m.content.execution_state === 'idle',
          'comm_open handled',
        );
        const msg = createMessage({
          msgType: 'comm_msg',
          channel: 'shell',
          session: c.session,
          content: { comm_id: commId, data: { n: 7 } },
          buffers: [Buffer.from('abc'), Buffer.from([0, 1, 2, 255])],
        });
        c.send(msg);
        const echo = await c.waitFor(
          (m) => parentId(m) === msg.header.msg_id && m.header.msg_type === 'comm_msg',
          'comm echo',
        );
        expect(echo.content.data).to.deep.equal({ echo: { n: 7 } });
        expect(echo.buffers.map((b) => [...b])).to.deep.equal([
          [...Buffer.from('cba')],
          [255, 2, 1, 0],
        ]);
      });
    });
  }

  it('sends replies only to the requester and iopub to every client of the kernel', async () => {
    const requester = await TestClient.connect(t.url(kernelA), { token: t.token });
    const observer = await TestClient.connect(t.url(kernelA), {
      token: t.token,
      protocol: 'legacy',
    });
    const elsewhere = await TestClient.connect(t.url(kernelB), { token: t.token });
    try {
      const r = await requester.execute('print fan-out');
      const id = parentId(r.reply);
      const seen = await observer.waitFor(
        (m) => parentId(m) === id && m.content.execution_state === 'idle',
        'idle on the observer',
      );
      expect(seen.channel).to.equal('iopub');
      const observed = observer.messages.filter((m) => parentId(m) === id);
      expect(
        observed.map((m) => m.header.msg_id),
        'the same iopub, message for message',
      ).to.deep.equal(r.iopub.map((m) => m.header.msg_id));
      expect(
        observed.some((m) => m.header.msg_type === 'execute_reply'),
        'the reply went to the requester only',
      ).to.equal(false);
      // A client of another kernel gets nothing of this one (it would be here by now).
      await elsewhere.execute('print mine');
      expect(elsewhere.messages.some((m) => parentId(m) === id)).to.equal(false);
    } finally {
      requester.close();
      observer.close();
      elsewhere.close();
    }
  });

  it('answers input_request through the client that asked (stdin shares the shell identity)', async () => {
    const c = await TestClient.connect(t.url(kernelA), { token: t.token });
    const other = await TestClient.connect(t.url(kernelA), { token: t.token, protocol: 'legacy' });
    try {
      const run = c.execute('input name? ', 10_000, { allow_stdin: true });
      const req = await c.waitFor((m) => m.header.msg_type === 'input_request', 'input_request');
      expect(req.channel).to.equal('stdin');
      expect(req.content.prompt).to.equal('name?');
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
      expect(stdout(r)).to.equal('got ada\n');
      await other.waitFor(
        (m) => parentId(m) === parentId(r.reply) && m.content.execution_state === 'idle',
        'idle on the other client',
      );
      expect(other.messages.some((m) => m.header.msg_type === 'input_request')).to.equal(false);
      const model = (await (await t.api(`/api/kernels/${kernelA}`)).json()) as {
        connections: number;
      };
      expect(model.connections).to.equal(2);
    } finally {
      c.close();
      other.close();
    }
  });

  it('interrupts a running execution through the REST endpoint (KeyboardInterrupt, same sandbox)', async () => {
    const c = await TestClient.connect(t.url(kernelB), { token: t.token });
    try {
      const before = t.runtime.running(kernelB).map((s) => s.id);
      const run = c.execute('print sleeping; sleep 30');
      await c.waitFor((m) => m.content.text === 'sleeping\n', 'the cell to sleep');
      const res = await t.api(`/api/kernels/${kernelB}/interrupt`, { method: 'POST' });
      expect(res.status).to.equal(204);
      const r = await run;
      expect(r.reply.content.status).to.equal('error');
      expect(r.reply.content.ename).to.equal('KeyboardInterrupt');
      expect(
        t.runtime.running(kernelB).map((s) => s.id),
        'no kill',
      ).to.deep.equal(before);
      expect(stdout(await c.execute('print after'))).to.equal('after\n');
    } finally {
      c.close();
    }
  });

  it('interrupts through an interrupt_request on control, whose busy/idle does not make the kernel idle', async () => {
    const c = await TestClient.connect(t.url(kernelB), { token: t.token, protocol: 'legacy' });
    try {
      const run = c.execute('print sleeping; sleep 30');
      await c.waitFor((m) => m.content.text === 'sleeping\n', 'the cell to sleep');
      const probe = await c.request('control', 'comm_info_request', {});
      expect(probe.reply.content.status).to.equal('ok');
      const model = (await (await t.api(`/api/kernels/${kernelB}`)).json()) as {
        execution_state: string;
      };
      expect(model.execution_state, 'a control request’s idle is not the kernel’s').to.equal(
        'busy',
      );
      const interrupt = await c.request('control', 'interrupt_request', {});
      expect(interrupt.reply.content.status).to.equal('ok');
      expect((await run).reply.content.ename).to.equal('KeyboardInterrupt');
    } finally {
      c.close();
    }
  });

  it('replaces a stale connection that reuses a session_id', async () => {
    const session = `dup-${randomUUID()}`;
    const a = await TestClient.connect(t.url(kernelB), { token: t.token, session });
    const b = await TestClient.connect(t.url(kernelB), { token: t.token, session });
    expect((await a.closed).code).to.equal(1000);
    expect(stdout(await b.execute('print still'))).to.equal('still\n');
    b.close();
  });

  it('drops kernel messages with a forged signature, counts them, and keeps serving', async () => {
    const metric = async (): Promise<number> => {
      const text = await (await t.api('/metrics')).text();
      const line = /aido_kernel_protocol_violations_total\{code="BAD_SIGNATURE"\} (\d+)/.exec(text);
      return Number(line?.[1] ?? 0);
    };
    const before = await metric();
    const c = await TestClient.connect(t.url(kernelB), { token: t.token });
    try {
      const r = await c.execute('forge FORGED; print sent');
      expect(stdout(r)).to.equal('sent\n');
      expect(
        c.messages.some((m) => m.content.text === 'FORGED\n'),
        'the forged message never reaches a client',
      ).to.equal(false);
      expect(await metric(), 'the gate counted it').to.equal(before + 1);
      expect(stdout(await c.execute('print fine'))).to.equal('fine\n');
    } finally {
      c.close();
    }
  });
});
