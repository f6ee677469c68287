/**
 * Idle culling against real kernels (timeout 2 s, checks every 0.5 s): a culled kernel's clients
 * are told (notice, status dead) before their socket closes, then it is gone (404, and from
 * /api/sessions). Busy time does not count as idle; connected kernels are spared by default; dead
 * ones are culled once dead for the timeout.
 */
import { performance } from 'node:perf_hooks';
import { expect } from 'chai';
import type { JupyterMessage } from '../../protocol/index.js';
import type { KernelModel } from '../../gateway/kernel/kernel.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { TestClient } from '../helpers/ws-client.js';

const CULL = { cullIdleTimeoutS: 2, cullIntervalS: 0.5 };

function isCullNotice(m: JupyterMessage): boolean {
  return (
    m.channel === 'iopub' &&
    m.header.msg_type === 'stream' &&
    m.content.name === 'stderr' &&
    /^\[gateway\] Kernel culled after \d+ s idle\n$/.test(String(m.content.text))
  );
}

function isDeadStatus(m: JupyterMessage): boolean {
  return (
    m.channel === 'iopub' &&
    m.header.msg_type === 'status' &&
    m.content.execution_state === 'dead' &&
    (m.parent_header as { msg_id?: string }).msg_id === undefined
  );
}

/** Waits until GET /api/kernels/{id} answers 404. */
async function culled(t: TestGateway, id: string, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const res = await t.api(`/api/kernels/${id}`);
    await res.body?.cancel();
    if (res.status === 404) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} to be culled (404)`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function model(t: TestGateway, id: string): Promise<KernelModel> {
  const res = await t.api(`/api/kernels/${id}`);
  expect(res.status, `GET /api/kernels/${id}`).to.equal(200);
  return (await res.json()) as KernelModel;
}

async function culledTotal(t: TestGateway): Promise<number> {
  const text = await (await t.api('/metrics')).text();
  const m = /^aido_kernels_culled_total (\S+)$/m.exec(text);
  if (!m?.[1]) throw new Error('no aido_kernels_culled_total in /metrics');
  return Number(m[1]);
}

describe('idle culling (real kernels)', function () {
  this.timeout(60_000);

  describe('with cull_connected', () => {
    let t: TestGateway;
    before(async () => {
      t = await startTestGateway({ ...CULL, cullConnected: true });
    });
    after(async () => {
      await t.close();
    });

    it('spares the kernel while it is busy, then culls it 2 s after the execution ended: notice and dead before the socket closes, then 404 and no session', async () => {
      const res = await t.api('/api/sessions', {
        method: 'POST',
        body: JSON.stringify({ path: 'cull.ipynb', type: 'notebook', kernel: { name: 'python3' } }),
      });
      expect(res.status).to.equal(201);
      const session = (await res.json()) as { id: string; kernel: { id: string } };
      const id = session.kernel.id;
      const client = await TestClient.connect(`${t.wsBase}/api/kernels/${id}/channels`, {
        token: t.token,
      });
      let atClose: JupyterMessage[] = [];
      const closed = client.closed.then((c) => {
        atClose = [...client.messages];
        return c;
      });

      // Silent for 4 s, twice the timeout: busy time is not idle time.
      const r = await client.execute('import time; time.sleep(4)', 20_000);
      expect(r.reply.content.status).to.equal('ok');
      const ended = performance.now();
      expect((await model(t, id)).execution_state, 'not culled while busy').to.equal('idle');

      const { code } = await closed;
      const idleS = (performance.now() - ended) / 1000;
      expect(code, 'close code').to.equal(1001);
      // Counted from the end of the execution (its idle status), not from its request.
      expect(idleS).to.be.within(1.8, 5);

      const notice = atClose.findIndex(isCullNotice);
      const dead = atClose.findIndex(isDeadStatus);
      expect(notice, 'the cull notice arrived before the close').to.be.at.least(0);
      expect(dead, 'status dead arrived before the close').to.be.above(notice);
      expect(String(atClose[notice]?.content.text)).to.match(/after [23] s idle/);

      expect((await t.api(`/api/kernels/${id}`)).status).to.equal(404);
      const sessions = (await (await t.api('/api/sessions')).json()) as { id: string }[];
      expect(sessions.map((s) => s.id)).to.not.include(session.id);
      expect((await t.api(`/api/sessions/${session.id}`)).status).to.equal(404);
      expect(await culledTotal(t)).to.equal(1);
      // The sockets close first; the sandbox is removed right after.
      const deadline = Date.now() + 20_000;
      while ((await t.gw.runtime.list()).some((c) => c.kernelId === id)) {
        if (Date.now() > deadline) throw new Error('timed out waiting for the sandbox removal');
        await new Promise((r) => setTimeout(r, 100));
      }
    });
  });

  describe('by default (connected kernels spared)', () => {
    let t: TestGateway;
    before(async () => {
      t = await startTestGateway(CULL);
    });
    after(async () => {
      await t.close();
    });

    it('culls an unconnected kernel and not an older one with a client attached', async () => {
      const kept = await t.startKernel();
      const client = await TestClient.connect(`${t.wsBase}/api/kernels/${kept.id}/channels`, {
        token: t.token,
      });
      try {
        const gone = await t.startKernel();
        const [a, b] = [await model(t, kept.id), await model(t, gone.id)];
        expect(Date.parse(a.last_activity)).to.be.at.most(Date.parse(b.last_activity));

        await culled(t, gone.id, 'the kernel without a client');
        // Idle at least as long as the one just culled, but connected.
        const m = await model(t, kept.id);
        expect(m.connections).to.equal(1);
        expect(m.execution_state).to.equal('idle');
        expect(client.messages.some(isCullNotice)).to.equal(false);
        expect(await culledTotal(t)).to.equal(1);
      } finally {
        client.close();
      }
    });

    it('culls a dead kernel once dead for the timeout, even with a client attached', async () => {
      const { id } = await t.startKernel();
      const client = await TestClient.connect(`${t.wsBase}/api/kernels/${id}/channels`, {
        token: t.token,
      });
      const r = await client.execute('import os; os._exit(3)', 20_000);
      expect(r.reply.content.ename).to.equal('KernelDied');
      await client.waitFor(isDeadStatus, 'status dead when the kernel exits');
      const died = performance.now();
      expect((await model(t, id)).reason).to.match(/exited with code 3/);

      const { code } = await client.closed;
      expect(code).to.equal(1001);
      expect((performance.now() - died) / 1000, 'dead for the timeout first').to.be.within(1.8, 5);
      expect(client.messages.some(isCullNotice)).to.equal(true);
      expect((await t.api(`/api/kernels/${id}`)).status).to.equal(404);
    });
  });
});
