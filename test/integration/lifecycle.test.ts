/**
 * Kernel lifecycle and faults against the real gateway and fake kernels (no Docker): restarts
 * through the REST API, a kernel process killed from outside mid-execution (a real SIGKILL of a
 * child process), a kernel that exits on its own, one that keeps forging signatures until it is
 * killed for protocol abuse, and a shutdown that the kernel answers.
 */
import { expect } from 'chai';
import {
  expectFreshSandbox,
  kernelWithTwoClients,
  startFakeGateway,
  type FakeGateway,
} from '../helpers/fake-gateway.js';
import { kernelModel } from '../helpers/gateway.js';
import { isGatewayNotice, isKernelStatus } from '../helpers/ws-client.js';

interface Model {
  id: string;
  execution_state: string;
}

async function restart(t: FakeGateway, id: string): Promise<Model> {
  const res = await t.api(`/api/kernels/${id}/restart`, { method: 'POST' });
  expect(res.status).to.equal(200);
  return (await res.json()) as Model;
}

describe('kernel lifecycle and faults (integration: fake kernels)', function () {
  this.timeout(20_000);

  describe('kernels in the test process', () => {
    let t: FakeGateway;
    before(async () => {
      t = await startFakeGateway({ kernelAbuseLimit: 3 });
    });
    after(async () => {
      await t.close();
    });

    it('POST /restart: the running execution gets KernelRestarted, clients see restarting, same id on a fresh sandbox', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        await k.requester.execute('set x');
        const before = t.runtime.running(k.id);
        const run = k.requester.execute('print sleeping; sleep 30');
        await k.requester.waitFor((m) => m.content.text === 'sleeping\n', 'the cell to run');
        const model = await restart(t, k.id);
        expect(model).to.include({ id: k.id, execution_state: 'idle' });
        const r = await run;
        expect(r.reply.content.ename).to.equal('KernelRestarted');
        await k.observer.waitFor(isKernelStatus('restarting'), 'restarting on the observer');
        await expectFreshSandbox(t, k, before[0]);
        // The gateway probed the fresh kernel with kernel_info_request; none of it reaches clients.
        expect(
          t.runtime.running(k.id)[0]?.kernel?.received[0],
          'the fresh kernel was probed',
        ).to.equal('kernel_info_request');
        expect(
          k.observer.messages.some((m) => m.parent_header.msg_type === 'kernel_info_request'),
          'the probes stay between the gateway and the kernel',
        ).to.equal(false);
      } finally {
        k.close();
      }
    });

    it('a kernel that exits on its own is dead with its exit code, and refuses requests', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        const r = await k.requester.execute('exit 3');
        expect(r.reply.content.ename).to.equal('KernelDied');
        expect(String(r.reply.content.evalue)).to.match(/exited with code 3/);
        await k.observer.waitFor(isKernelStatus('dead'), 'dead on the observer');
        const m = await kernelModel(t, k.id);
        expect(m.execution_state).to.equal('dead');
        expect(m.reason).to.match(/code 3/);
        expect((await k.observer.execute('print x')).reply.content.ename).to.equal(
          'KernelUnavailable',
        );
      } finally {
        k.close();
      }
    });

    it('a kernel that keeps forging signatures is killed for protocol abuse and stays dead', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        const r = await k.requester.execute('forge a; forge b; forge c; sleep 5');
        expect(r.reply.content.ename).to.equal('KernelDied');
        await k.observer.waitFor(isKernelStatus('dead'), 'dead on the observer');
        const m = await kernelModel(t, k.id);
        expect(m.reason).to.match(/protocol abuse/);
        expect(t.runtime.running(k.id), 'not restarted').to.deep.equal([]);
        expect(k.observer.messages.some((m) => /^[abc]\n$/.test(String(m.content.text)))).to.equal(
          false,
        );
      } finally {
        k.close();
      }
    });

    it('DELETE shuts the kernel down through shutdown_request, removes its sandbox and closes its clients', async () => {
      const k = await kernelWithTwoClients(t);
      const [sandbox] = t.runtime.running(k.id);
      const res = await t.api(`/api/kernels/${k.id}`, { method: 'DELETE' });
      expect(res.status).to.equal(204);
      expect(sandbox?.kernel?.received.at(-1)).to.equal('shutdown_request');
      expect(sandbox?.running, 'the sandbox is gone').to.equal(false);
      expect((await k.observer.closed).code).to.equal(1001);
      expect((await t.api(`/api/kernels/${k.id}`)).status).to.equal(404);
    });
  });

  describe('kernels as child processes', () => {
    let t: FakeGateway;
    before(async () => {
      t = await startFakeGateway({}, { processes: true });
    });
    after(async () => {
      await t.close();
    });

    it('a kernel process killed mid-execution: KernelDied to the requester, dead and the reason to everyone; restart brings it back', async () => {
      const k = await kernelWithTwoClients(t);
      try {
        await k.requester.execute('set x');
        const [before] = t.runtime.running(k.id);
        const run = k.requester.execute('print sleeping; sleep 30');
        await k.requester.waitFor((m) => m.content.text === 'sleeping\n', 'the cell to run');
        // From outside, as an OOM killer or an operator would.
        process.kill(before?.pid as number, 'SIGKILL');

        const r = await run;
        expect(r.reply.content.ename).to.equal('KernelDied');
        expect(String(r.reply.content.evalue)).to.match(/exit.*\b137\b/);
        expect(r.iopub.find((m) => m.header.msg_type === 'error')?.content.ename).to.equal(
          'KernelDied',
        );
        for (const c of [k.requester, k.observer]) {
          await c.waitFor(isKernelStatus('dead'), 'status dead');
          const notice = await c.waitFor(isGatewayNotice, 'a gateway notice');
          expect(String(notice.content.text)).to.match(/Kernel died: .*\b137\b/);
        }
        expect(k.observer.messages.some((m) => m.header.msg_type === 'execute_reply')).to.equal(
          false,
        );
        const dead = await kernelModel(t, k.id);
        expect(dead.execution_state).to.equal('dead');
        expect(dead.reason).to.match(/\b137\b/);
        expect(t.runtime.running(k.id)).to.deep.equal([]);
        expect((await k.observer.execute('print x')).reply.content.ename).to.equal(
          'KernelUnavailable',
        );

        expect(await restart(t, k.id)).to.include({ id: k.id, execution_state: 'idle' });
        expect(t.runtime.running(k.id)[0]?.pid, 'a new process')
          .to.be.a('number')
          .and.not.equal(before?.pid);
        await expectFreshSandbox(t, k, before);
      } finally {
        k.close();
      }
    });
  });
});
