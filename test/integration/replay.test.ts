/**
 * Replay against the real gateway and fake kernels (no Docker): a client dropped mid-execution
 * gets, on reconnect with the same session_id, everything it missed once and in order; another
 * session_id gets nothing of it; an overflowed buffer says how much it dropped and keeps the newest.
 */
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { executeRequest, type JupyterMessage } from '../../protocol/index.js';
import { startFakeGateway, type FakeGateway } from '../helpers/fake-gateway.js';
import { isGatewayNotice, parentId, stdout, TestClient } from '../helpers/ws-client.js';

const childOf =
  (request: JupyterMessage) =>
  (m: JupyterMessage): boolean =>
    parentId(m) === request.header.msg_id;
const isIdleOf =
  (request: JupyterMessage) =>
  (m: JupyterMessage): boolean =>
    childOf(request)(m) && m.channel === 'iopub' && m.content.execution_state === 'idle';
const isReplyOf =
  (request: JupyterMessage) =>
  (m: JupyterMessage): boolean =>
    childOf(request)(m) && m.header.msg_type === 'execute_reply';

function stdoutOf(messages: readonly JupyterMessage[]): string {
  return messages
    .filter((m) => m.header.msg_type === 'stream' && m.content.name === 'stdout')
    .map((m) => String(m.content.text))
    .join('');
}

/** Code that prints `line 0` … `line n-1`, one every `gapS` seconds, then a result. */
function slowLines(n: number, gapS: number): string {
  return (
    Array.from({ length: n }, (_, i) => `print line ${i}\nsleep ${gapS}`).join('\n') +
    '\nresult finished'
  );
}

