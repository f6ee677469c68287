/** The warm pool with real sandboxes: use, refill, never reused, exhaustion, limits, restart, panic, shutdown. */
import { expect } from 'chai';
import Docker from 'dockerode';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { stdout, TestClient } from '../helpers/ws-client.js';
import { waitUntil } from '../helpers/wait.js';

describe('warm pool (real sandboxes)', function () {
  this.timeout(180_000);
  let t: TestGateway;
  const containerOf = async (kernelId: string): Promise<string | undefined> =>
    (await t.gw.runtime.list()).find((c) => c.kernelId === kernelId)?.sandboxId;

  before(async () => {
    t = await startTestGateway({ poolSize: 2, maxKernels: 4 });
    await waitUntil(() => t.gw.kernels.pool.ready === 2, 'two ready pooled sandboxes');
  });
  after(async () => {
    await t.close();
  });

  it('hands a ready sandbox to a new kernel, with its environment, and refills', async () => {
    const pooled = t.gw.kernels.pool.sandboxIds();
    const k = await t.startKernel({ env: { KERNEL_USERNAME: 'pool-user' } });
    const cid = await containerOf(k.id);
    expect(cid && pooled.has(cid), 'the kernel runs in a sandbox that was pooled').to.equal(true);
    const info = await new Docker({ socketPath: t.gw.config.dockerSocket })
      .getContainer(cid!)
      .inspect();
    expect(info.Name, 'docker ps names the kernel, not the pool').to.match(
      new RegExp(`^/aido-k-${k.id.slice(0, 8)}-[0-9a-f]{12}$`),
    );
    expect(info.HostConfig.CpuShares, 'a lower CPU weight than the gateway').to.equal(256);
    const c = await TestClient.connect(`${t.wsBase}/api/kernels/${k.id}/channels`, {
      token: t.token,
    });
    try {
      const r = await c.execute(
        "import os; print(os.environ.get('KERNEL_USERNAME'), os.environ.get('KERNEL_ID'), os.path.exists('/run/kernel/env.json'))",
      );
      expect(stdout(r)).to.equal(`pool-user ${k.id} True\n`);
      const quota = await c.execute(
        [
          'import glob',
          "d = next(p for p in glob.glob('/sys/fs/cgroup/cpu*') + ['/sys/fs/cgroup'] if glob.glob(p + '/cpu.cfs_quota_us') or glob.glob(p + '/cpu.max'))",
          "q = open(d + '/cpu.cfs_quota_us').read().split()[0] if glob.glob(d + '/cpu.cfs_quota_us') else open(d + '/cpu.max').read().split()[0]",
          "p = open(d + '/cpu.cfs_period_us').read().split()[0] if glob.glob(d + '/cpu.cfs_period_us') else open(d + '/cpu.max').read().split()[1]",
          'print(int(q) / int(p))',
        ].join('\n'),
      );
      expect(stdout(quota), 'user code runs under the policy quota, not the start-up one').to.equal(
        '0.5\n',
      );
      const count = (await c.execute('print(1)')).reply.content.execution_count;
      expect(count, 'the environment hand-over left no trace in the execution count').to.equal(3);
    } finally {
      c.close();
    }
    await waitUntil(() => t.gw.kernels.pool.ready === 2, 'the pool to refill');
    expect(
      t.gw.kernels.pool.sandboxIds().has(cid!),
      'a taken sandbox never returns to the pool',
    ).to.equal(false);
    expect((await t.api(`/api/kernels/${k.id}`, { method: 'DELETE' })).status).to.equal(204);
    expect(
      (await t.gw.runtime.list()).some((c) => c.sandboxId === cid),
      'removed with its kernel',
    ).to.equal(false);
  });

  it('lists pooled sandboxes as such in the security API and counts them in health', async () => {
    const list = (await (await t.api('/api/security/containers')).json()) as {
      pooled: boolean;
      kernel_id: string | null;
    }[];
    expect(list.filter((c) => c.pooled)).to.have.length(2);
    expect(list.filter((c) => c.pooled).every((c) => c.kernel_id === null)).to.equal(true);
    const health = (await (await t.api('/api/security/health')).json()) as {
      pool: { size: number; ready: number };
    };
    expect(health.pool).to.include({ size: 2, ready: 2 });
  });

  it('falls back to cold starts when the pool is exhausted, and respects the kernel limit', async () => {
    const ks = await Promise.all([t.startKernel(), t.startKernel(), t.startKernel()]);
    try {
      expect(new Set(ks.map((k) => k.id)).size).to.equal(3);
      // 3 kernels under a limit of 4: the pool may hold at most one sandbox now.
      await waitUntil(
        () => t.gw.kernels.pool.ready + t.gw.kernels.pool.filling <= 1,
        'the pool to shrink under the kernel limit',
      );
      await new Promise((r) => setTimeout(r, 200));
      expect(t.gw.kernels.pool.ready + t.gw.kernels.pool.filling).to.be.at.most(1);
      const refused = await t.api('/api/kernels', { method: 'POST', body: '{}' });
      if (t.gw.kernels.pool.ready === 1) expect(refused.status).to.equal(201);
    } finally {
      for (const k of (await (await t.api('/api/kernels')).json()) as { id: string }[])
        await t.api(`/api/kernels/${k.id}`, { method: 'DELETE' });
    }
    await waitUntil(
      () => t.gw.kernels.pool.ready === 2,
      'the pool to refill after the kernels are gone',
    );
  });

  it('restarts a kernel on a fresh sandbox, never its old one', async () => {
    const k = await t.startKernel();
    const before = await containerOf(k.id);
    expect((await t.api(`/api/kernels/${k.id}/restart`, { method: 'POST' })).status).to.equal(200);
    const after = await containerOf(k.id);
    expect(after).to.be.a('string');
    expect(after).not.to.equal(before);
    expect((await t.gw.runtime.list()).some((c) => c.sandboxId === before)).to.equal(false);
    await t.api(`/api/kernels/${k.id}`, { method: 'DELETE' });
  });

  it('is emptied by panic and fills again with new sandboxes', async () => {
    await waitUntil(() => t.gw.kernels.pool.ready === 2, 'a full pool');
    const old = t.gw.kernels.pool.sandboxIds();
    const res = await t.api('/api/security/panic', { method: 'POST' });
    expect(res.status).to.equal(200);
    expect(((await res.json()) as { killed: number }).killed).to.be.at.least(2);
    await waitUntil(() => t.gw.kernels.pool.ready === 2, 'the pool to refill after panic');
    for (const id of t.gw.kernels.pool.sandboxIds()) expect(old.has(id)).to.equal(false);
    const live = new Set((await t.gw.runtime.list()).map((c) => c.sandboxId));
    for (const id of old)
      expect(live.has(id), 'panic removed the old pooled sandboxes').to.equal(false);
  });

  it('is emptied on shutdown: no sandbox of the gateway is left', async () => {
    const t2 = await startTestGateway({ poolSize: 2 });
    await waitUntil(
      () => t2.gw.kernels.pool.ready + t2.gw.kernels.pool.filling === 2,
      'the pool to start filling',
    );
    await t2.gw.close();
    expect(await t2.gw.runtime.list()).to.deep.equal([]);
    await t2.close();
  });
});
