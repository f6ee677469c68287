/**
 * IOPub output rate limit (as Jupyter Server's iopub_msg_rate_limit / iopub_data_rate_limit):
 * over a window, iopub messages beyond a message rate or a byte rate are dropped and the client is
 * told once per burst. Every message type counts, since a kernel that signs its own messages can
 * flood with any of them; only what the caller marks `exempt` (the busy/idle of a request the
 * gateway has pending, which clients wait for) passes a full window.
 *
 * The window restarts when it runs out, or early on a real idle. "Real" cannot mean "signed": the
 * kernel signs its own forgeries. So the caller resets only on the first idle parented to an
 * execute_request the gateway actually sent and has not yet seen end: a forged idle buys nothing,
 * and a real one at most one fresh window per execution the client asked for. No floor on how soon
 * after the window opened by default: a short burst that hit the limit must not cost the next
 * execution its output (`minResetMs` can add one).
 */

export interface RateLimitOptions {
  /** Messages per second (0: no message limit). */
  msgsPerSecond: number;
  /** Bytes per second (0: no byte limit). */
  bytesPerSecond: number;
  windowMs: number;
  /** An idle reset earlier than this after the window started is ignored (default 0). */
  minResetMs?: number;
  now?: () => number;
}

export type RateVerdict = 'pass' | 'drop' | 'drop-and-notify';

export class IopubRateLimit {
  #start = Number.NEGATIVE_INFINITY;
  #msgs = 0;
  #bytes = 0;
  #notified = false;
  readonly #now: () => number;
  readonly #minResetMs: number;

  constructor(private readonly opts: RateLimitOptions) {
    this.#now = opts.now ?? Date.now;
    this.#minResetMs = opts.minResetMs ?? 0;
  }

  get enabled(): boolean {
    return this.opts.msgsPerSecond > 0 || this.opts.bytesPerSecond > 0;
  }

  /**
   * Decides on one iopub message of `bytes` bytes (all its parts). An `exempt` message is counted
   * but never dropped.
   */
  check(bytes: number, exempt = false): RateVerdict {
    if (!this.enabled) return 'pass';
    const now = this.#now();
    if (now - this.#start >= this.opts.windowMs) this.#restart(now);
    this.#msgs++;
    this.#bytes += bytes;
    const seconds = this.opts.windowMs / 1000;
    const over =
      (this.opts.msgsPerSecond > 0 && this.#msgs > this.opts.msgsPerSecond * seconds) ||
      (this.opts.bytesPerSecond > 0 && this.#bytes > this.opts.bytesPerSecond * seconds);
    if (!over || exempt) return 'pass';
    if (this.#notified) return 'drop';
    this.#notified = true;
    return 'drop-and-notify';
  }

  /**
   * The execution the window belongs to ended (a real idle): start a new window, unless the
   * current one is younger than `minResetMs`. Returns whether it restarted.
   */
  idle(): boolean {
    const now = this.#now();
    if (now - this.#start < this.#minResetMs) return false;
    this.#restart(now);
    return true;
  }

  #restart(now: number): void {
    this.#start = now;
    this.#msgs = 0;
    this.#bytes = 0;
    this.#notified = false;
  }
}
