/**
 * Faults on real sandboxes, and what the gateway promises through them: a container killed from
 * outside mid-execution (the requester's future settles, everyone learns the kernel died and why,
 * restart brings it back on a fresh sandbox), a client dropped mid-execution (a reconnect with the
 * same session_id gets everything it missed, once and in order; an overflowed replay buffer says
 * how much it dropped and keeps the newest), and a reconnect with a different session_id (it gets
 * nothing of the old session). The Docker daemon itself is not touched here.
 */
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import Docker from 'dockerode';
import type { KernelModel } from '../../gateway/kernel/kernel.js';
import { executeRequest, type JupyterMessage } from '../../protocol/index.js';
import {
  startTestGateway,
  type TestGateway,
  kernelModel,
  runningContainers,
} from '../helpers/gateway.js';
import {
  stdout,
  TestClient,
  isKernelStatus,
  parentId,
  isGatewayNotice,
} from '../helpers/ws-client.js';

function childOf(request: JupyterMessage): (m: JupyterMessage) => boolean {
  return (m) => parentId(m) === request.header.msg_id;
}

function isIdleOf(request: JupyterMessage): (m: JupyterMessage) => boolean {
  return (m) =>
    childOf(request)(m) &&
    m.channel === 'iopub' &&
    m.header.msg_type === 'status' &&
    m.content.execution_state === 'idle';
}

function isReplyOf(request: JupyterMessage): (m: JupyterMessage) => boolean {
  return (m) => childOf(request)(m) && m.header.msg_type === 'execute_reply';
}

function isTypeOf(request: JupyterMessage, type: string): (m: JupyterMessage) => boolean {
  return (m) => childOf(request)(m) && m.header.msg_type === type;
}

function stdoutOf(messages: readonly JupyterMessage[]): string {
  return messages
    .filter((m) => m.header.msg_type === 'stream' && m.content.name === 'stdout')
    .map((m) => String(m.content.text))
    .join('');
}

