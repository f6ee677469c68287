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
