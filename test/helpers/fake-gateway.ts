/**
 * The real gateway on an ephemeral port with the fake kernel runtime (fake-kernel-runtime.ts)
 * injected: the integration tier's fixture. No Docker client is built; the kernel image is a name.
 */
import { expect } from 'chai';
import type { GatewayConfig } from '../../gateway/base/config.js';
import { FakeRuntime, type FakeSandbox } from './fake-kernel-runtime.js';
import { startTestGateway, type TestGateway } from './gateway.js';
import { isKernelStatus, stdout, TestClient } from './ws-client.js';

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

/** A fresh kernel with a requester (v1 framing) and an observer (legacy framing). */
export interface KernelPair {
  id: string;
  requester: TestClient;
  observer: TestClient;
  close(): void;
}

export async function kernelWithTwoClients(t: FakeGateway): Promise<KernelPair> {
  const { id } = await t.startKernel();
  const requester = await TestClient.connect(t.url(id), { token: t.token, protocol: 'v1' });
  const observer = await TestClient.connect(t.url(id), { token: t.token, protocol: 'legacy' });
  return {
    id,
    requester,
    observer,
    close() {
      requester.close();
      observer.close();
    },
  };
}

/** Waits until `c` was told the kernel restarts, and then that it is idle again. */
export async function restarted(c: TestClient): Promise<void> {
  await c.waitFor(isKernelStatus('restarting'), 'status restarting');
  await c.waitFor(
    (m) =>
      isKernelStatus('idle')(m) &&
      c.messages.indexOf(m) > c.messages.findIndex(isKernelStatus('restarting')),
    'status idle after the restart',
  );
}

/**
 * After a restart of a kernel that ran `set x` on the sandbox `before`: one sandbox runs, another
 * one, with fresh state, and both clients are served by it.
 */
export async function expectFreshSandbox(
  t: FakeGateway,
  k: KernelPair,
  before: FakeSandbox | undefined,
): Promise<void> {
  const now = t.runtime.running(k.id);
  expect(now, 'only the fresh sandbox runs').to.have.length(1);
  expect(now[0]?.id).to.not.equal(before?.id);
  expect(before?.running, 'the old sandbox is gone').to.equal(false);
  expect(stdout(await k.requester.execute('has x')), 'fresh state').to.equal('False\n');
  expect(stdout(await k.observer.execute('print again'))).to.equal('again\n');
}
