/** Small statistics and reporting helpers shared by the benchmarks. */
import { readFileSync } from 'node:fs';

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(samples: readonly number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  const r = (x: number): number => Math.round(x * 1000) / 1000;
  return {
    n: s.length,
    min: r(s[0] ?? Number.NaN),
    p50: r(percentile(s, 50)),
    p95: r(percentile(s, 95)),
    p99: r(percentile(s, 99)),
    max: r(s[s.length - 1] ?? Number.NaN),
    mean: r(sum / Math.max(1, s.length)),
  };
}

/** Prints rows as an aligned table. */
export function printTable(title: string, header: string[], rows: (string | number)[][]): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => c.padStart(widths[i] ?? 0)).join('  ');
  process.stdout.write(
    `\n${title}\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`,
  );
  for (const r of cells.slice(1)) process.stdout.write(`${line(r)}\n`);
}

/** Progress on stderr, so stdout stays the table and the JSON line. */
export function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/**
 * CFS throttling counters of a container's cgroup (cgroup v1 cgroupfs, v2 cgroupfs or systemd), or
 * undefined when none of the usual paths exists. A kernel over its CPU quota is paused until the
 * next period (100 ms), which shows up as tail latency.
 */
export function cpuThrottling(
  containerId: string,
): { periods: number; throttled: number; throttledMs: number } | undefined {
  const candidates = [
    `/sys/fs/cgroup/cpu/docker/${containerId}/cpu.stat`,
    `/sys/fs/cgroup/cpu,cpuacct/docker/${containerId}/cpu.stat`,
    `/sys/fs/cgroup/docker/${containerId}/cpu.stat`,
    `/sys/fs/cgroup/system.slice/docker-${containerId}.scope/cpu.stat`,
  ];
  for (const file of candidates) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const get = (key: string): number =>
      Number(new RegExp(`^${key} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    // v1: throttled_time in ns; v2: throttled_usec.
    const throttledMs = text.includes('throttled_usec')
      ? get('throttled_usec') / 1000
      : get('throttled_time') / 1e6;
    return { periods: get('nr_periods'), throttled: get('nr_throttled'), throttledMs };
  }
  return undefined;
}

/** Clock ticks per second of /proc's utime and stime (USER_HZ; 100 on every Linux we run on). */
const USER_HZ = 100;

/**
 * CPU time (user + system, ms) a process has used so far, from /proc/<pid>/stat, or undefined when
 * it cannot be read (not Linux, or the process is gone). Resolution is one clock tick (10 ms), so
 * measure over many operations.
 */
export function processCpuMs(pid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line, 11 and 12 after the name and state.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
  return ((utime + stime) * 1000) / USER_HZ;
}
