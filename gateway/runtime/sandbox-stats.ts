/**
 * Memory and CPU of live sandboxes now, from Docker's stats (GET /api/security/stats). Docker
 * answers a stats call slowly and one container at a time, so every sandbox is asked at once with
 * a deadline, concurrent callers share one round, and CPU is the rate between this round's
 * cumulative CPU time and the previous round's (Docker's one-shot reading carries no CPU rate).
 */
import type Docker from 'dockerode';

export interface SandboxStat {
  container_id: string;
  /** Memory in use as Docker's CLI counts it (page cache that can be dropped excluded). */
  memory_bytes: number;
  memory_limit_bytes: number;
  /** Cores in use since the previous reading; null on a container's first reading. */
  cpu_cores: number | null;
  /** When Docker read the numbers (ISO). */
  read_at: string;
}

export interface SandboxStatsReport {
  stats: SandboxStat[];
  /** Containers whose stats did not arrive in time or failed (their rows show no figures). */
  missing: string[];
}

interface CpuSample {
  usageNs: number;
  readMs: number;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function obj(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
}

/** Parses one Docker stats reading (cgroup v1 or v2); undefined when its shape is not one. */
export function parseDockerStats(
  raw: unknown,
): { usageNs: number; readMs: number; memory: number; limit: number } | undefined {
  const r = obj(raw);
  const readMs = typeof r.read === 'string' ? Date.parse(r.read) : NaN;
  const usageNs = num(obj(obj(r.cpu_stats).cpu_usage).total_usage);
  const mem = obj(r.memory_stats);
  const usage = num(mem.usage);
  const limit = num(mem.limit);
  if (!Number.isFinite(readMs) || usageNs === undefined || usage === undefined) return undefined;
  if (limit === undefined) return undefined;
  const detail = obj(mem.stats);
  // What `docker stats` shows: usage less inactive page cache (v2: inactive_file; v1: total_).
  const cache = num(detail.inactive_file) ?? num(detail.total_inactive_file) ?? 0;
  return { usageNs, readMs, memory: Math.max(0, usage - cache), limit };
}

export class SandboxStats {
  readonly #previous = new Map<string, CpuSample>();
  #round: Promise<SandboxStatsReport> | undefined;

  constructor(
    private readonly docker: Docker,
    private readonly timeoutMs = 3000,
  ) {}

  /** Stats of the given containers; callers during a round get that round's answer. */
  read(containerIds: readonly string[]): Promise<SandboxStatsReport> {
    this.#round ??= this.#read(containerIds).finally(() => {
      this.#round = undefined;
    });
    return this.#round;
  }

  async #read(ids: readonly string[]): Promise<SandboxStatsReport> {
    const abort = new AbortController();
    const timer = setTimeout(() => {
      abort.abort();
    }, this.timeoutMs);
    try {
      // dockerode passes abortSignal to the request though its typings do not list it.
      const opts = { stream: false as const, 'one-shot': true, abortSignal: abort.signal };
      const results = await Promise.allSettled(
        ids.map((id) => this.docker.getContainer(id).stats(opts)),
      );
      const stats: SandboxStat[] = [];
      const missing: string[] = [];
      results.forEach((r, i) => {
        const id = ids[i];
        if (id === undefined) return;
        const s = r.status === 'fulfilled' ? parseDockerStats(r.value) : undefined;
        if (!s) {
          missing.push(id);
          return;
        }
        const prev = this.#previous.get(id);
        this.#previous.set(id, { usageNs: s.usageNs, readMs: s.readMs });
        const dtMs = prev ? s.readMs - prev.readMs : 0;
        stats.push({
          container_id: id,
          memory_bytes: s.memory,
          memory_limit_bytes: s.limit,
          cpu_cores:
            prev && dtMs > 0 ? Math.max(0, (s.usageNs - prev.usageNs) / (dtMs * 1e6)) : null,
          read_at: new Date(s.readMs).toISOString(),
        });
      });
      // Forget containers that are gone, so the map stays as small as the sandbox set.
      const live = new Set(ids);
      for (const id of this.#previous.keys()) if (!live.has(id)) this.#previous.delete(id);
      return { stats, missing };
    } finally {
      clearTimeout(timer);
    }
  }
}
