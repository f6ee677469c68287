/**
 * The execution watchdog against real kernels: the deadline starts when the kernel starts executing,
 * the interrupt → kill ladder (shared with the interrupt endpoint), restart on a fresh sandbox with
 * the same id (or dead), and the death reasons clients and the REST model see.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { expect } from 'chai';
import { createMessage, type JupyterMessage } from '../../protocol/index.js';
import {
  startTestGateway,
  type TestGateway,
  kernelModel,
  runningContainers,
} from '../helpers/gateway.js';
import {
  stdout,
  TestClient,
  type Collected,
  isKernelStatus,
  parentId,
  isGatewayNotice,
} from '../helpers/ws-client.js';

const BUSY_LOOP = 'while True: pass';
const IGNORING_SIGINT = 'ignoring SIGINT';
/** Prints a marker once SIGINT is ignored: an interrupt sent before it would still work. */
const SIGINT_IGNORING_LOOP = `import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); print('${IGNORING_SIGINT}', flush=True)\nwhile True: pass`;
/** A comm target whose message handler runs for 30 s (as a slow widget callback would). */
const SLOW_COMM = `
import time
def _target(comm, open_msg):
    @comm.on_msg
    def _slow(msg):
        time.sleep(30)
get_ipython().kernel.comm_manager.register_target('slow', _target)
`;

function isIgnoringSigint(m: JupyterMessage): boolean {
  return m.header.msg_type === 'stream' && m.content.text === `${IGNORING_SIGINT}\n`;
}

function iopubError(r: Collected): JupyterMessage | undefined {
  return r.iopub.find((m) => m.header.msg_type === 'error');
}

/** Connects a requester and an observer to a fresh kernel. */
async function kernelWithTwoClients(
  t: TestGateway,
): Promise<{ id: string; requester: TestClient; observer: TestClient; close(): void }> {
  const { id } = await t.startKernel();
  const url = `${t.wsBase}/api/kernels/${id}/channels`;
  const requester = await TestClient.connect(url, { token: t.token });
  const observer = await TestClient.connect(url, { token: t.token });
  return {
    id,
    requester,
    observer,
    close() {
      requester.close();
      observer.close();
    },
  };
}