describe('replay on reconnect (integration: fake kernels)', function () {
  this.timeout(15_000);
  let t: FakeGateway;
  let kernelId: string;
  let observer: TestClient;

  before(async () => {
    t = await startFakeGateway();
    kernelId = (await t.startKernel()).id;
    observer = await TestClient.connect(t.url(kernelId), { token: t.token });
  });
  after(async () => {
    observer.close();
    await t.close();
  });

  for (const protocol of ['v1', 'legacy'] as const) {
    it(`${protocol}: a reconnect with the same session_id gets every output and the reply, in order, once`, async () => {
      const session = `drop-${randomUUID()}`;
      const request = executeRequest(session, slowLines(8, 0.1));
      const first = await TestClient.connect(t.url(kernelId), {
        token: t.token,
        session,
        protocol,
      });
      first.send(request);
      await first.waitFor(
        (m) => childOf(request)(m) && stdoutOf([m]) === 'line 2\n',
        'line 2 on the first connection',
      );
      first.ws.terminate();
      await first.closed;
      // Dropped right after a line arrived: the next comes 100 ms later, into the buffer. The
      // cell runs on while the client is away.
      await observer.waitFor(isIdleOf(request), 'the cell finished (observer)');

      const second = await TestClient.connect(t.url(kernelId), {
        token: t.token,
        session,
        protocol,
      });
      try {
        await second.waitFor(isReplyOf(request), 'the execute_reply after the reconnect');
        await second.waitFor(isIdleOf(request), 'idle after the reconnect');
        const got = [...first.messages, ...second.messages].filter(childOf(request));
        const ids = got.map((m) => m.header.msg_id);
        expect(new Set(ids).size, 'nothing twice').to.equal(ids.length);
        expect(stdoutOf(got), 'every line once, in order').to.equal(
          Array.from({ length: 8 }, (_, i) => `line ${i}\n`).join(''),
        );
        expect(
          stdoutOf(second.messages.filter(childOf(request))),
          'some from the buffer',
        ).to.not.equal('');
        expect(got.filter((m) => m.header.msg_type === 'execute_reply')).to.have.length(1);
        const iopub = got.filter((m) => m.channel === 'iopub').map((m) => m.header.msg_id);
        const observed = observer.messages
          .filter((m) => childOf(request)(m) && m.channel === 'iopub')
          .map((m) => m.header.msg_id);
        expect(iopub, 'the observer’s iopub, message for message').to.deep.equal(observed);
        expect(second.messages.some(isGatewayNotice), 'nothing was dropped').to.equal(false);
      } finally {
        second.close();
      }
    });
  }

  it('a reconnect with a different session_id gets nothing of the old session; the old one gets it all', async () => {
    const oldSession = `old-${randomUUID()}`;
    const request = executeRequest(oldSession, 'sleep 0.1; print old 0; print old 1');
    const first = await TestClient.connect(t.url(kernelId), {
      token: t.token,
      session: oldSession,
    });
    first.send(request);
    await first.waitFor(
      (m) => childOf(request)(m) && m.header.msg_type === 'execute_input',
      'execute_input on the first connection',
    );
    first.ws.terminate();
    await first.closed;
    await observer.waitFor(isIdleOf(request), 'the old cell finished (observer)');

    const other = await TestClient.connect(t.url(kernelId), {
      token: t.token,
      session: `new-${randomUUID()}`,
      protocol: 'legacy',
    });
    try {
      // A replay is sent on attach, before anything else: once this reply is here, it would be.
      expect(stdout(await other.execute('print new'))).to.equal('new\n');
      expect(other.messages.filter(childOf(request))).to.deep.equal([]);
    } finally {
      other.close();
    }
    const back = await TestClient.connect(t.url(kernelId), { token: t.token, session: oldSession });
    try {
      expect((await back.waitFor(isReplyOf(request), 'the old reply')).content.status).to.equal(
        'ok',
      );
      await back.waitFor(isIdleOf(request), 'the old idle');
      expect(stdoutOf(back.messages.filter(childOf(request)))).to.equal('old 0\nold 1\n');
    } finally {
      back.close();
    }
  });

  describe('with replayMaxMessages 5', () => {
    let small: FakeGateway;
    before(async () => {
      small = await startFakeGateway({ replayMaxMessages: 5 });
    });
    after(async () => {
      await small.close();
    });

    it('a reconnect after the buffer overflowed says how many were dropped and gets the newest 5', async () => {
      const { id } = await small.startKernel();
      const obs = await TestClient.connect(small.url(id), { token: small.token });
      const session = `overflow-${randomUUID()}`;
      const code = ['sleep 0.1', ...Array.from({ length: 30 }, (_, i) => `print n${i}`)].join('\n');
      const request = executeRequest(session, code);
      const first = await TestClient.connect(small.url(id), { token: small.token, session });
      try {
        first.send(request);
        await first.waitFor(
          (m) => childOf(request)(m) && m.header.msg_type === 'execute_input',
          'execute_input before the drop',
        );
        first.ws.terminate();
        await first.closed;
        await obs.waitFor(isIdleOf(request), 'the cell finished (observer)');
        const seenFirst = first.messages.filter(childOf(request)).length;
        const second = await TestClient.connect(small.url(id), { token: small.token, session });
        try {
          await second.waitFor(isIdleOf(request), 'idle (the newest message)');
          const observed = obs.messages.filter((m) => childOf(request)(m) && m.channel === 'iopub');
          // Buffered while away: the iopub after what the first connection saw, and the reply.
          const buffered = observed.length - seenFirst + 1;
          expect(buffered).to.be.at.least(32);
          const [notice, ...replayed] = second.messages;
          expect(notice && isGatewayNotice(notice), 'the notice comes first').to.equal(true);
          expect(String(notice?.content.text)).to.contain(
            `${buffered - 5} messages were dropped while this client was disconnected`,
          );
          expect(replayed).to.have.length(5);
          expect(replayed.filter((m) => m.header.msg_type === 'execute_reply')).to.have.length(1);
          const replayedIopub = replayed.filter((m) => m.channel === 'iopub');
          expect(replayedIopub.map((m) => m.header.msg_id)).to.deep.equal(
            observed.slice(-replayedIopub.length).map((m) => m.header.msg_id),
          );
          expect(stdoutOf(replayed)).to.match(/n29\n$/);
        } finally {
          second.close();
        }
      } finally {
        obs.close();
      }
    });
  });
});
