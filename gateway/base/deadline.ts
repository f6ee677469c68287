/**
 * The interrupt → kill ladder, shared by the execution watchdog and the interrupt endpoint.
 * Timers are injected so unit tests run the ladder in milliseconds.
 */

/** The timer functions the ladder uses (Node's by default). */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => {
    clearTimeout(h as NodeJS.Timeout);
  },
};

/** How a ladder ended: the execution stopped after the interrupt, or the sandbox was killed. */
export type LadderOutcome = 'interrupted' | 'killed';

export interface LadderSteps {
  /** Asks the kernel to interrupt the running execution. */
  interrupt(): Promise<void>;
  /** Kills the sandbox. */
  kill(): Promise<void>;
}

/**
 * One climb of the ladder: interrupt, then wait `graceMs` for {@link InterruptLadder.settle};
 * if it does not come, kill. `run()` is memoized: a second caller joins the first climb.
 */
export class InterruptLadder {
  #running: Promise<LadderOutcome> | undefined;
  #settle: (() => void) | undefined;

  constructor(
    private readonly steps: LadderSteps,
    private readonly graceMs: number,
    private readonly timers: Timers = realTimers,
  ) {}

  /** Whether a climb is under way. */
  get running(): boolean {
    return this.#running !== undefined;
  }

  run(): Promise<LadderOutcome> {
    this.#running ??= this.#climb().finally(() => {
      this.#running = undefined;
      this.#settle = undefined;
    });
    return this.#running;
  }

  /** The execution ended (reply or idle seen): stops the climb before the kill. */
  settle(): void {
    this.#settle?.();
  }

  async #climb(): Promise<LadderOutcome> {
    let timer: unknown;
    const settled = new Promise<'settled'>((resolve) => {
      this.#settle = () => {
        resolve('settled');
      };
    });
    const expired = new Promise<'expired'>((resolve) => {
      timer = this.timers.setTimeout(() => {
        resolve('expired');
      }, this.graceMs);
    });
    try {
      await this.steps.interrupt().catch(() => undefined);
      const first = await Promise.race([settled, expired]);
      if (first === 'settled') return 'interrupted';
      await this.steps.kill();
      return 'killed';
    } finally {
      this.timers.clearTimeout(timer);
    }
  }
}

/** Per-execution wall clock: one timer per armed execution id. */
export class ExecutionDeadline {
  #timers = new Map<string, unknown>();

  constructor(
    private readonly ms: number,
    private readonly timers: Timers = realTimers,
  ) {}

  get enabled(): boolean {
    return this.ms > 0;
  }

  /** Starts the clock for `id` unless it is already running; `onExpire` fires once at the deadline. */
  arm(id: string, onExpire: () => void): void {
    if (!this.enabled || this.#timers.has(id)) return;
    this.#timers.set(
      id,
      this.timers.setTimeout(() => {
        this.#timers.delete(id);
        onExpire();
      }, this.ms),
    );
  }

  disarm(id: string): void {
    const t = this.#timers.get(id);
    if (t === undefined) return;
    this.timers.clearTimeout(t);
    this.#timers.delete(id);
  }

  disarmAll(): void {
    for (const t of this.#timers.values()) this.timers.clearTimeout(t);
    this.#timers.clear();
  }
}

/** What a sweep of the sandbox found after it killed the execution's leftovers. */
export interface SweepReport {
  /** Processes killed (everything but the sandbox's init chain and the kernel). */
  killed: number;
  /** Cores the whole sandbox used on average over the watch window. */
  cores: number;
  /** Share of samples in the window in which a thread of the kernel was runnable (0..1). */
  runnable: number;
}

/** What the sweep after a deadline needs from the kernel and its sandbox. */
export interface SweepSteps {
  /** Kills the execution's leftover processes, then watches the idle kernel for `windowMs`. */
  sweep(windowMs: number, samples: number): Promise<SweepReport>;
  /** Executions started so far, and whether one runs now. */
  activity(): { started: number; busy: boolean };
  /** Restarts the kernel on a fresh sandbox, telling its clients why. */
  restart(reason: string): Promise<void>;
}

/** How long the idle kernel is watched after a deadline, and what it may still do. */
export interface SweepPolicy {
  windowMs: number;
  samples: number;
  /** Cores the sandbox may use on average over the window (0.1: a tenth of one core). */
  maxCores: number;
  /**
   * Share of samples in which a kernel thread may be runnable. A busy thread is runnable in every
   * sample however loaded the host is, while its CPU share can be small on a saturated host.
   */
  maxRunnable: number;
}

export const DEFAULT_SWEEP_POLICY: SweepPolicy = {
  windowMs: 2000,
  samples: 20,
  maxCores: 0.1,
  maxRunnable: 0.5,
};

/** How a sweep ended, with what it found. */
export interface SweepOutcome {
  /**
   * quiet: the idle kernel used (almost) no CPU; restarted: something of the execution kept
   * running (threads), or the sweep could not run; not-judged: another execution started in the
   * meantime, so what runs is its own (and its own deadline bounds it).
   */
  outcome: 'quiet' | 'restarted' | 'not-judged';
  report?: SweepReport;
}

/**
 * Deadline completeness, after the interrupt ended an execution: kill the processes it left
 * running, then watch the idle kernel; if it still burns CPU (threads inside the kernel process,
 * which cannot be killed alone), restart it on a fresh sandbox. A sweep that cannot run (the kernel
 * stopped or killed it, the sandbox is at its pids limit, its answer does not parse) restarts too,
 * unless another execution started in the meantime (then its own deadline judges the sandbox).
 */
export async function sweepAfterDeadline(
  steps: SweepSteps,
  policy: SweepPolicy = DEFAULT_SWEEP_POLICY,
): Promise<SweepOutcome> {
  const before = steps.activity();
  // A queued execution already running: its processes are its own, not leftovers to kill.
  if (before.busy) return { outcome: 'not-judged' };
  let report: SweepReport;
  try {
    report = await steps.sweep(policy.windowMs, policy.samples);
  } catch (err) {
    // Another execution started meanwhile: the sweep may have failed because that execution's
    // own ladder killed the sandbox (its reply is ExecutionKilled, not a restart), and whatever
    // runs now is bounded by that execution's deadline, whose sweep judges it.
    const after = steps.activity();
    if (after.busy || after.started !== before.started) return { outcome: 'not-judged' };
    await steps.restart(
      `the sandbox could not be swept after the execution deadline (${(err as Error).message})`,
    );
    return { outcome: 'restarted' };
  }
  const after = steps.activity();
  if (after.busy || after.started !== before.started) return { outcome: 'not-judged', report };
  if (report.cores > policy.maxCores || report.runnable > policy.maxRunnable) {
    await steps.restart(
      `code the execution left running (threads) kept using CPU after the execution deadline (${report.cores.toFixed(2)} cores, busy in ${Math.round(report.runnable * 100)}% of samples)`,
    );
    return { outcome: 'restarted', report };
  }
  return { outcome: 'quiet', report };
}
