/**
 * The real gateway on an ephemeral port with the fake kernel runtime (fake-kernel-runtime.ts)
 * injected: the integration tier's fixture. No Docker client is built; the kernel image is a name.
 */
import type { GatewayConfig } from '../../gateway/base/config.js';
import { FakeRuntime } from './fake-kernel-runtime.js';
import { startTestGateway, type TestGateway } from './gateway.js';

export interface FakeGateway extends TestGateway {
  runtime: FakeRuntime;
  /** The WebSocket URL of a kernel's channels. */
  url(kernelId: string): string;
}

export async function startFakeGateway(
  overrides: Partial<GatewayConfig> = {},
  opts: { processes?: boolean } = {},
): Promise<FakeGateway> {
  const runtime = new FakeRuntime(opts);
  const t = await startTestGateway(
    {
      kernelImage: 'fake-kernel',
      // No egress proxy (it binds a socket per sandbox) and no deadline sweep (it execs ps).
      egressAllow: [],
      deadlineSweep: false,
      ...overrides,
    },
    {
      deps: {
        runtime,
        engine: { version: () => Promise.resolve('fake'), image: () => Promise.resolve(null) },
        stats: { read: (ids) => Promise.resolve({ stats: [], missing: [...ids] }) },
      },
    },
  );
  return { ...t, runtime, url: (id) => `${t.wsBase}/api/kernels/${id}/channels` };
}
