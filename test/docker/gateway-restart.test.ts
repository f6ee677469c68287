/**
 * Kernels survive the gateway: a gateway killed with SIGKILL and started again on the same state
 * dir adopts the running sandboxes — same kernel ids, state intact, sessions kept — and removes
 * what it cannot adopt.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { expect } from 'chai';
import Docker from 'dockerode';
import { kernelImage } from '../helpers/gateway.js';
import {
  killGatewayProcess,
  startGatewayProcess,
  stopGatewayProcess,
  type GatewayProcess,
} from '../helpers/gateway-process.js';
import { stdout, TestClient } from '../helpers/ws-client.js';

/** A plain-HTTP request through the sandbox's egress relay; prints the proxy's status line. */
const EGRESS_PROBE = [
  'import socket',
  "s = socket.create_connection(('127.0.0.1', 3128), timeout=10)",
  "s.sendall(b'GET http://127.0.0.1:9/ HTTP/1.1\\r\\nHost: 127.0.0.1:9\\r\\n\\r\\n')",
  "print(s.recv(4096).split(b'\\r\\n')[0].decode())",
  's.close()',
].join('\n');

describe('gateway restart: kernels are adopted (real sandboxes)', function () {
  this.timeout(180_000);
  const docker = new Docker();
  const token = 'restart-test-token';
  const auth = { Authorization: `token ${token}`, 'Content-Type': 'application/json' };
  let stateDir: string;
  let env: Record<string, string>;
  let gw: GatewayProcess | undefined;

  const labelled = (): Promise<Docker.ContainerInfo[]> =>
    docker.listContainers({
      all: true,
      filters: { label: [`org.aido.kernel-gateway.state-dir=${stateDir}`] },
    });
  const api = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${gw?.base}${path}`, { ...init, headers: auth });
  async function poolReady(n: number): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const h = (await (await api('/api/security/health')).json()) as { pool: { ready: number } };
      if (h.pool.ready === n) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} pooled sandboxes`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  before(() => {
    stateDir = mkdtempSync('/tmp/aido-r-');
    env = {
      AIDO_STATE_DIR: stateDir,
      AIDO_AUTH_TOKEN: token,
      AIDO_KERNEL_IMAGE: kernelImage(),
      AIDO_POOL_SIZE: '1',
    };
  });
  after(async () => {
    await stopGatewayProcess(gw);
    for (const c of await labelled()) await docker.getContainer(c.Id).remove({ force: true });
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('serves the same kernels, with their state and sessions, after a SIGKILL and a new start', async () => {
    gw = await startGatewayProcess(env);
    await poolReady(1);
    // One kernel from the pool (its id lives in its directory), one cold (its id in its label).
    const pooled = (await (
      await api('/api/kernels', {
        method: 'POST',
        body: JSON.stringify({ env: { KERNEL_USERNAME: 'ada' } }),
      })
    ).json()) as { id: string };
    const cold = (await (await api('/api/kernels', { method: 'POST', body: '{}' })).json()) as {
      id: string;
    };
    const session = (await (
      await api('/api/sessions', {
        method: 'POST',
        body: JSON.stringify({ path: 'n.ipynb', type: 'notebook', kernel: { id: pooled.id } }),
      })
    ).json()) as { id: string };
    for (const [k, value] of [
      [pooled.id, 41],
      [cold.id, 99],
    ] as const) {
      const c = await TestClient.connect(
        `${gw.base.replace('http', 'ws')}/api/kernels/${k}/channels`,
        { token },
      );
      expect((await c.execute(`x = ${value}`)).reply.content.status).to.equal('ok');
      c.close();
    }
    await poolReady(1);
    const before = await labelled();
    expect(before, 'two kernels and one pooled sandbox').to.have.length(3);

    await killGatewayProcess(gw);

    gw = await startGatewayProcess(env);
    const ids = (
      (await (await api('/api/kernels')).json()) as { id: string; execution_state: string }[]
    ).map((k) => k.id);
    expect(ids).to.have.members([pooled.id, cold.id]);
    const sessions = (await (await api('/api/sessions')).json()) as {
      id: string;
      kernel: { id: string };
    }[];
    expect(sessions.map((s) => [s.id, s.kernel.id])).to.deep.equal([[session.id, pooled.id]]);
    for (const [k, expected] of [
      [pooled.id, '42 ada'],
      [cold.id, '100 None'],
    ] as const) {
      const c = await TestClient.connect(
        `${gw.base.replace('http', 'ws')}/api/kernels/${k}/channels`,
        { token },
      );
      const r = await c.execute("import os; print(x + 1, os.environ.get('KERNEL_USERNAME'))");
      expect(stdout(r), `kernel ${k} kept its state`).to.equal(`${expected}\n`);
      // Egress (on by default) answers again: the new gateway bound a fresh proxy socket in the
      // adopted sandbox, and the sandbox's relay reaches it (a refusal proves who answered).
      const egress = await c.execute(EGRESS_PROBE);
      expect(stdout(egress), `kernel ${k} reaches the new gateway's egress proxy`).to.match(
        /^HTTP\/1\.1 403 egress to 127\.0\.0\.1:9 is not allowed by the gateway's policy/,
      );
      c.close();
    }
    // The unbound pooled sandbox of the first run was removed; a new pool fills.
    await poolReady(1);
    const after = await labelled();
    const oldPool = before.filter((c) => !after.some((a) => a.Id === c.Id));
    expect(oldPool, 'only the old pooled sandbox is gone').to.have.length(1);
    expect(after).to.have.length(3);
  });
});
