/**
 * Docker Engine faults: with the daemon stopped, health says so, kernel starts get 503 with a clear
 * message, running kernels keep working over ipc (the daemon runs with --live-restore), and the
 * gateway recovers when the daemon returns. Runs last-ish and restores the daemon it stopped.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import Docker from 'dockerode';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { stdout, TestClient } from '../helpers/ws-client.js';
import { waitUntil } from '../helpers/wait.js';

describe('Docker daemon stopped and restarted (real daemon, real sandboxes)', function () {
  this.timeout(240_000);
  const docker = new Docker();
  let t: TestGateway | undefined;
  let liveRestore = false;
  let daemonPid: number | undefined;

  before(async function () {
    const info = (await docker.info()) as { LiveRestoreEnabled?: boolean };
    liveRestore = info.LiveRestoreEnabled === true;
    try {
      daemonPid = Number(readFileSync('/var/run/docker.pid', 'utf8').trim());
    } catch {
      daemonPid = undefined;
    }
    const ours =
      daemonPid !== undefined &&
      readFileSync(`/proc/${daemonPid}/cmdline`, 'utf8').includes('--bridge=none');
    if (!liveRestore || !ours) {
      // Stopping a daemon we did not start (or one that would take every container down with it)
      // is not a test's business; CI always runs the daemon scripts/ensure-docker.sh started.
      if (process.env.CI)
        throw new Error(
          'CI must run the daemon started by scripts/ensure-docker.sh (--live-restore)',
        );
      this.skip();
    }
    t = await startTestGateway({ poolSize: 0 });
  });
  const gateway = (): TestGateway => {
    if (!t) throw new Error('no test gateway');
    return t;
  };
  after(async () => {
    // Whatever happened, leave a daemon running.
    execFileSync('bash', ['scripts/ensure-docker.sh'], { stdio: 'inherit' });
    await t?.close();
  });

  it('keeps running kernels working, refuses starts with 503, reports it, and recovers', async () => {
    const t = gateway();
    const k = await t.startKernel();
    const c = await TestClient.connect(`${t.wsBase}/api/kernels/${k.id}/channels`, {
      token: t.token,
    });
    try {
      expect((await c.execute('x = 1')).reply.content.status).to.equal('ok');

      process.kill(daemonPid!, 'SIGTERM');
      await waitUntil(
        () =>
          docker.ping().then(
            () => false,
            () => true,
          ),
        'the daemon to stop',
      );

      const health = (await (await t.api('/api/security/health')).json()) as {
        status: string;
        docker: { reachable: boolean };
      };
      expect(health.docker.reachable).to.equal(false);
      expect(health.status).to.equal('degraded');
      const refused = await t.api('/api/kernels', { method: 'POST', body: '{}' });
      expect(refused.status).to.equal(503);
      expect(((await refused.json()) as { message: string }).message).to.match(
        /Docker Engine is not reachable/,
      );
      expect(
        stdout(await c.execute('print(x + 1)')),
        'the running kernel works without the daemon',
      ).to.equal('2\n');
      const model = (await (await t.api(`/api/kernels/${k.id}`)).json()) as {
        execution_state: string;
      };
      expect(model.execution_state).to.equal('idle');

      execFileSync('bash', ['scripts/ensure-docker.sh'], { stdio: 'inherit' });
      await waitUntil(
        () =>
          docker.ping().then(
            () => true,
            () => false,
          ),
        'the daemon to answer again',
      );
      const back = (await (await t.api('/api/security/health')).json()) as {
        docker: { reachable: boolean };
      };
      expect(back.docker.reachable).to.equal(true);
      const k2 = await t.startKernel();
      expect(
        stdout(await c.execute('print(x + 2)')),
        'the kernel outlived the daemon restart',
      ).to.equal('3\n');
      expect((await t.api(`/api/kernels/${k2.id}`, { method: 'DELETE' })).status).to.equal(204);
    } finally {
      c.close();
    }
  });
});