describe('execution watchdog (real kernels)', function () {
  this.timeout(60_000);

  describe('with execTimeoutS 2, killGraceS 2', () => {
    let t: TestGateway;
    before(async () => {
      t = await startTestGateway({ execTimeoutS: 2, killGraceS: 2, restartAfterKill: true });
    });
    after(async () => {
      await t.close();
    });

    it('interrupts a busy loop at the deadline: ExecutionTimeout, same sandbox, state kept', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        const before = t.gw.kernels.get(k.id).sandboxId;
        expect(await runningContainers(t, k.id)).to.deep.equal([before]);
        await k.requester.execute('x = 41');

        const started = performance.now();
        const r = await k.requester.execute(BUSY_LOOP, 15_000);
        const elapsedS = (performance.now() - started) / 1000;

        expect(r.reply.content.status).to.equal('error');
        expect(r.reply.content.ename).to.equal('ExecutionTimeout');
        expect(String(r.reply.content.evalue)).to.match(/2 s limit/);
        expect(
          iopubError(r)?.content.ename,
          'the iopub error says timeout, not KeyboardInterrupt',
        ).to.equal('ExecutionTimeout');
        expect(elapsedS).to.be.within(1.9, 6);

        const m = await kernelModel(t, k.id);
        expect(m.execution_state).to.equal('idle');
        expect(m).to.not.have.property('reason');
        expect(t.gw.kernels.get(k.id).sandboxId, 'no kill: same sandbox').to.equal(before);
        expect(await runningContainers(t, k.id)).to.deep.equal([before]);
        expect(stdout(await k.requester.execute('print(x + 1)'))).to.equal('42\n');
        expect(
          k.observer.messages.some(isKernelStatus('restarting')),
          'nobody was told the kernel restarts',
        ).to.equal(false);
      } finally {
        k.close();
      }
    });

    it('kills a loop that ignores SIGINT: ExecutionKilled to the requester, restarting to others, fresh sandbox with the same id', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        const before = t.gw.kernels.get(k.id).sandboxId;
        await k.requester.execute('x = 41');

        const started = performance.now();
        const run = k.requester.execute(SIGINT_IGNORING_LOOP, 20_000);
        await k.observer.waitFor(isKernelStatus('restarting'), 'status restarting on the observer');
        // The kernel needs well over a second to boot, so the restart is still under way here.
        const during = await kernelModel(t, k.id);
        expect(during.execution_state).to.equal('restarting');
        expect(during.reason).to.match(/killed by the watchdog/i);

        const r = await run;
        const elapsedS = (performance.now() - started) / 1000;
        expect(r.reply.content.status).to.equal('error');
        expect(r.reply.content.ename).to.equal('ExecutionKilled');
        expect(String(r.reply.content.evalue)).to.match(/killed/);
        const err = iopubError(r);
        expect(err?.content.ename).to.equal('ExecutionKilled');
        expect(parentId(err as JupyterMessage)).to.equal(parentId(r.reply));
        // Deadline (2 s) + grace (2 s), plus the time Docker takes to report the kill.
        expect(elapsedS).to.be.within(3.9, 10);
        expect(k.requester.messages.some(isGatewayNotice), 'a gateway notice why').to.equal(true);

        await k.observer.waitFor(
          (m) =>
            isKernelStatus('idle')(m) &&
            k.observer.messages.indexOf(m) >
              k.observer.messages.findIndex(isKernelStatus('restarting')),
          'status idle after the restart',
        );
        const after = await kernelModel(t, k.id);
        expect(after.execution_state).to.equal('idle');
        expect(after.reason, 'the model keeps why the kernel restarted').to.match(/kill/i);
        const now = t.gw.kernels.get(k.id).sandboxId;
        expect(now).to.be.a('string').and.not.equal(before);
        expect(await runningContainers(t, k.id), 'only the fresh sandbox runs').to.deep.equal([
          now,
        ]);

        expect(stdout(await k.requester.execute("print('x' in globals())"))).to.equal('False\n');
        expect(stdout(await k.observer.execute('print(6 * 7)'))).to.equal('42\n');
      } finally {
        k.close();
      }
    });
  });

  describe('with restartAfterKill false', () => {
    let t: TestGateway;
    before(async () => {
      t = await startTestGateway({ execTimeoutS: 2, killGraceS: 1, restartAfterKill: false });
    });
    after(async () => {
      await t.close();
    });

    it('leaves a killed kernel dead: ExecutionKilled to the requester, dead to everyone, reason says killed', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        const r = await k.requester.execute(SIGINT_IGNORING_LOOP, 20_000);
        expect(r.reply.content.status).to.equal('error');
        expect(r.reply.content.ename).to.equal('ExecutionKilled');
        expect(iopubError(r)?.content.ename).to.equal('ExecutionKilled');

        await k.observer.waitFor(isKernelStatus('dead'), 'status dead on the observer');
        await k.requester.waitFor(isKernelStatus('dead'), 'status dead on the requester');
        expect(k.observer.messages.some(isKernelStatus('restarting'))).to.equal(false);
        const m = await kernelModel(t, k.id);
        expect(m.execution_state).to.equal('dead');
        expect(m.reason).to.match(/kill/i);
        expect(await runningContainers(t, k.id), 'no sandbox runs for it').to.deep.equal([]);

        const refused = await k.observer.execute('1 + 1');
        expect(refused.reply.content.status).to.equal('error');
        expect(refused.reply.content.ename).to.equal('KernelUnavailable');
      } finally {
        k.close();
      }
    });
  });

  describe('with execTimeoutS 3', () => {
    let t: TestGateway;
    before(async () => {
      t = await startTestGateway({ execTimeoutS: 3, killGraceS: 1 });
    });
    after(async () => {
      await t.close();
    });

    it('does not charge queued executions for their wait (2 s + 2 s back to back under a 3 s limit)', async () => {
      const { id } = await t.startKernel();
      const c = await TestClient.connect(`${t.wsBase}/api/kernels/${id}/channels`, {
        token: t.token,
      });
      try {
        const started = performance.now();
        const [a, b] = await Promise.all([
          c.execute("import time; time.sleep(2); print('a')", 15_000),
          c.execute("import time; time.sleep(2); print('b')", 15_000),
        ]);
        const elapsedS = (performance.now() - started) / 1000;
        expect(a.reply.content.status).to.equal('ok');
        expect(b.reply.content.status).to.equal('ok');
        expect(stdout(a) + stdout(b)).to.equal('a\nb\n');
        expect(elapsedS, 'the second waited behind the first').to.be.at.least(3.9);
      } finally {
        c.close();
      }
    });
  });

  describe('with the default limit', () => {
    let t: TestGateway;
    before(async () => {
      t = await startTestGateway();
    });
    after(async () => {
      await t.close();
    });

    it('interrupts a busy loop after the default 30 s', async function () {
      this.timeout(60_000);
      expect(t.gw.config.execTimeoutS).to.equal(30);
      const { id } = await t.startKernel();
      const c = await TestClient.connect(`${t.wsBase}/api/kernels/${id}/channels`, {
        token: t.token,
      });
      try {
        const started = performance.now();
        const r = await c.execute(BUSY_LOOP, 45_000);
        const elapsedS = (performance.now() - started) / 1000;
        console.log(`      default deadline: execute_reply after ${elapsedS.toFixed(2)} s`);
        expect(r.reply.content.ename).to.equal('ExecutionTimeout');
        expect(elapsedS).to.be.at.least(29).and.below(40);
        expect((await kernelModel(t, id)).execution_state).to.equal('idle');
      } finally {
        c.close();
      }
    });
  });

  describe('with killGraceS 1 and a long limit', () => {
    let t: TestGateway;
    before(async () => {
      t = await startTestGateway({ execTimeoutS: 120, killGraceS: 1, restartAfterKill: true });
    });
    after(async () => {
      await t.close();
    });

    it('escalates POST /interrupt to a kill when SIGINT is ignored, then restarts on a fresh sandbox', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        const before = t.gw.kernels.get(k.id).sandboxId;
        const run = k.requester.execute(SIGINT_IGNORING_LOOP, 20_000);
        await k.requester.waitFor(isIgnoringSigint, 'the loop ignoring SIGINT');
        const started = performance.now();
        const res = await t.api(`/api/kernels/${k.id}/interrupt`, { method: 'POST' });
        expect(res.status).to.equal(204);

        const r = await run;
        const elapsedS = (performance.now() - started) / 1000;
        expect(r.reply.content.status).to.equal('error');
        expect(String(r.reply.content.evalue)).to.match(/kill/i);
        expect(r.reply.content.ename).to.equal('ExecutionKilled');
        expect(iopubError(r), 'an iopub error for the killed execution').to.not.equal(undefined);
        expect(elapsedS, 'killed after the 1 s grace, not at the 120 s deadline').to.be.within(
          0.9,
          8,
        );

        await k.observer.waitFor(isKernelStatus('restarting'), 'status restarting');
        await k.observer.waitFor(
          (m) =>
            isKernelStatus('idle')(m) &&
            k.observer.messages.indexOf(m) >
              k.observer.messages.findIndex(isKernelStatus('restarting')),
          'status idle after the restart',
        );
        const m = await kernelModel(t, k.id);
        expect(m.execution_state).to.equal('idle');
        expect(m.reason).to.match(/kill/i);
        const now = t.gw.kernels.get(k.id).sandboxId;
        expect(now).to.be.a('string').and.not.equal(before);
        expect(await runningContainers(t, k.id)).to.deep.equal([now]);
        expect(stdout(await k.requester.execute("print('back')"))).to.equal('back\n');
      } finally {
        k.close();
      }
    });

    it('regression: the status messages of an interrupt_request do not flip a running kernel to idle', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        k.requester.send(
          createMessage({
            msgType: 'execute_request',
            channel: 'shell',
            session: k.requester.session,
            content: { code: SIGINT_IGNORING_LOOP, silent: false, store_history: false },
          }),
        );
        await k.requester.waitFor(isIgnoringSigint, 'the loop ignoring SIGINT');
        expect((await kernelModel(t, k.id)).execution_state).to.equal('busy');
        // The kernel answers on its control thread, with busy/idle parented to the interrupt, while
        // the loop goes on.
        const interrupt = await k.observer.request('control', 'interrupt_request', {});
        expect(interrupt.reply.header.msg_type).to.equal('interrupt_reply');
        expect((await kernelModel(t, k.id)).execution_state, 'the loop still runs').to.equal(
          'busy',
        );
        expect((await t.api(`/api/kernels/${k.id}`, { method: 'DELETE' })).status).to.equal(204);
      } finally {
        k.close();
      }
    });

    it('regression: POST /interrupt does not kill a kernel whose comm handler stopped on the interrupt', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        await k.requester.execute(SLOW_COMM);
        const before = t.gw.kernels.get(k.id).sandboxId;
        const commId = randomUUID();
        k.requester.send(
          createMessage({
            msgType: 'comm_open',
            channel: 'shell',
            session: k.requester.session,
            content: { comm_id: commId, target_name: 'slow', data: {} },
          }),
        );
        const msg = createMessage({
          msgType: 'comm_msg',
          channel: 'shell',
          session: k.requester.session,
          content: { comm_id: commId, data: {} },
        });
        const isStatusOf =
          (state: string) =>
          (m: JupyterMessage): boolean =>
            m.header.msg_type === 'status' &&
            m.content.execution_state === state &&
            parentId(m) === msg.header.msg_id;
        k.requester.send(msg);
        await k.requester.waitFor(isStatusOf('busy'), 'busy with the comm message');
        expect((await kernelModel(t, k.id)).execution_state).to.equal('busy');
        const res = await t.api(`/api/kernels/${k.id}/interrupt`, { method: 'POST' });
        expect(res.status).to.equal(204);
        await k.requester.waitFor(isStatusOf('idle'), 'idle after the interrupted comm message');

        // An execution that spans the 1 s grace completes: the ladder stopped at the interrupt.
        const r = await k.requester.execute("import time; time.sleep(2); print('survived')");
        expect(r.reply.content.status, String(r.reply.content.evalue)).to.equal('ok');
        expect(stdout(r)).to.equal('survived\n');
        expect(t.gw.kernels.get(k.id).sandboxId, 'same sandbox').to.equal(before);
        expect(k.observer.messages.some(isKernelStatus('restarting'))).to.equal(false);
      } finally {
        k.close();
      }
    });

    it('reports a kernel that exits on its own as dead with its exit code', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        const r = await k.requester.execute('import os; os._exit(3)');
        expect(r.reply.content.status, 'the requester is not left waiting').to.equal('error');
        expect(r.reply.content.ename).to.equal('KernelDied');

        for (const c of [k.requester, k.observer]) {
          await c.waitFor(isKernelStatus('dead'), 'status dead');
          const notice = await c.waitFor(isGatewayNotice, 'gateway stderr notice');
          expect(String(notice.content.text)).to.match(/exit.*\b3\b/);
        }
        expect(k.observer.messages.some(isKernelStatus('restarting'))).to.equal(false);
        const m = await kernelModel(t, k.id);
        expect(m.execution_state).to.equal('dead');
        expect(m.reason).to.match(/exit/).and.match(/\b3\b/);
        expect(m.reason).to.not.match(/kill/i);
      } finally {
        k.close();
      }
    });
  });
});
