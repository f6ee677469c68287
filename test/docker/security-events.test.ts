/**
 * The console's two endpoints against real sandboxes: GET /api/security/events names each end
 * with its cause (a watchdog kill, an exit of the kernel's own, a removal, a client shutdown),
 * and GET /api/security/stats reports every live sandbox's memory and CPU against its limits.
 */
import { expect } from 'chai';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { waitUntil } from '../helpers/wait.js';
import { TestClient } from '../helpers/ws-client.js';

interface Death {
  kernel_id: string;
  container_id: string | null;
  cause: string;
  reason: string;
  exit_code: number | null;
  at: string;
}

interface StatsReport {
  cpu_limit_cores: number;
  stats: {
    kernel_id: string | null;
    container_id: string;
    memory_bytes: number;
    memory_limit_bytes: number;
    cpu_cores: number | null;
  }[];
  missing: string[];
}

const SIGINT_IGNORING_LOOP =
  'import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass';

describe('security events and stats (real sandboxes)', function () {
  this.timeout(120_000);
  let t: TestGateway;
  const clients: TestClient[] = [];

  before(async function () {
    this.timeout(120_000);
    t = await startTestGateway({ execTimeoutS: 2, killGraceS: 1, restartAfterKill: false });
  });

  after(async () => {
    for (const c of clients) c.close();
    await t.close();
  });

  async function deaths(): Promise<Death[]> {
    const res = await t.api('/api/security/events');
    expect(res.status).to.equal(200);
    return ((await res.json()) as { deaths: Death[] }).deaths;
  }

  async function deathOf(kernelId: string, what: string): Promise<Death> {
    let found: Death | undefined;
    await waitUntil(
      async () => {
        found = (await deaths()).find((d) => d.kernel_id === kernelId);
        return found !== undefined;
      },
      what,
      30_000,
    );
    return found!;
  }

  async function connect(id: string): Promise<TestClient> {
    const c = await TestClient.connect(`${t.wsBase}/api/kernels/${id}/channels`, {
      token: t.token,
    });
    clients.push(c);
    return c;
  }

  it('needs the token on both endpoints', async () => {
    for (const p of ['/api/security/events', '/api/security/stats']) {
      const res = await fetch(t.base + p);
      expect(res.status, p).to.equal(401);
    }
  });

  it('reports memory and CPU of every live sandbox against its limits', async () => {
    const [a, b] = await Promise.all([t.startKernel(), t.startKernel()]);
    const read = async (): Promise<StatsReport> => {
      const res = await t.api('/api/security/stats');
      expect(res.status).to.equal(200);
      return (await res.json()) as StatsReport;
    };
    await read();
    const report = await read();
    expect(report.cpu_limit_cores).to.equal(t.gw.config.cpus);
    expect(report.missing).to.deep.equal([]);
    const byKernel = new Map(report.stats.map((s) => [s.kernel_id, s]));
    for (const k of [a, b]) {
      const s = byKernel.get(k.id);
      expect(s, `stats of kernel ${k.id}`).to.not.equal(undefined);
      expect(s!.memory_limit_bytes).to.equal(t.gw.config.memoryBytes);
      expect(s!.memory_bytes).to.be.greaterThan(10 * 1024 ** 2);
      expect(s!.memory_bytes).to.be.lessThan(s!.memory_limit_bytes);
      // The second round has a previous reading to take the rate from.
      expect(s!.cpu_cores).to.be.a('number').and.at.least(0);
    }
    for (const k of [a, b]) await t.api(`/api/kernels/${k.id}`, { method: 'DELETE' });
  });

  it('names a watchdog kill, an exit of its own, a removal and a shutdown, newest first', async () => {
    const [killed, exits, removed, shut] = await Promise.all([
      t.startKernel(),
      t.startKernel(),
      t.startKernel(),
      t.startKernel(),
    ]);
    void (await connect(killed.id)).execute(SIGINT_IGNORING_LOOP, 30_000).catch(() => undefined);
    const watchdog = await deathOf(killed.id, 'the watchdog kill in the events');
    expect(watchdog.cause).to.equal('watchdog_kill');
    expect(watchdog.reason).to.match(/killed by the watchdog/);
    expect(watchdog.exit_code).to.equal(137);

    void (await connect(exits.id)).execute('import os; os._exit(3)', 30_000).catch(() => undefined);
    const exit = await deathOf(exits.id, 'the exit in the events');
    expect(exit.cause).to.equal('exit');
    expect(exit.exit_code).to.equal(3);
    expect(exit.reason).to.match(/exited with code 3/);

    expect(
      (await t.api(`/api/security/containers/${removed.id}`, { method: 'DELETE' })).status,
    ).to.equal(204);
    expect((await deathOf(removed.id, 'the removal in the events')).cause).to.equal('stopped');
    expect((await t.api(`/api/kernels/${shut.id}`, { method: 'DELETE' })).status).to.equal(204);
    expect((await deathOf(shut.id, 'the shutdown in the events')).cause).to.equal('shutdown');

    const order = (await deaths()).map((d) => d.kernel_id);
    const at = (id: string): number => order.indexOf(id);
    expect(at(shut.id)).to.be.lessThan(at(removed.id));
    expect(at(removed.id)).to.be.lessThan(at(exits.id));
    expect(at(exits.id)).to.be.lessThan(at(killed.id));
  });
});
