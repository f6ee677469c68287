/** What the REST API and the kernel's parts say about a kernel: its state, its options. */
import type { SweepPolicy, Timers } from '../base/deadline.js';
import type { Logger } from '../base/logger.js';
import type { MetricsSink } from '../base/metrics.js';
import type { ClientChannelsOptions } from '../channels/client-channels.js';
import type { InboundLimits } from '../channels/inbound-gate.js';
import type { KernelEgressHandle } from '../runtime/egress-proxy.js';
import type { Sandbox } from '../runtime/runtime.js';
import type { KernelDeath } from './kernel-deaths.js';

/** Jupyter's execution states (the only values clients accept). */
export type ExecutionState = 'starting' | 'idle' | 'busy' | 'restarting' | 'dead';

/** The kernel model of the REST API. */
export interface KernelModel {
  id: string;
  name: string;
  last_activity: string;
  execution_state: ExecutionState;
  connections: number;
  reason?: string;
}

/** Requests whose replies and status messages do not count as user activity. */
export const UNTRACKED = new Set([
  'kernel_info_request',
  'comm_info_request',
  'interrupt_request',
  'shutdown_request',
  'debug_request',
  'usage_request',
]);

/**
 * Requests awaiting a reply. A kernel that never replies must not grow this without bound: past
 * the cap, new requests are refused with an error reply (their client is not left waiting).
 */
export const MAX_PENDING = 1024;

export interface KernelOptions {
  id: string;
  name: string;
  env: Record<string, string>;
  /** A fresh sandbox for this kernel: from the warm pool (`pooled`) or started cold. */
  acquire: (
    kernelId: string,
    env: Record<string, string>,
  ) => Promise<{ sandbox: Sandbox; pooled: boolean }>;
  logger: Logger;
  execTimeoutMs: number;
  killGraceMs: number;
  restartAfterKill: boolean;
  /** After a deadline's interrupt: kill what the execution left running; restart past the policy. */
  deadlineSweep?: SweepPolicy | undefined;
  startTimeoutMs: number;
  clients: ClientChannelsOptions;
  iopubRate: { msgsPerSecond: number; bytesPerSecond: number };
  /** Bounds on what the sandbox may send (see InboundGate). */
  inbound: InboundLimits;
  /** Client sessions kept; past it the oldest disconnected one is evicted. */
  maxClientSessions: number;
  timers?: Timers;
  metrics?: MetricsSink;
  /** The kernel's egress proxy (gateway/runtime/egress-proxy.ts); absent: egress is off. */
  egress?: KernelEgressHandle;
  /** Told when the sandbox stopped on its own or was killed by the ladder (not at shutdown). */
  onSandboxDeath?: (death: Omit<KernelDeath, 'at'>) => void;
}
