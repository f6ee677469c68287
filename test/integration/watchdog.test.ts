/**
 * The execution watchdog against the real gateway and fake kernels (no Docker), at sub-second
 * limits: the deadline's interrupt (ExecutionTimeout, same sandbox), the ladder's kill when the
 * code ignores the interrupt (ExecutionKilled, restart on a fresh sandbox with the same id, or
 * dead), POST /interrupt escalating the same way, and a queue that is not charged for its wait.
 */
import { performance } from 'node:perf_hooks';
import { expect } from 'chai';
import type { JupyterMessage } from '../../protocol/index.js';
import {
  expectFreshSandbox,
  kernelWithTwoClients,
  restarted,
  startFakeGateway,
  type FakeGateway,
} from '../helpers/fake-gateway.js';
import { kernelModel } from '../helpers/gateway.js';
import {
  isGatewayNotice,
  isKernelStatus,
  parentId,
  stdout,
  type Collected,
} from '../helpers/ws-client.js';

/** Prints a marker, then ignores interrupts until killed (a loop with SIGINT ignored). */
const IGNORING = 'print ignoring; hang';

function iopubError(r: Collected): JupyterMessage | undefined {
  return r.iopub.find((m) => m.header.msg_type === 'error');
}

/** The ids of the sandboxes whose kernel runs for `id`. */
function sandboxesOf(t: FakeGateway, id: string): string[] {
  return t.runtime.running(id).map((s) => s.id);
}

describe('execution watchdog (integration: fake kernels)', function () {
  this.timeout(15_000);

  describe('with execTimeoutS 0.8, killGraceS 0.3', () => {
    let t: FakeGateway;
    before(async () => {
      t = await startFakeGateway({ execTimeoutS: 0.8, killGraceS: 0.3, restartAfterKill: true });
    });
    after(async () => {
      await t.close();
    });

    it('interrupts a long execution at the deadline: ExecutionTimeout, same sandbox, state kept', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        const before = sandboxesOf(t, k.id);
        expect(before).to.have.length(1);
        await k.requester.execute('set x');
        const started = performance.now();
        const r = await k.requester.execute('sleep 30');
        const elapsedS = (performance.now() - started) / 1000;
        expect(r.reply.content.status).to.equal('error');
        expect(r.reply.content.ename).to.equal('ExecutionTimeout');
        expect(String(r.reply.content.evalue)).to.match(/0\.8 s limit/);
        expect(iopubError(r)?.content.ename, 'not KeyboardInterrupt').to.equal('ExecutionTimeout');
        expect(elapsedS).to.be.within(0.75, 5);

        const m = await kernelModel(t, k.id);
        expect(m.execution_state).to.equal('idle');
        expect(m).to.not.have.property('reason');
        expect(sandboxesOf(t, k.id), 'no kill: same sandbox').to.deep.equal(before);
        expect(stdout(await k.requester.execute('has x'))).to.equal('True\n');
        expect(k.observer.messages.some(isKernelStatus('restarting'))).to.equal(false);
      } finally {
        k.close();
      }
    });

    it('kills code that ignores the interrupt: ExecutionKilled to the requester, restarting to others, fresh sandbox with the same id', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        const [before] = t.runtime.running(k.id);
        await k.requester.execute('set x');
        const started = performance.now();
        const r = await k.requester.execute(IGNORING);
        const elapsedS = (performance.now() - started) / 1000;
        expect(r.reply.content.status).to.equal('error');
        expect(r.reply.content.ename).to.equal('ExecutionKilled');
        expect(String(r.reply.content.evalue)).to.match(/0\.8 s limit.*killed/);
        const err = iopubError(r);
        expect(err?.content.ename).to.equal('ExecutionKilled');
        expect(parentId(err as JupyterMessage)).to.equal(parentId(r.reply));
        // Deadline (0.8 s) + grace (0.3 s).
        expect(elapsedS).to.be.within(1.05, 6);
        expect(k.requester.messages.some(isGatewayNotice), 'a gateway notice why').to.equal(true);
        expect(
          k.observer.messages.some((m) => m.header.msg_type === 'execute_reply'),
          'the reply went to the requester only',
        ).to.equal(false);

        await restarted(k.observer);
        const after = await kernelModel(t, k.id);
        expect(after.execution_state).to.equal('idle');
        expect(after.reason, 'the model keeps why it restarted').to.match(
          /killed by the watchdog/i,
        );
        await expectFreshSandbox(t, k, before);
      } finally {
        k.close();
      }
    });

    it('does not charge queued executions for their wait (0.5 s + 0.5 s under a 0.8 s limit)', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        const [a, b] = await Promise.all([
          k.requester.execute('sleep 0.5; print a'),
          k.observer.execute('sleep 0.5; print b'),
        ]);
        expect([a.reply.content.status, b.reply.content.status]).to.deep.equal(['ok', 'ok']);
        expect(stdout(a) + stdout(b)).to.equal('a\nb\n');
      } finally {
        k.close();
      }
    });
  });

  describe('with restartAfterKill false', () => {
    let t: FakeGateway;
    before(async () => {
      t = await startFakeGateway({ execTimeoutS: 0.5, killGraceS: 0.2, restartAfterKill: false });
    });
    after(async () => {
      await t.close();
    });

    it('leaves a killed kernel dead: ExecutionKilled to the requester, dead to everyone, reason says killed', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        const r = await k.requester.execute(IGNORING);
        expect(r.reply.content.ename).to.equal('ExecutionKilled');
        expect(iopubError(r)?.content.ename).to.equal('ExecutionKilled');
        await k.observer.waitFor(isKernelStatus('dead'), 'dead on the observer');
        await k.requester.waitFor(isKernelStatus('dead'), 'dead on the requester');
        expect(k.observer.messages.some(isKernelStatus('restarting'))).to.equal(false);
        const m = await kernelModel(t, k.id);
        expect(m.execution_state).to.equal('dead');
        expect(m.reason).to.match(/kill/i);
        expect(sandboxesOf(t, k.id), 'no sandbox runs for it').to.deep.equal([]);
        const refused = await k.observer.execute('print x');
        expect(refused.reply.content.ename).to.equal('KernelUnavailable');
      } finally {
        k.close();
      }
    });
  });

  describe('with killGraceS 0.3 and a long limit', () => {
    let t: FakeGateway;
    before(async () => {
      t = await startFakeGateway({ execTimeoutS: 60, killGraceS: 0.3 });
    });
    after(async () => {
      await t.close();
    });

    it('escalates POST /interrupt to a kill when the interrupt is ignored, then restarts on a fresh sandbox', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        await k.requester.execute('set x');
        const [before] = t.runtime.running(k.id);
        const run = k.requester.execute(IGNORING);
        await k.requester.waitFor((m) => m.content.text === 'ignoring\n', 'the code to run');
        const res = await t.api(`/api/kernels/${k.id}/interrupt`, { method: 'POST' });
        expect(res.status).to.equal(204);
        const r = await run;
        expect(r.reply.content.ename).to.equal('ExecutionKilled');
        expect(String(r.reply.content.evalue)).to.match(/did not stop after an interrupt request/);
        await restarted(k.observer);
        await expectFreshSandbox(t, k, before);
      } finally {
        k.close();
      }
    });
  });
});
