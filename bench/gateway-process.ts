/** Runs the real gateway as its own process (as in production) for benchmarks. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export interface GatewayProcess {
  base: string;
  wsBase: string;
  token: string;
  stateDir: string;
  api(p: string, init?: RequestInit): Promise<Response>;
  /** Connection files of the running sandboxes (host paths of their ipc sockets). */
  connectionFiles(): { dir: string; key: string }[];
  stop(): Promise<void>;
}

export async function startGatewayProcess(
  env: Record<string, string> = {},
): Promise<GatewayProcess> {
  const stateDir = mkdtempSync('/tmp/aido-b-');
  const token = randomBytes(16).toString('hex');
  const image =
    process.env.AIDO_KERNEL_IMAGE ??
    execFileSync('bash', ['kernel-image/build.sh', '--print-tag'], { encoding: 'utf8' }).trim();
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'gateway/cli.ts'], {
    env: {
      ...process.env,
      AIDO_PORT: '0',
      AIDO_AUTH_TOKEN: token,
      AIDO_STATE_DIR: stateDir,
      AIDO_KERNEL_IMAGE: image,
      AIDO_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const base = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m?.[1]) resolve(m[1]);
    });
    child.once('exit', (code) => {
      reject(new Error(`gateway exited with ${code}: ${out}`));
    });
  });
  const api = (p: string, init: RequestInit = {}): Promise<Response> =>
    fetch(base + p, {
      ...init,
      headers: { Authorization: `token ${token}`, 'Content-Type': 'application/json' },
    });
  return {
    base,
    wsBase: base.replace(/^http/, 'ws'),
    token,
    stateDir,
    api,
    connectionFiles() {
      const k = path.join(stateDir, 'k');
      return readdirSync(k).map((d) => {
        const conn = JSON.parse(readFileSync(path.join(k, d, 'connection.json'), 'utf8')) as {
          key: string;
        };
        return { dir: path.join(k, d), key: conn.key };
      });
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
