/**
 * The security API against real sandboxes: panic, the container listing with limits as Docker
 * reports them, targeted removal by container, kernel or session id, and the health report.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { kernelImage, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { stdout, TestClient } from '../helpers/ws-client.js';

interface ContainerEntry {
  kernel_id: string | null;
  container_id: string;
  session_ids: string[];
  created: string;
  state: string;
  limits: Record<string, unknown>;
}

interface Health {
  status: string;
  docker: { reachable: boolean; version: string | null };
  image: { name: string; present: boolean; id?: string; hash?: string | null };
  controls: {
    seccomp: { configured: boolean; in_force_on_live_sandboxes: boolean | null };
    no_new_privileges: { configured: boolean; in_force_on_live_sandboxes: boolean | null };
    apparmor: { host_supported: boolean; in_force_on_live_sandboxes: boolean | null };
    disabled: string[];
  };
}

const ENDPOINTS: [method: string, path: string][] = [
  ['POST', '/api/security/panic'],
  ['GET', '/api/security/containers'],
  ['DELETE', `/api/security/containers/${randomUUID()}`],
  ['DELETE', `/api/security/sessions/${randomUUID()}`],
  ['GET', '/api/security/health'],
];

/** What the host says about AppArmor, read the way the kernel exposes it. */
function hostHasAppArmor(): boolean {
  try {
    return readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y';
  } catch {
    return false;
  }
}

async function json<T>(res: Response, status: number, what: string): Promise<T> {
  expect(res.status, what).to.equal(status);
  return (await res.json()) as T;
}

async function containers(t: TestGateway): Promise<ContainerEntry[]> {
  return json(await t.api('/api/security/containers'), 200, 'GET /api/security/containers');
}

async function health(t: TestGateway): Promise<Health> {
  return json(await t.api('/api/security/health'), 200, 'GET /api/security/health');
}

async function createSession(t: TestGateway): Promise<{ id: string; kernelId: string }> {
  const s = await json<{ id: string; kernel: { id: string } }>(
    await t.api('/api/sessions', {
      method: 'POST',
      body: JSON.stringify({
        path: `sec/${randomUUID()}.ipynb`,
        type: 'notebook',
        name: 'n',
        kernel: { name: 'python3' },
      }),
    }),
    201,
    'POST /api/sessions',
  );
  return { id: s.id, kernelId: s.kernel.id };
}

