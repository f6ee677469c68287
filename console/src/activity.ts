/**
 * Counters from /metrics over the last minutes: the page keeps each scrape's totals and draws how
 * much each counter grew between scrapes as a small bar chart.
 */

/** Sums every sample of each metric name in a Prometheus text exposition. */
export function sumByName(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})? (\S+)$/.exec(line);
    if (!m?.[1] || m[2] === undefined) continue;
    const v = Number(m[2]);
    if (Number.isFinite(v)) out.set(m[1], (out.get(m[1]) ?? 0) + v);
  }
  return out;
}

export interface Series {
  metric: string;
  label: string;
  /** Growth of this counter is bad news (timeouts, kills): drawn in red. */
  alarm: boolean;
}

export const SERIES: readonly Series[] = [
  { metric: 'aido_executions_total', label: 'Executions', alarm: false },
  { metric: 'aido_execution_timeouts_total', label: 'Timeouts', alarm: true },
  { metric: 'aido_kernel_kills_total', label: 'Kills', alarm: true },
  { metric: 'aido_kernel_ooms_total', label: 'OOM kills', alarm: true },
];

interface Scrape {
  at: number;
  totals: Map<string, number>;
}

export class ActivityHistory {
  readonly #scrapes: Scrape[] = [];

  constructor(readonly windowMs = 10 * 60_000) {}

  add(totals: Map<string, number>, at = Date.now()): void {
    this.#scrapes.push({ at, totals });
    while (this.#scrapes.length > 2 && (this.#scrapes[0]?.at ?? at) < at - this.windowMs)
      this.#scrapes.shift();
  }

  /** Growth between consecutive scrapes (a counter reset, as after a restart, counts as 0). */
  deltas(metric: string): number[] {
    const out: number[] = [];
    for (let i = 1; i < this.#scrapes.length; i++) {
      const a = this.#scrapes[i - 1]?.totals.get(metric) ?? 0;
      const b = this.#scrapes[i]?.totals.get(metric) ?? 0;
      out.push(Math.max(0, b - a));
    }
    return out;
  }

  total(metric: string): number | null {
    return this.#scrapes.at(-1)?.totals.get(metric) ?? null;
  }

  /** Milliseconds the history covers. */
  get spanMs(): number {
    const first = this.#scrapes[0];
    const last = this.#scrapes.at(-1);
    return first && last ? last.at - first.at : 0;
  }
}
