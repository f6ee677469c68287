/**
 * Debian's Jupyter Server in gateway mode (`--gateway-url`) in front of the real gateway: it starts a
 * kernel through its own REST API and executes code through its own channels socket.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { expect } from 'chai';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { stdout, TestClient } from '../helpers/ws-client.js';

const PYTHON = process.env.AIDO_PYTHON ?? '/usr/bin/python3';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => {
        if (a && typeof a === 'object') resolve(a.port);
        else reject(new Error('no port'));
      });
    });
  });
}

describe('Jupyter Server in gateway mode in front of the gateway', function () {
  this.timeout(180_000);
  let t: TestGateway;
  let js: ChildProcess;
  let jsBase: string;
  let rootDir: string;
  const jsToken = randomBytes(12).toString('hex');
  let jsLog = '';

  const jsApi = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(jsBase + path, {
      ...init,
      headers: { Authorization: `token ${jsToken}`, 'Content-Type': 'application/json' },
    });

  before(async () => {
    t = await startTestGateway();
    const port = await freePort();
    jsBase = `http://127.0.0.1:${port}`;
    rootDir = mkdtempSync('/tmp/aido-js-');
    js = spawn(
      PYTHON,
      [
        '-m',
        'jupyter_server',
        '--no-browser',
        '--allow-root',
        '--ip=127.0.0.1',
        `--port=${port}`,
        '--port-retries=0',
        `--ServerApp.token=${jsToken}`,
        `--ServerApp.root_dir=${rootDir}`,
        `--gateway-url=${t.base}`,
        `--GatewayClient.auth_token=${t.token}`,
        '--GatewayClient.request_timeout=90',
        '--GatewayClient.connect_timeout=90',
      ],
      {
        env: {
          ...process.env,
          JUPYTER_CONFIG_DIR: rootDir,
          JUPYTER_DATA_DIR: rootDir,
          JUPYTER_RUNTIME_DIR: rootDir,
          KERNEL_USERNAME: 'tester',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    js.stdout?.on('data', (d: Buffer) => (jsLog += d.toString()));
    js.stderr?.on('data', (d: Buffer) => (jsLog += d.toString()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (js.exitCode !== null) throw new Error(`jupyter server exited: ${jsLog}`);
      const ok = await jsApi('/api/status').then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`jupyter server did not come up: ${jsLog}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  });

  after(async () => {
    if (js.exitCode === null) {
      const exited = new Promise((r) => js.once('exit', r));
      js.kill('SIGTERM');
      await exited;
    }
    rmSync(rootDir, { recursive: true, force: true });
    await t.close();
  });

  it('lists our kernelspecs through Jupyter Server', async () => {
    const res = await jsApi('/api/kernelspecs');
    expect(res.status).to.equal(200);
    const body = (await res.json()) as {
      default: string;
      kernelspecs: Record<string, { spec: { display_name: string } }>;
    };
    expect(body.default).to.equal('python3');
    expect(body.kernelspecs.python3?.spec.display_name).to.match(/sandboxed/i);
  });

  it("starts a kernel on the gateway, executes through Jupyter Server's socket, and shuts it down", async () => {
    const res = await jsApi('/api/kernels', {
      method: 'POST',
      body: JSON.stringify({ name: 'python3' }),
    });
    expect(res.status, jsLog).to.equal(201);
    const model = (await res.json()) as { id: string };
    const ours = (await (await t.api('/api/kernels')).json()) as { id: string }[];
    expect(
      ours.map((k) => k.id),
      'the kernel runs on the gateway',
    ).to.include(model.id);

    const c = await TestClient.connect(
      `${jsBase.replace('http', 'ws')}/api/kernels/${model.id}/channels`,
      { token: jsToken, protocol: 'legacy' },
    );
    try {
      const r = await c.execute(
        "import os; print(os.getuid(), os.environ.get('KERNEL_USERNAME')); 40+2",
        60_000,
      );
      expect(r.reply.content.status).to.equal('ok');
      // The sandbox's own uid (from AIDO_SANDBOX_UID's range, no host account), and the user name
      // Jupyter Server sent as KERNEL_USERNAME.
      const [uid, user] = stdout(r).trim().split(' ');
      expect(Number(uid)).to.be.at.least(t.gw.config.sandboxUid);
      expect(user).to.equal('tester');
      const result = r.iopub.find((m) => m.header.msg_type === 'execute_result');
      expect((result?.content.data as Record<string, string>)['text/plain']).to.equal('42');
    } finally {
      c.close();
    }
    const model2 = (await (await jsApi(`/api/kernels/${model.id}`)).json()) as {
      last_activity: string;
      execution_state: string;
    };
    expect(model2.execution_state).to.be.oneOf(['idle', 'busy']);

    expect((await jsApi(`/api/kernels/${model.id}`, { method: 'DELETE' })).status).to.equal(204);
    expect((await t.api(`/api/kernels/${model.id}`)).status).to.equal(404);
  });
});
