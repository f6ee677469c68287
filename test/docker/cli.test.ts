/** `npm start` as a process: configuration errors, the generated token, and a clean shutdown on SIGTERM/SIGINT. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { expect } from 'chai';
import Docker from 'dockerode';
import { kernelImage } from '../helpers/gateway.js';

const CLI = ['--import', 'tsx', 'gateway/cli.ts'];

function startCli(
  env: Record<string, string>,
  until = /listening on http:\/\/\S+\n/,
): Promise<{ child: ChildProcess; base: string; out: () => string }> {
  const child = spawn(process.execPath, CLI, {
    env: { ...process.env, AIDO_PORT: '0', AIDO_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m?.[1] && until.test(out)) resolve({ child, base: m[1], out: () => out });
    });
    child.once('exit', (code) => {
      reject(new Error(`exited early (${code}): ${out}`));
    });
  });
}

describe('gateway process (npm start)', function () {
  this.timeout(120_000);
  const docker = new Docker();

  it('refuses a bad configuration, naming every bad key, with exit code 2', () => {
    const r = spawnSync(process.execPath, [...CLI, '--nope'], {
      env: { ...process.env, AIDO_PORT: 'eighty', AIDO_CPU_LIMIT: '-1' },
      encoding: 'utf8',
    });
    expect(r.status).to.equal(2);
    for (const key of ['AIDO_PORT', 'AIDO_CPU_LIMIT', '--nope']) expect(r.stderr).to.include(key);
  });

  it('prints a generated token when none is configured, and that token works', async () => {
    const stateDir = mkdtempSync('/tmp/aido-c-');
    const env: Record<string, string> = {
      AIDO_STATE_DIR: stateDir,
      AIDO_KERNEL_IMAGE: kernelImage(),
    };
    delete process.env.AIDO_AUTH_TOKEN;
    const { child, base, out } = await startCli(env, /auth token .*\n/);
    try {
      const token = /auth token \(generated[^:]*\): ([0-9a-f]+)/.exec(out())?.[1];
      expect(token, out()).to.match(/^[0-9a-f]{48}$/);
      expect(
        (await fetch(`${base}/api`, { headers: { Authorization: `token ${token}` } })).status,
      ).to.equal(200);
      expect((await fetch(`${base}/api`)).status).to.equal(401);
    } finally {
      child.kill('SIGINT');
      await new Promise((r) => child.once('exit', r));
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`shuts down on ${signal}: every sandbox removed, then exit 0`, async () => {
      const stateDir = mkdtempSync('/tmp/aido-c-');
      const token = 'cli-test-token-0123';
      const { child, base } = await startCli({
        AIDO_STATE_DIR: stateDir,
        AIDO_AUTH_TOKEN: token,
        AIDO_KERNEL_IMAGE: kernelImage(),
        AIDO_POOL_SIZE: '1',
      });
      const auth = { Authorization: `token ${token}` };
      const res = await fetch(`${base}/api/kernels`, { method: 'POST', headers: auth, body: '{}' });
      expect(res.status).to.equal(201);
      // One kernel and one pooled sandbox, once the pool has refilled.
      const deadline = Date.now() + 60_000;
      for (;;) {
        const health = (await (
          await fetch(`${base}/api/security/health`, { headers: auth })
        ).json()) as { pool: { ready: number } };
        if (health.pool.ready === 1) break;
        if (Date.now() > deadline) throw new Error('timed out waiting for the pool to refill');
        await new Promise((r) => setTimeout(r, 100));
      }
      const labelled = (): Promise<Docker.ContainerInfo[]> =>
        docker.listContainers({
          all: true,
          filters: { label: [`org.aido.kernel-gateway.state-dir=${stateDir}`] },
        });
      expect(await labelled()).to.have.length(2);
      const exit = new Promise<number | null>((r) => child.once('exit', r));
      child.kill(signal);
      expect(await exit).to.equal(0);
      expect(await labelled()).to.have.length(0);
      // No sandbox record is left either (one was written for the kernel).
      expect(readdirSync(`${stateDir}/sandboxes`)).to.deep.equal([]);
      rmSync(stateDir, { recursive: true, force: true });
    });
  }
});
