/**
 * Idle culling (Jupyter Server's `cull_idle_timeout`, `cull_interval`, `cull_connected`,
 * `cull_busy`): every interval, kernels without tracked activity for the idle timeout are shut
 * down. Connected and busy kernels are spared unless configured otherwise; dead kernels (their
 * sandbox stopped and was not restarted) are always culled once dead for the timeout. The clock
 * and timers are injected so unit tests run in milliseconds.
 */
import { realTimers, type Timers } from '../base/deadline.js';
import type { ExecutionState } from './kernel.js';

export interface CullPolicy {
  /** Idle time after which a kernel is culled; 0 (or less) disables culling. */
  idleTimeoutMs: number;
  /** Cull kernels that have a client attached (false: they are spared). */
  connected: boolean;
  /** Cull busy kernels whose execution produced no activity for the timeout (false: spared). */
  busy: boolean;
}

/** What the culler reads of a kernel. */
export interface CullCandidate {
  readonly id: string;
  readonly executionState: ExecutionState;
  /** The last tracked activity (requests and their output; not probes, pings or status). */
  readonly lastActivity: Date;
  /** Clients attached now. */
  readonly connections: number;
}

export type CullVerdict =
  | { cull: true; idleMs: number }
  | { cull: false; why: 'disabled' | 'active' | 'busy' | 'connected' | 'transitioning' };

/**
 * Whether to cull `k` at `nowMs`. `deadSinceMs` is when the kernel was first seen dead: a dead
 * kernel's idle time counts from its death (or its last activity, if later), so its clients have
 * the timeout to read why it died.
 */
export function cullVerdict(
  k: CullCandidate,
  policy: CullPolicy,
  nowMs: number,
  deadSinceMs?: number,
): CullVerdict {
  if (!(policy.idleTimeoutMs > 0)) return { cull: false, why: 'disabled' };
  const state = k.executionState;
  if (state === 'starting' || state === 'restarting') return { cull: false, why: 'transitioning' };
  const since =
    state === 'dead' && deadSinceMs !== undefined
      ? Math.max(k.lastActivity.getTime(), deadSinceMs)
      : k.lastActivity.getTime();
  const idleMs = nowMs - since;
  if (idleMs < policy.idleTimeoutMs) return { cull: false, why: 'active' };
  if (state !== 'dead') {
    if (state === 'busy' && !policy.busy) return { cull: false, why: 'busy' };
    if (k.connections > 0 && !policy.connected) return { cull: false, why: 'connected' };
  }
  return { cull: true, idleMs };
}

export interface CullerOptions {
  policy: CullPolicy;
  intervalMs: number;
  /** The kernels to consider (running ones; not those still starting or shutting down). */
  kernels: () => Iterable<CullCandidate>;
  /**
   * Shuts one kernel down. Must take it out of `kernels()` before its first `await`, so a check
   * never sees it twice. Failures are the callee's to log; the culler carries on.
   */
  cull: (kernel: CullCandidate, idleMs: number) => Promise<void>;
  now?: () => number;
  timers?: Timers;
}

/** Node's timers, unref'd: a pending check must not keep the process alive. */
const unrefTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => {
    realTimers.clearTimeout(h);
  },
};

export class Culler {
  readonly #opts: CullerOptions;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #deadSince = new Map<string, number>();
  #timer: unknown;
  #checking: Promise<string[]> | undefined;
  #running = false;

  constructor(opts: CullerOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#timers = opts.timers ?? unrefTimers;
  }

  get enabled(): boolean {
    return this.#opts.policy.idleTimeoutMs > 0;
  }

  /** Checks every interval until {@link stop}; does nothing when culling is off. Idempotent. */
  start(): void {
    if (!this.enabled || this.#running) return;
    this.#running = true;
    this.#schedule();
  }

  #schedule(): void {
    // The next check is timed from the end of this one, so checks never overlap.
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      void this.check().finally(() => {
        if (this.#running) this.#schedule();
      });
    }, this.#opts.intervalMs);
  }

  /** One pass: culls what the policy says; resolves with the culled ids once they are shut down. */
  check(): Promise<string[]> {
    this.#checking ??= this.#check().finally(() => {
      this.#checking = undefined;
    });
    return this.#checking;
  }

  async #check(): Promise<string[]> {
    const now = this.#now();
    const seen = new Set<string>();
    const culls: Promise<unknown>[] = [];
    const culled: string[] = [];
    for (const k of [...this.#opts.kernels()]) {
      seen.add(k.id);
      let deadSince: number | undefined;
      if (k.executionState === 'dead') {
        deadSince = this.#deadSince.get(k.id) ?? now;
        this.#deadSince.set(k.id, deadSince);
      } else {
        this.#deadSince.delete(k.id);
      }
      const verdict = cullVerdict(k, this.#opts.policy, now, deadSince);
      if (!verdict.cull) continue;
      culled.push(k.id);
      this.#deadSince.delete(k.id);
      culls.push(this.#opts.cull(k, verdict.idleMs).catch(() => undefined));
    }
    for (const id of this.#deadSince.keys()) if (!seen.has(id)) this.#deadSince.delete(id);
    await Promise.all(culls);
    return culled;
  }

  /** Stops checking and waits for a check under way. Idempotent. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#checking;
  }
}