describe('faults (real sandboxes)', function () {
  this.timeout(90_000);
  let t: TestGateway;
  const url = (id: string): string => `${t.wsBase}/api/kernels/${id}/channels`;

  before(async () => {
    t = await startTestGateway();
  });
  after(async () => {
    await t.close();
  });

  it('a container killed mid-execution: KernelDied to the requester, dead and the reason to every client and the model; restart brings it back on a fresh sandbox', async () => {
    const { id } = await t.startKernel();
    const requester = await TestClient.connect(url(id), { token: t.token, protocol: 'v1' });
    const observer = await TestClient.connect(url(id), { token: t.token, protocol: 'legacy' });
    try {
      await requester.execute('x = 41');
      const before = t.gw.kernels.get(id).sandboxId;
      expect(before).to.be.a('string');

      const run = requester.execute(
        "import time; print('sleeping', flush=True); time.sleep(30)",
        30_000,
      );
      await requester.waitFor(
        (m) => m.header.msg_type === 'stream' && m.content.text === 'sleeping\n',
        'the cell to be running',
      );
      // From outside, as an OOM killer or an operator would: SIGKILL through the Docker API.
      const docker = new Docker({ socketPath: t.gw.config.dockerSocket });
      await docker.getContainer(before as string).kill();

      const r = await run;
      expect(r.reply.content.status, 'the requester is not left waiting').to.equal('error');
      expect(r.reply.content.ename).to.equal('KernelDied');
      expect(String(r.reply.content.evalue)).to.match(/exit.*\b137\b/);
      const err = r.iopub.find((m) => m.header.msg_type === 'error');
      expect(err?.content.ename, 'an iopub error for the cell').to.equal('KernelDied');

      for (const [name, c] of [
        ['requester', requester],
        ['observer', observer],
      ] as const) {
        await c.waitFor(isKernelStatus('dead'), `status dead on the ${name}`);
        const notice = await c.waitFor(isGatewayNotice, `a gateway notice on the ${name}`);
        expect(String(notice.content.text)).to.match(/Kernel died: .*exit.*\b137\b/);
      }
      expect(
        observer.messages.some((m) => m.header.msg_type === 'execute_reply'),
        'the reply went to the requester only',
      ).to.equal(false);

      const dead = await kernelModel(t, id);
      expect(dead.execution_state).to.equal('dead');
      expect(dead.reason)
        .to.match(/exit/)
        .and.match(/\b137\b/);
      expect(await runningContainers(t, id), 'nothing runs for it').to.deep.equal([]);
      const refused = await observer.execute('1 + 1');
      expect(refused.reply.content.ename, 'a dead kernel refuses, it does not hang').to.equal(
        'KernelUnavailable',
      );

      const res = await t.api(`/api/kernels/${id}/restart`, { method: 'POST' });
      expect(res.status).to.equal(200);
      const restarted = (await res.json()) as KernelModel;
      expect(restarted.id).to.equal(id);
      expect(restarted.execution_state).to.equal('idle');
      const now = t.gw.kernels.get(id).sandboxId;
      expect(now).to.be.a('string').and.not.equal(before);
      expect(await runningContainers(t, id)).to.deep.equal([now]);
      await observer.waitFor(isKernelStatus('restarting'), 'status restarting on the observer');

      // The connections that saw it die go on, on the fresh sandbox (fresh state, too).
      expect(stdout(await requester.execute("print('x' in globals())"))).to.equal('False\n');
      expect(stdout(await observer.execute('print(6 * 7)'))).to.equal('42\n');
      expect((await kernelModel(t, id)).execution_state).to.equal('idle');
    } finally {
      requester.close();
      observer.close();
    }
  });

  describe('a client dropped mid-execution', () => {
    let kernelId: string;
    let observer: TestClient;
    before(async () => {
      kernelId = (await t.startKernel()).id;
      observer = await TestClient.connect(url(kernelId), { token: t.token });
    });
    after(() => {
      observer.close();
    });

    for (const protocol of ['v1', 'legacy'] as const) {
      it(`${protocol}: a reconnect with the same session_id gets every output and the reply, in order, once`, async () => {
        const session = `drop-${randomUUID()}`;
        const lines = Array.from({ length: 20 }, (_, i) => `line ${i}\n`).join('');
        const request = executeRequest(
          session,
          "import time\nfor i in range(20):\n    print(f'line {i}', flush=True)\n    time.sleep(0.1)\n'finished'",
        );
        const first = await TestClient.connect(url(kernelId), {
          token: t.token,
          session,
          protocol,
        });
        first.send(request);
        // Dropped right after a line arrived: the next comes 100 ms later, into the buffer.
        await first.waitFor(
          (m) => childOf(request)(m) && stdoutOf([m]).includes('line 2\n'),
          'line 2 on the first connection',
        );
        first.ws.terminate();
        await first.closed;
        await observer.waitFor(
          (m) => childOf(request)(m) && stdoutOf([m]).includes('line 12\n'),
          'line 12 (printed while the client was away) on the observer',
        );

        const second = await TestClient.connect(url(kernelId), {
          token: t.token,
          session,
          protocol,
        });
        try {
          await second.waitFor(isReplyOf(request), 'the execute_reply after the reconnect');
          await second.waitFor(isIdleOf(request), 'idle after the reconnect');
          await observer.waitFor(isIdleOf(request), 'idle on the observer');

          const got = [...first.messages, ...second.messages].filter(childOf(request));
          const ids = got.map((m) => m.header.msg_id);
          expect(new Set(ids).size, 'nothing twice').to.equal(ids.length);
          expect(stdoutOf(got), 'every line once, in order').to.equal(lines);
          expect(
            stdoutOf(second.messages.filter(childOf(request))),
            'some came from the buffer',
          ).to.not.equal('');
          const replies = got.filter((m) => m.header.msg_type === 'execute_reply');
          expect(replies).to.have.length(1);
          expect(replies[0]?.content.status).to.equal('ok');
          const results = got.filter((m) => m.header.msg_type === 'execute_result');
          expect(
            results.map((m) => (m.content.data as Record<string, string>)['text/plain']),
          ).to.deep.equal(["'finished'"]);
          // The iopub stream the client saw across both connections is the observer's, message
          // for message: same ids, same order.
          const iopub = got.filter((m) => m.channel === 'iopub').map((m) => m.header.msg_id);
          const observed = observer.messages
            .filter((m) => childOf(request)(m) && m.channel === 'iopub')
            .map((m) => m.header.msg_id);
          expect(iopub).to.deep.equal(observed);
          expect(got[0]?.content.execution_state, 'busy first').to.equal('busy');
          expect(got.filter((m) => m.channel === 'iopub').at(-1)?.content.execution_state).to.equal(
            'idle',
          );
          expect(second.messages.some(isGatewayNotice), 'nothing was dropped').to.equal(false);
        } finally {
          second.close();
        }
      });
    }

    it('a reconnect with a different session_id gets nothing of the old session', async () => {
      const oldSession = `old-${randomUUID()}`;
      const request = executeRequest(
        oldSession,
        "import time\ntime.sleep(0.5)\nfor i in range(5):\n    print(f'old {i}', flush=True)",
      );
      const first = await TestClient.connect(url(kernelId), {
        token: t.token,
        session: oldSession,
      });
      first.send(request);
      await first.waitFor(
        isTypeOf(request, 'execute_input'),
        'execute_input on the first connection',
      );
      first.ws.terminate();
      await first.closed;
      await observer.waitFor(isIdleOf(request), 'the old cell finished (observer)');

      const other = await TestClient.connect(url(kernelId), {
        token: t.token,
        session: `new-${randomUUID()}`,
        protocol: 'legacy',
      });
      try {
        // A replay is sent on attach, before anything else: once this reply is here, it would be.
        const own = await other.execute("print('new')");
        expect(stdout(own)).to.equal('new\n');
        expect(
          other.messages.filter(childOf(request)),
          'no message of the old request',
        ).to.deep.equal([]);
        expect(other.messages.some(isGatewayNotice)).to.equal(false);
      } finally {
        other.close();
      }

      // The old session's buffer was there all along: its own reconnect gets it.
      const back = await TestClient.connect(url(kernelId), { token: t.token, session: oldSession });
      try {
        const reply = await back.waitFor(isReplyOf(request), 'the old reply on the old session');
        expect(reply.content.status).to.equal('ok');
        await back.waitFor(isIdleOf(request), 'idle of the old request on the old session');
        expect(stdoutOf(back.messages.filter(childOf(request)))).to.equal(
          'old 0\nold 1\nold 2\nold 3\nold 4\n',
        );
      } finally {
        back.close();
      }
    });
  });

  describe('with replayMaxMessages 5', () => {
    let small: TestGateway;
    before(async () => {
      small = await startTestGateway({ replayMaxMessages: 5 });
    });
    after(async () => {
      await small.close();
    });

    it('a reconnect after the buffer overflowed says how many messages were dropped and gets the newest 5', async () => {
      const { id } = await small.startKernel();
      const kernelUrl = `${small.wsBase}/api/kernels/${id}/channels`;
      const observer = await TestClient.connect(kernelUrl, { token: small.token });
      const session = `overflow-${randomUUID()}`;
      const request = executeRequest(
        session,
        "import time\ntime.sleep(1)\nfor i in range(50):\n    print(f'n{i}', flush=True)",
      );
      const first = await TestClient.connect(kernelUrl, { token: small.token, session });
      try {
        first.send(request);
        await first.waitFor(isTypeOf(request, 'execute_input'), 'execute_input before the drop');
        first.ws.terminate();
        await first.closed;
        await observer.waitFor(isIdleOf(request), 'the cell finished (observer)');
        const seenFirst = first.messages.filter(childOf(request)).length;

        const second = await TestClient.connect(kernelUrl, { token: small.token, session });
        try {
          await second.waitFor(isReplyOf(request), 'the execute_reply (newest messages)');
          await second.waitFor(isIdleOf(request), 'idle (the newest message)');
          // What the session buffered while away: the request's iopub after execute_input, and
          // its reply (on the client's own shell socket).
          const observed = observer.messages.filter(
            (m) => childOf(request)(m) && m.channel === 'iopub',
          );
          const buffered = observed.length - seenFirst + 1;
          expect(buffered, '50 lines and more were buffered').to.be.at.least(52);

          const [notice, ...replayed] = second.messages;
          expect(notice && isGatewayNotice(notice), 'the notice comes first').to.equal(true);
          expect(String(notice?.content.text)).to.contain(
            `${buffered - 5} messages were dropped while this client was disconnected`,
          );
          expect(replayed.map((m) => m.header.msg_type)).to.have.length(5);
          expect(replayed.every(childOf(request))).to.equal(true);
          expect(replayed.filter((m) => m.header.msg_type === 'execute_reply')).to.have.length(1);
          // The newest ones, in order: the last iopub messages, as the observer saw them.
          const replayedIopub = replayed.filter((m) => m.channel === 'iopub');
          expect(replayedIopub.map((m) => m.header.msg_id)).to.deep.equal(
            observed.slice(-replayedIopub.length).map((m) => m.header.msg_id),
          );
          expect(stdoutOf(replayed)).to.match(/n49\n$/);
        } finally {
          second.close();
        }
      } finally {
        observer.close();
      }
    });
  });
});
