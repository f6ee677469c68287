/** The REST API against the real gateway and real sandboxes: shapes and status codes Jupyter clients rely on. */
import { expect } from 'chai';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { stdout, TestClient } from '../helpers/ws-client.js';

const LAST_ACTIVITY = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{1,6}Z$/;

describe('REST API (real sandboxes)', function () {
  this.timeout(120_000);
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({ maxKernels: 3, envAllowlist: ['EXTRA_OK'] });
  });
  after(async () => {
    await t.close();
  });

  it('GET /api answers a version', async () => {
    const res = await t.api('/api?1700000000000');
    expect(res.status).to.equal(200);
    expect(((await res.json()) as { version: string }).version).to.be.a('string');
  });

  it('refuses requests without the token with 401 JSON, accepts Bearer, answers OPTIONS without auth', async () => {
    const none = await fetch(`${t.base}/api/kernels`);
    expect(none.status).to.equal(401);
    expect(await none.json()).to.have.keys('reason', 'message');
    const wrong = await fetch(`${t.base}/api/kernels`, {
      headers: { Authorization: 'token nope' },
    });
    expect(wrong.status).to.equal(401);
    const bearer = await fetch(`${t.base}/api/kernels`, {
      headers: { Authorization: `Bearer ${t.token}` },
    });
    expect(bearer.status).to.equal(200);
    const options = await fetch(`${t.base}/api/kernels`, { method: 'OPTIONS' });
    expect(options.status).to.equal(200);
  });

  it('serves kernelspecs with argv as an array and resources under /kernelspecs/', async () => {
    const res = await t.api('/api/kernelspecs?user=alice');
    expect(res.status).to.equal(200);
    const body = (await res.json()) as {
      default: string;
      kernelspecs: Record<
        string,
        {
          name: string;
          spec: { argv: unknown; language: string };
          resources: Record<string, string>;
        }
      >;
    };
    expect(body.default).to.equal('python3');
    const spec = body.kernelspecs.python3!;
    expect(spec.spec.argv).to.be.an('array');
    expect(spec.spec.language).to.equal('python');
    for (const url of Object.values(spec.resources)) {
      expect(url).to.include('/kernelspecs/');
      const logo = await t.api(url);
      expect(logo.status).to.equal(200);
      expect(logo.headers.get('content-type')).to.match(/image\//);
    }
    expect((await t.api('/api/kernelspecs/python3')).status).to.equal(200);
    const missing = await t.api('/api/kernelspecs/nope');
    expect(missing.status).to.equal(404);
    expect(await missing.json()).to.have.keys('reason', 'message');
  });

  it('answers unknown paths, unknown kernel ids and bad JSON with JSON errors, never a traceback', async () => {
    const unknown = await t.api('/api/kernels/00000000-0000-0000-0000-000000000000');
    expect(unknown.status).to.equal(404);
    const body = (await unknown.json()) as { reason: string; message: string };
    expect(body.message).to.include('Kernel does not exist');
    expect(JSON.stringify(body)).not.to.include('traceback');
    expect((await t.api('/api/contents')).status).to.equal(404);
    expect((await t.api('/api/kernels/nope', { method: 'DELETE' })).status).to.equal(404);
    const bad = await t.api('/api/kernels', { method: 'POST', body: '{"name": ' });
    expect(bad.status).to.equal(400);
    expect(((await bad.json()) as { message: string }).message).to.match(/JSON/);
    const badSpec = await t.api('/api/kernels', {
      method: 'POST',
      body: JSON.stringify({ name: 'ruby' }),
    });
    expect(badSpec.status).to.equal(404);
    const badEnv = await t.api('/api/kernels', {
      method: 'POST',
      body: JSON.stringify({ env: ['x'] }),
    });
    expect(badEnv.status).to.equal(400);
  });

  it('starts, lists, gets, interrupts, restarts and deletes a kernel with Jupyter status codes', async () => {
    const res = await t.api('/api/kernels', {
      method: 'POST',
      body: JSON.stringify({ name: 'python3' }),
    });
    expect(res.status).to.equal(201);
    const model = (await res.json()) as {
      id: string;
      name: string;
      last_activity: string;
      execution_state: string;
      connections: number;
    };
    expect(res.headers.get('location')).to.equal(`/api/kernels/${model.id}`);
    expect(model).to.include.keys('id', 'name', 'last_activity', 'execution_state', 'connections');
    expect(model.name).to.equal('python3');
    expect(model.last_activity).to.match(LAST_ACTIVITY);
    expect(model.execution_state).to.equal('idle');
    expect(model.connections).to.equal(0);

    const list = (await (await t.api('/api/kernels')).json()) as { id: string }[];
    expect(list.map((k) => k.id)).to.include(model.id);
    expect((await t.api(`/api/kernels/${model.id}`)).status).to.equal(200);
    expect((await t.api(`/api/kernels/${model.id}/interrupt`, { method: 'POST' })).status).to.equal(
      204,
    );

    const before = (await t.gw.runtime.list()).find((c) => c.kernelId === model.id)?.sandboxId;
    const restarted = await t.api(`/api/kernels/${model.id}/restart`, {
      method: 'POST',
      body: '{}',
    });
    expect(restarted.status).to.equal(200);
    const rm = (await restarted.json()) as { id: string; execution_state: string };
    expect(rm.id).to.equal(model.id);
    expect(rm.execution_state).to.equal('idle');
    const after = (await t.gw.runtime.list()).filter((c) => c.kernelId === model.id);
    expect(after).to.have.length(1);
    expect(after[0]!.sandboxId, 'restart uses a fresh sandbox').not.to.equal(before);

    expect((await t.api(`/api/kernels/${model.id}`, { method: 'DELETE' })).status).to.equal(204);
    expect((await t.api(`/api/kernels/${model.id}`)).status).to.equal(404);
    expect((await t.gw.runtime.list()).filter((c) => c.kernelId === model.id)).to.have.length(0);
  });

  it('passes KERNEL_* and allow-listed env into the kernel and ignores the rest', async () => {
    const k = await t.startKernel({
      env: {
        KERNEL_USERNAME: 'alice',
        KERNEL_WORKING_DIR: '/home/alice/notebooks',
        KERNEL_LAUNCH_TIMEOUT: '40',
        EXTRA_OK: 'yes',
        PATH: '/evil',
        HOME: '/home/alice',
        SECRET: 'x',
      },
    });
    const c = await TestClient.connect(`${t.wsBase}/api/kernels/${k.id}/channels`, {
      token: t.token,
    });
    try {
      const r = await c.execute(
        "import os, json; print(json.dumps({k: os.environ.get(k) for k in ['KERNEL_USERNAME','KERNEL_WORKING_DIR','EXTRA_OK','SECRET','AIDO_AUTH_TOKEN']}), os.getcwd(), os.environ['PATH'] != '/evil', sep='|')",
      );
      const [json, cwd, pathOk] = stdout(r).trim().split('|');
      expect(JSON.parse(json!)).to.deep.equal({
        KERNEL_USERNAME: 'alice',
        KERNEL_WORKING_DIR: '/home/alice/notebooks',
        EXTRA_OK: 'yes',
        SECRET: null,
        AIDO_AUTH_TOKEN: null,
      });
      expect(cwd).to.equal('/workspace');
      expect(pathOk).to.equal('True');
    } finally {
      c.close();
      await t.api(`/api/kernels/${k.id}`, { method: 'DELETE' });
    }
  });

  it('refuses starts past AIDO_MAX_KERNELS with 403 and a clear message', async () => {
    const started = await Promise.all([t.startKernel(), t.startKernel(), t.startKernel()]);
    try {
      const res = await t.api('/api/kernels', { method: 'POST', body: '{}' });
      expect(res.status).to.equal(403);
      expect(((await res.json()) as { message: string }).message).to.match(
        /Maximum number of kernels \(3\)/,
      );
    } finally {
      await Promise.all(started.map((k) => t.api(`/api/kernels/${k.id}`, { method: 'DELETE' })));
    }
  });

  it('serves /api/sessions in the current shape, with create, patch and delete', async () => {
    const res = await t.api('/api/sessions', {
      method: 'POST',
      body: JSON.stringify({
        path: 'a.ipynb',
        type: 'notebook',
        name: 'a',
        kernel: { name: 'python3' },
      }),
    });
    expect(res.status).to.equal(201);
    const s = (await res.json()) as {
      id: string;
      path: string;
      name: string;
      type: string;
      kernel: { id: string };
    };
    expect(s).to.have.keys('id', 'path', 'name', 'type', 'kernel');
    expect(res.headers.get('location')).to.equal(`/api/sessions/${s.id}`);
    const again = (await (
      await t.api('/api/sessions', {
        method: 'POST',
        body: JSON.stringify({ path: 'a.ipynb', type: 'notebook' }),
      })
    ).json()) as { id: string };
    expect(again.id, 'same path, same session').to.equal(s.id);
    const patched = await t.api(`/api/sessions/${s.id}`, {
      method: 'PATCH',
      body: JSON.stringify({ path: 'b.ipynb' }),
    });
    expect(patched.status).to.equal(200);
    expect(((await patched.json()) as { path: string }).path).to.equal('b.ipynb');
    expect(((await (await t.api('/api/sessions')).json()) as unknown[]).length).to.equal(1);
    expect(
      (await t.api('/api/sessions', { method: 'POST', body: JSON.stringify({ type: 'notebook' }) }))
        .status,
    ).to.equal(400);
    expect((await t.api(`/api/sessions/${s.id}`, { method: 'DELETE' })).status).to.equal(204);
    expect((await t.api(`/api/sessions/${s.id}`)).status).to.equal(404);
    expect(
      (await t.api(`/api/kernels/${s.kernel.id}`)).status,
      'deleting a session shuts its kernel down',
    ).to.equal(404);
  });
});
