/** Runs the real gateway as its own process (as in production) for benchmarks. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import Docker from 'dockerode';
import { CONNECTION_ENV, KERNEL_DIR_IN_CONTAINER } from '../security/policy.js';

/** The kernel image the benches use: AIDO_KERNEL_IMAGE, else aido-kernel:latest. */
export const BENCH_IMAGE = process.env.AIDO_KERNEL_IMAGE ?? 'aido-kernel:latest';

/** Labels the gateway puts on its sandboxes: its state directory, and the kernel's directory. */
const LABEL_STATE_DIR = 'org.aido.kernel-gateway.state-dir';

export interface GatewayProcess {
  base: string;
  wsBase: string;
  token: string;
  stateDir: string;
  pid: number;
  api(p: string, init?: RequestInit): Promise<Response>;
  /** The kernel directory (ipc sockets k-1 … k-5) and HMAC key of one kernel's sandbox. */
  kernelConnection(kernelId: string): Promise<{ dir: string; key: string; containerId: string }>;
  /** Ids of the containers this gateway started that still exist. */
  containers(): Promise<string[]>;
  /**
   * SIGTERM (the gateway removes its sandboxes), SIGKILL after 60 s; then force-removes any
   * container still labelled with this gateway's state directory, and the directory.
   */
  stop(): Promise<void>;
}

export async function startGatewayProcess(
  env: Record<string, string> = {},
): Promise<GatewayProcess> {
  const stateDir = mkdtempSync('/tmp/aido-b-');
  const token = randomBytes(16).toString('hex');
  const docker = new Docker({
    socketPath: process.env.AIDO_DOCKER_SOCKET ?? '/var/run/docker.sock',
  });
  // BENCH_GATEWAY_NODE_ARGS: extra node options for the gateway alone, e.g. "--cpu-prof
  // --cpu-prof-dir=/tmp/prof" (NODE_OPTIONS refuses --cpu-prof, and would profile the bench too).
  const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const child: ChildProcess = spawn(
    process.execPath,
    [...nodeArgs, '--import', 'tsx', 'gateway/cli.ts'],
    {
      env: {
        ...process.env,
        AIDO_IP: '127.0.0.1',
        AIDO_PORT: '0',
        AIDO_AUTH_TOKEN: token,
        AIDO_STATE_DIR: stateDir,
        AIDO_KERNEL_IMAGE: BENCH_IMAGE,
        AIDO_LOG_LEVEL: 'warn',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const containers = async (): Promise<string[]> =>
    (
      await docker.listContainers({
        all: true,
        filters: { label: [`${LABEL_STATE_DIR}=${stateDir}`] },
      })
    ).map((c) => c.Id);
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      await exited;
      clearTimeout(timer);
    }
    const left = await containers().catch(() => []);
    await Promise.allSettled(left.map((id) => docker.getContainer(id).remove({ force: true })));
    rmSync(stateDir, { recursive: true, force: true });
  };
  let base: string;
  try {
    base = await new Promise<string>((resolve, reject) => {
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
  } catch (err) {
    await stop();
    throw err;
  }
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
    pid: child.pid ?? -1,
    api,
    async kernelConnection(kernelId) {
      // Pooled sandboxes are labelled "pool", so ask the gateway which container serves the kernel.
      const list = (await (await api('/api/security/containers')).json()) as {
        kernel_id: string | null;
        container_id: string;
      }[];
      const entry = list.find((c) => c.kernel_id === kernelId);
      if (!entry) throw new Error(`no sandbox listed for kernel ${kernelId}`);
      const info = await docker.getContainer(entry.container_id).inspect();
      // The kernel's ipc sockets live in its own volume at /run/kernel; its key is in the
      // connection the container was given (the gateway never reads either back from the sandbox).
      const dir = info.Mounts.find((m) => m.Destination === KERNEL_DIR_IN_CONTAINER)?.Source;
      if (dir === undefined)
        throw new Error(`container ${entry.container_id} has no ${KERNEL_DIR_IN_CONTAINER} mount`);
      const handed = info.Config.Env.find((e) => e.startsWith(`${CONNECTION_ENV}=`));
      if (handed === undefined)
        throw new Error(`container ${entry.container_id} has no ${CONNECTION_ENV}`);
      const conn = JSON.parse(handed.slice(CONNECTION_ENV.length + 1)) as { key: string };
      return { dir, key: conn.key, containerId: info.Id };
    },
    containers,
    stop,
  };
}
