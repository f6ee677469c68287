/**
 * Kernel control at boot: the gateway's link to a fresh sandbox, the one readiness probe over it,
 * the sandbox's limits enforced, the egress socket opened, and (for a pooled sandbox) the one env
 * hand-over. On failure the link is closed; the caller removes the sandbox.
 */
import { Signer } from '../../protocol/index.js';
import { GatewayError } from '../base/errors.js';
import type { KernelEgressHandle } from '../runtime/egress-proxy.js';
import type { Sandbox } from '../runtime/runtime.js';
import { handOverEnv } from './env-handover.js';
import { parsePolicyJson } from './executions.js';
import { KernelLink, type KernelLinkOptions } from './kernel-link.js';
import { probeUntilReady } from './kernel-probe.js';

export interface BootOptions extends Omit<KernelLinkOptions, 'sandbox' | 'signer'> {
  sandbox: Sandbox;
  /** Started from the warm pool, before its kernel existed: it gets `env` now. */
  pooled: boolean;
  env: Record<string, string>;
  startTimeoutMs: number;
  egress?: KernelEgressHandle | undefined;
  /** A reason to stop (the kernel was shut down meanwhile), else undefined. */
  cancelled: () => GatewayError | undefined;
  /** Called with the link as soon as it exists (its messages count from the start). */
  opened: (link: KernelLink, signer: Signer) => void;
}

/** Connects to a fresh sandbox and waits until its kernel is ready for clients. */
export async function bootSandbox(o: BootOptions): Promise<KernelLink> {
  const { sandbox } = o;
  const signer = new Signer(sandbox.connection.key);
  const link = new KernelLink({ ...o, signer });
  o.opened(link, signer);
  try {
    await probeUntilReady(sandbox, o.startTimeoutMs, {
      // On control: it answers even while the shell runs a cell (a kernel adopted mid-execution).
      ask: async (waitMs) =>
        (await link.request('control', 'kernel_info_request', {}, waitMs)) !== undefined,
      iopubSeen: () => link.iopubSeen,
      cancelled: o.cancelled,
    });
    await sandbox.enforceLimits();
    // After the kernel directory is sealed and before any user code can run in this (never
    // reused) sandbox: the socket is created where nothing the kernel planted can be in the way.
    await o.egress?.open(sandbox);
    if (o.pooled) await handOverStartEnv(sandbox, link, o.env);
  } catch (err) {
    link.close();
    throw err;
  }
  return link;
}

/**
 * A pooled sandbox was started before its kernel existed: its environment (KERNEL_ID and the
 * client's allow-listed variables) arrives as a read-only data file, loaded by fixed code.
 */
async function handOverStartEnv(
  sandbox: Sandbox,
  link: KernelLink,
  env: Record<string, string>,
): Promise<void> {
  await handOverEnv(env, {
    file: 'env.json',
    removeAfter: false,
    write: (json) => sandbox.putFile('env.json', json.toString()),
    load: async (code) => {
      const reply = await link.request(
        'shell',
        'execute_request',
        {
          code,
          silent: true,
          store_history: false,
          user_expressions: {},
          allow_stdin: false,
          stop_on_error: false,
        },
        10_000,
      );
      if (!reply || parsePolicyJson(reply.content).status !== 'ok') {
        throw new GatewayError(
          'KERNEL_START_FAILED',
          'could not hand the environment to a pooled sandbox',
        );
      }
    },
  });
}
