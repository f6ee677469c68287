/**
 * The recent ends of sandboxes, for operators (GET /api/security/events): a bounded ring, so a
 * kernel that dies in a loop, or a long-running gateway, never grows it past its capacity.
 */
import { describeSandboxExit, type SandboxExit } from '../runtime/runtime.js';

/** Why a sandbox ended, as a word a page can colour; `reason` says it in full. */
export type DeathCause =
  | 'oom'
  | 'watchdog_kill'
  | 'interrupt_kill'
  | 'exit'
  | 'panic'
  /** Stopped by the gateway for another reason (the security API, the culler, an agent one-shot). */
  | 'stopped'
  /** Shut down at a client's request (DELETE /api/kernels/{id}). */
  | 'shutdown';

export interface KernelDeath {
  kernel_id: string;
  container_id: string | null;
  cause: DeathCause;
  reason: string;
  /** The container's exit code when it stopped on its own (OOM, exit, kill); else null. */
  exit_code: number | null;
  /** ISO time of the end. */
  at: string;
}

export class KernelDeaths {
  readonly #ring: KernelDeath[] = [];

  constructor(readonly capacity = 100) {}

  record(death: Omit<KernelDeath, 'at'>, at: Date = new Date()): void {
    this.#ring.push({ ...death, at: at.toISOString() });
    if (this.#ring.length > this.capacity) this.#ring.shift();
  }

  /** Newest first. */
  list(): KernelDeath[] {
    return [...this.#ring].reverse();
  }
}

/** Why a sandbox stopped, in words and as a cause (what the clients, the log and operators see). */
export function describeDeath(
  exit: SandboxExit,
  killReason: string | undefined,
  /** Killed by the interrupt ladder: who started it. */
  ladder: 'deadline' | 'interrupt' | undefined,
): { reason: string; cause: DeathCause } {
  const reason =
    killReason ??
    (exit.oomKilled
      ? 'OOM-killed: the kernel exceeded its memory limit'
      : exit.reason !== undefined
        ? `the sandbox stopped: ${describeSandboxExit(exit)}`
        : `the kernel exited with code ${exit.exitCode ?? 'unknown'}`);
  const cause: DeathCause = ladder
    ? ladder === 'deadline'
      ? 'watchdog_kill'
      : 'interrupt_kill'
    : exit.oomKilled
      ? 'oom'
      : 'exit';
  return { reason, cause };
}