/** The sandbox directory of a kernel (its ipc endpoints live there). */
function sandboxDir(t: TestGateway, kernelId: string): string {
  const shell = t.gw.kernels.get(kernelId).connection?.endpoints.shell;
  expect(shell, 'the kernel has a sandbox').to.be.a('string');
  return path.dirname(String(shell).replace(/^ipc:\/\//, ''));
}

function connect(t: TestGateway, kernelId: string): Promise<TestClient> {
  return TestClient.connect(`${t.wsBase}/api/kernels/${kernelId}/channels`, { token: t.token });
}

/** Asserts that a kernel is gone everywhere: REST, Docker, its directory and its client sockets. */
async function expectGone(
  t: TestGateway,
  gone: { kernelId: string; containerId: string; dir: string; client: TestClient },
): Promise<void> {
  expect((await t.api(`/api/kernels/${gone.kernelId}`)).status, 'GET the kernel').to.equal(404);
  const ids = (await t.gw.runtime.list()).map((c) => c.sandboxId);
  expect(ids, 'Docker still lists the container').to.not.include(gone.containerId);
  expect(existsSync(gone.dir), `the sandbox directory ${gone.dir} is removed`).to.equal(false);
  const closed = await gone.client.closed;
  expect(closed.code).to.equal(1001);
}

describe('security API (real sandboxes)', function () {
  this.timeout(120_000);

  describe('with the default policy', () => {
    let t: TestGateway;
    before(async () => {
      t = await startTestGateway();
    });
    after(async () => {
      await t.close();
    });

    it('requires the token on every security endpoint', async () => {
      for (const [method, p] of ENDPOINTS) {
        for (const headers of [{}, { Authorization: 'token wrong' }]) {
          const res = await fetch(t.base + p, { method, headers });
          expect(res.status, `${method} ${p} ${JSON.stringify(headers)}`).to.equal(401);
          expect(await res.json()).to.have.keys('reason', 'message');
        }
      }
    });

    it('lists every sandbox with its kernel, sessions, state and limits as Docker reports them', async () => {
      const session = await createSession(t);
      const bare = await t.startKernel();
      const list = await containers(t);
      expect(list).to.be.an('array');
      const withSession = list.find((c) => c.kernel_id === session.kernelId);
      const without = list.find((c) => c.kernel_id === bare.id);
      expect(withSession, 'the session kernel is listed').to.not.equal(undefined);
      expect(without, 'the bare kernel is listed').to.not.equal(undefined);
      for (const [entry, kernelId] of [
        [withSession, session.kernelId],
        [without, bare.id],
      ] as const) {
        const c = entry as ContainerEntry;
        expect(c.container_id).to.equal(t.gw.kernels.get(kernelId).sandboxId);
        expect(c.state).to.equal('running');
        expect(Number.isNaN(Date.parse(c.created)), `created ${c.created}`).to.equal(false);
        expect(c.limits).to.include({
          memory: 536870912,
          nano_cpus: 500000000,
          cpu_shares: 256,
          pids_limit: 50,
          readonly_rootfs: true,
          network_mode: 'none',
        });
      }
      expect(withSession?.session_ids).to.deep.equal([session.id]);
      expect(without?.session_ids).to.deep.equal([]);
    });

    it('removes a sandbox by container id: 204, the kernel is gone', async () => {
      const { id } = await t.startKernel();
      const client = await connect(t, id);
      const containerId = String(t.gw.kernels.get(id).sandboxId);
      const dir = sandboxDir(t, id);
      const res = await t.api(`/api/security/containers/${containerId}`, { method: 'DELETE' });
      expect(res.status).to.equal(204);
      await expectGone(t, { kernelId: id, containerId, dir, client });
    });

    it('removes a sandbox by the 12-character short id that docker ps shows', async () => {
      const { id } = await t.startKernel();
      const client = await connect(t, id);
      const containerId = String(t.gw.kernels.get(id).sandboxId);
      const dir = sandboxDir(t, id);
      const res = await t.api(`/api/security/containers/${containerId.slice(0, 12)}`, {
        method: 'DELETE',
      });
      expect(res.status).to.equal(204);
      await expectGone(t, { kernelId: id, containerId, dir, client });
    });

    it('removes a sandbox by kernel id: 204, the kernel is gone', async () => {
      const { id } = await t.startKernel();
      const client = await connect(t, id);
      const containerId = String(t.gw.kernels.get(id).sandboxId);
      const dir = sandboxDir(t, id);
      const res = await t.api(`/api/security/containers/${id}`, { method: 'DELETE' });
      expect(res.status).to.equal(204);
      await expectGone(t, { kernelId: id, containerId, dir, client });
    });

    it('answers 404 JSON for an unknown container or kernel id', async () => {
      for (const id of [randomBytes(32).toString('hex'), randomUUID(), 'abc']) {
        const body = await json<{ reason: string; message: string }>(
          await t.api(`/api/security/containers/${id}`, { method: 'DELETE' }),
          404,
          `DELETE /api/security/containers/${id}`,
        );
        expect(body.reason).to.equal('Not Found');
        expect(body.message).to.include(id);
      }
    });

    it('removes everything of a session by session id: kernel, container, directory, sockets', async () => {
      const s = await createSession(t);
      const client = await connect(t, s.kernelId);
      const containerId = String(t.gw.kernels.get(s.kernelId).sandboxId);
      const dir = sandboxDir(t, s.kernelId);
      expect(existsSync(dir)).to.equal(true);
      const res = await t.api(`/api/security/sessions/${s.id}`, { method: 'DELETE' });
      expect(res.status).to.equal(204);
      await expectGone(t, { kernelId: s.kernelId, containerId, dir, client });
      expect((await t.api(`/api/sessions/${s.id}`)).status, 'GET the session').to.equal(404);
    });

    it('removes everything of a session by kernel id', async () => {
      const s = await createSession(t);
      const client = await connect(t, s.kernelId);
      const containerId = String(t.gw.kernels.get(s.kernelId).sandboxId);
      const dir = sandboxDir(t, s.kernelId);
      const res = await t.api(`/api/security/sessions/${s.kernelId}`, { method: 'DELETE' });
      expect(res.status).to.equal(204);
      await expectGone(t, { kernelId: s.kernelId, containerId, dir, client });
      expect((await t.api(`/api/sessions/${s.id}`)).status, 'GET the session').to.equal(404);
    });

    it('answers 404 JSON for an unknown session', async () => {
      const body = await json<{ reason: string }>(
        await t.api(`/api/security/sessions/${randomUUID()}`, { method: 'DELETE' }),
        404,
        'DELETE an unknown session',
      );
      expect(body.reason).to.equal('Not Found');
    });

    it('reports health read back from live sandboxes', async () => {
      await t.startKernel();
      const h = await health(t);
      expect(h.status).to.equal('ok');
      expect(h.docker.reachable).to.equal(true);
      expect(h.docker.version).to.be.a('string');
      const label = execFileSync(
        'docker',
        [
          'image',
          'inspect',
          kernelImage(),
          '--format',
          '{{index .Config.Labels "org.aido.kernel-image.hash"}}',
        ],
        { encoding: 'utf8' },
      ).trim();
      expect(h.image.present).to.equal(true);
      expect(h.image.hash).to.be.a('string').and.equal(label);
      expect(h.controls.seccomp).to.deep.equal({
        configured: true,
        in_force_on_live_sandboxes: true,
      });
      expect(h.controls.no_new_privileges).to.deep.equal({
        configured: true,
        in_force_on_live_sandboxes: true,
      });
      const appArmor = hostHasAppArmor();
      expect(h.controls.apparmor.host_supported).to.equal(appArmor);
      const mentionsAppArmor = h.controls.disabled.some((d) => /apparmor/i.test(d));
      expect(mentionsAppArmor, `disabled: ${JSON.stringify(h.controls.disabled)}`).to.equal(
        !appArmor,
      );
      if (!appArmor) expect(h.controls.apparmor.in_force_on_live_sandboxes).to.equal(false);
      expect(h.controls.disabled.some((d) => /seccomp/i.test(d))).to.equal(false);
    });
  });

  describe('with seccomp off', () => {
    let t: TestGateway;
    before(async () => {
      t = await startTestGateway({ seccomp: false });
    });
    after(async () => {
      await t.close();
    });

    it('reports seccomp disabled, and not in force on live sandboxes', async () => {
      const idle = await health(t);
      expect(idle.controls.seccomp.configured).to.equal(false);
      expect(idle.controls.seccomp.in_force_on_live_sandboxes, 'no sandbox runs').to.equal(null);
      expect(idle.controls.disabled.some((d) => /seccomp/i.test(d))).to.equal(true);

      await t.startKernel();
      const live = await health(t);
      expect(live.controls.seccomp.in_force_on_live_sandboxes).to.equal(false);
      expect(live.controls.no_new_privileges.in_force_on_live_sandboxes).to.equal(true);
      expect(live.controls.disabled.some((d) => /seccomp/i.test(d))).to.equal(true);
    });
  });

  describe('panic', () => {
    let t: TestGateway;
    before(async () => {
      // No warm pool: the test counts exactly the sandboxes it starts.
      t = await startTestGateway({ poolSize: 0 });
    });
    after(async () => {
      await t.close();
    });

    it('kills every sandbox, closes every client and keeps serving', async () => {
      const [a, b] = await Promise.all([t.startKernel(), t.startKernel()]);
      const client = await connect(t, a.id);
      expect((await t.gw.runtime.list()).length).to.equal(2);

      const body = await json<{ killed: number }>(
        await t.api('/api/security/panic', { method: 'POST' }),
        200,
        'POST /api/security/panic',
      );
      expect(body).to.deep.equal({ killed: 2 });
      expect(await t.gw.runtime.list(), 'Docker lists no sandbox').to.deep.equal([]);
      expect(await json(await t.api('/api/kernels'), 200, 'GET /api/kernels')).to.deep.equal([]);
      for (const id of [a.id, b.id])
        expect((await t.api(`/api/kernels/${id}`)).status).to.equal(404);
      expect((await client.closed).code).to.equal(1001);
      expect(
        client.messages.some(
          (m) => m.header.msg_type === 'stream' && /panic/.test(String(m.content.text)),
        ),
        'the client was told why',
      ).to.equal(true);

      const fresh = await t.startKernel();
      const c = await connect(t, fresh.id);
      try {
        expect(stdout(await c.execute("print('alive')"))).to.equal('alive\n');
      } finally {
        c.close();
      }
    });
  });
});
