/**
 * IOPub output rate limit (as Jupyter Server's iopub_msg_rate_limit / iopub_data_rate_limit):
 * over a window, output messages beyond a message rate or a byte rate are dropped and the client
 * is told once per burst. The window restarts when the kernel goes idle.
 */

/** Output messages the limit may drop; status, errors, execute_input and comms always pass. */
const LIMITED = new Set([
  'stream',
  'display_data',
  'update_display_data',
  'execute_result',
  'clear_output',
]);

export interface RateLimitOptions {
  /** Messages per second (0: no message limit). */
  msgsPerSecond: number;
  /** Bytes per second of limited messages (0: no byte limit). */
  bytesPerSecond: number;
  windowMs: number;
  now?: () => number;
}

export type RateVerdict = 'pass' | 'drop' | 'drop-and-notify';

export class IopubRateLimit {
  #start = 0;
  #msgs = 0;
  #bytes = 0;
  #notified = false;
  readonly #now: () => number;

  constructor(private readonly opts: RateLimitOptions) {
    this.#now = opts.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.opts.msgsPerSecond > 0 || this.opts.bytesPerSecond > 0;
  }

  /** Decides on one iopub message of `msgType` carrying `bytes` bytes. */
  check(msgType: string, bytes: number): RateVerdict {
    if (!this.enabled || !LIMITED.has(msgType)) return 'pass';
    const now = this.#now();
    if (now - this.#start >= this.opts.windowMs) this.reset(now);
    this.#msgs++;
    this.#bytes += bytes;
    const seconds = this.opts.windowMs / 1000;
    const over =
      (this.opts.msgsPerSecond > 0 && this.#msgs > this.opts.msgsPerSecond * seconds) ||
      (this.opts.bytesPerSecond > 0 && this.#bytes > this.opts.bytesPerSecond * seconds);
    if (!over) return 'pass';
    if (this.#notified) return 'drop';
    this.#notified = true;
    return 'drop-and-notify';
  }

  /** Starts a new window (the kernel went idle, or the window ran out). */
  reset(now = this.#now()): void {
    this.#start = now;
    this.#msgs = 0;
    this.#bytes = 0;
    this.#notified = false;
  }
}
