/**
 * Log lines that a sandbox can provoke: every string it chose is cut to a bounded length, and
 * warnings about one kernel are rate-limited, so a kernel cannot flood the gateway's log (a 1 MiB
 * msg_type once made one 1 MB line per message per client).
 */

/** Longest kernel-chosen string written into a log field, in UTF-16 code units. */
export const LOG_FIELD_MAX = 200;

/** Cuts a string to {@link LOG_FIELD_MAX} characters, saying how long it was. */
export function clip(value: string, max = LOG_FIELD_MAX): string {
  return value.length <= max ? value : `${value.slice(0, max)}…[${value.length} chars]`;
}

/** A copy of `fields` whose string values (top level) are clipped; other values pass as they are. */
export function clipFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = typeof v === 'string' ? clip(v) : v;
  return out;
}

export interface LogRateOptions {
  /** Lines allowed per interval. */
  perInterval: number;
  intervalMs: number;
  now?: () => number;
}

/**
 * Allows `perInterval` lines per interval and counts the rest. The first line allowed after some
 * were suppressed learns how many, so the log says what it left out.
 */
export class LogRateLimit {
  #start = Number.NEGATIVE_INFINITY;
  #used = 0;
  #suppressed = 0;
  readonly #now: () => number;

  constructor(private readonly opts: LogRateOptions) {
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Takes one line: `undefined` when it must be suppressed, else the number of lines suppressed
   * since the last one allowed (usually 0).
   */
  take(): number | undefined {
    const now = this.#now();
    if (now - this.#start >= this.opts.intervalMs) {
      this.#start = now;
      this.#used = 0;
    }
    if (this.#used >= this.opts.perInterval) {
      this.#suppressed++;
      return undefined;
    }
    this.#used++;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    return suppressed;
  }
}
