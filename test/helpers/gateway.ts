/** Starts a real gateway on an ephemeral loopback port with its own state dir, for one test file. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { KernelModel } from '../../gateway/kernel/kernel.js';
import { createGateway, type Gateway, type GatewayDeps } from '../../gateway/server.js';
import { loadConfig, type GatewayConfig } from '../../gateway/base/config.js';
import { createLogger, type Logger } from '../../gateway/base/logger.js';

export interface TestGateway {
  gw: Gateway;
  port: number;
  base: string;
  wsBase: string;
  token: string;
  /** fetch against the gateway with the token header. */
  api(path: string, init?: RequestInit): Promise<Response>;
  /** POST /api/kernels and return the model. */
  startKernel(body?: Record<string, unknown>): Promise<{ id: string; [k: string]: unknown }>;
  close(): Promise<void>;
}

let imageTag: string | undefined;
/** The kernel image the tests use: AIDO_KERNEL_IMAGE, else what kernel-image/build.sh would tag. */
export function kernelImage(): string {
  imageTag ??=
    process.env.AIDO_KERNEL_IMAGE ??
    execFileSync('bash', ['kernel-image/build.sh', '--print-tag'], { encoding: 'utf8' }).trim();
  return imageTag;
}

export async function startTestGateway(
  overrides: Partial<GatewayConfig> = {},
  opts: { logger?: Logger; deps?: Omit<GatewayDeps, 'logger'> } = {},
): Promise<TestGateway> {
  // Short path: unix socket paths are limited to 107 bytes.
  const stateDir = mkdtempSync('/tmp/aido-t-');
  const token = randomBytes(16).toString('hex');
  const config = loadConfig({}, [], {
    ip: '127.0.0.1',
    port: 0,
    authToken: token,
    stateDir,
    kernelImage: overrides.kernelImage ?? kernelImage(),
    // Tests that count containers get exactly the kernels they start; the pool has its own tests.
    poolSize: 0,
    logLevel: process.env.AIDO_TEST_LOG_LEVEL ?? 'silent',
    ...overrides,
  });
  const gw = createGateway(config, {
    ...opts.deps,
    logger: opts.logger ?? createLogger(config.logLevel),
  });
  const port = await gw.listen();
  const base = `http://127.0.0.1:${port}`;
  const api = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(base + path, {
      ...init,
      headers: {
        Authorization: `token ${token}`,
        'Content-Type': 'application/json',
        ...(init.headers as Record<string, string> | undefined),
      },
    });
  return {
    gw,
    port,
    base,
    wsBase: `ws://127.0.0.1:${port}`,
    token,
    api,
    async startKernel(body = {}) {
      const res = await api('/api/kernels', { method: 'POST', body: JSON.stringify(body) });
      if (res.status !== 201)
        throw new Error(`POST /api/kernels → ${res.status} ${await res.text()}`);
      return (await res.json()) as { id: string };
    },
    async close() {
      await gw.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** GET /api/kernels/{id}, which must answer 200, as a kernel model. */
export async function kernelModel(t: TestGateway, id: string): Promise<KernelModel> {
  const res = await t.api(`/api/kernels/${id}`);
  if (res.status !== 200) throw new Error(`GET /api/kernels/${id} answered ${res.status}`);
  return (await res.json()) as KernelModel;
}

/** Ids of the running containers Docker reports for a kernel (labelled sandboxes of this gateway). */
export async function runningContainers(t: TestGateway, kernelId: string): Promise<string[]> {
  return (await t.gw.runtime.list())
    .filter((c) => c.kernelId === kernelId && c.state === 'running')
    .map((c) => c.sandboxId);
}
