/**
 * What the security console reads beyond the seed's security API, behind the same token:
 * GET /api/security/events (the recent ends of sandboxes, with cause, reason and time) and
 * GET /api/security/stats (memory and CPU of every live sandbox now, against its limits).
 */
import express from 'express';
import type { GatewayConfig } from '../base/config.js';
import type { KernelRegistry } from '../kernel/kernel-registry.js';
import type { SandboxStats } from '../runtime/sandbox-stats.js';

export interface ConsoleApiDeps {
  config: GatewayConfig;
  kernels: KernelRegistry;
  stats: Pick<SandboxStats, 'read'>;
}

export function createConsoleApi(deps: ConsoleApiDeps): express.Router {
  const { config, kernels, stats } = deps;
  const router = express.Router();
  router.get('/api/security/events', (_req, res) => {
    res.json({ capacity: kernels.deaths.capacity, deaths: kernels.deaths.list() });
  });
  router.get('/api/security/stats', async (_req, res) => {
    const report = await stats.read([...kernels.sandboxIds()]);
    res.json({
      cpu_limit_cores: config.cpus,
      stats: report.stats.map((s) => ({
        kernel_id: kernels.kernelOfSandbox(s.container_id) ?? null,
        ...s,
      })),
      missing: report.missing,
    });
  });
  return router;
}
