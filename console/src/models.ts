/**
 * The shapes the page reads from the gateway, parsed field by field: a field of the wrong type
 * becomes "unknown" on the page instead of breaking it.
 */

export type Json = Record<string, unknown>;

export function obj(v: unknown): Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : {};
}

export function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

export function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

export function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export function bool(v: unknown): boolean | null {
  return typeof v === 'boolean' ? v : null;
}

export interface Kernel {
  id: string;
  name: string;
  state: string;
  connections: number | null;
  reason: string | null;
}

export function parseKernels(v: unknown): Kernel[] {
  return arr(v).flatMap((k) => {
    const o = obj(k);
    const id = str(o.id);
    if (id === null) return [];
    return [
      {
        id,
        name: str(o.name) ?? '',
        state: str(o.execution_state) ?? 'unknown',
        connections: num(o.connections),
        reason: str(o.reason),
      },
    ];
  });
}

export interface Container {
  kernelId: string | null;
  containerId: string;
  pooled: boolean;
  created: string | null;
  state: string;
}

export function parseContainers(v: unknown): Container[] {
  return arr(v).flatMap((c) => {
    const o = obj(c);
    const containerId = str(o.container_id);
    if (containerId === null) return [];
    return [
      {
        kernelId: str(o.kernel_id),
        containerId,
        pooled: o.pooled === true,
        created: str(o.created),
        state: str(o.state) ?? 'unknown',
      },
    ];
  });
}

export interface Stat {
  memoryBytes: number | null;
  memoryLimitBytes: number | null;
  cpuCores: number | null;
}

export interface Stats {
  cpuLimitCores: number | null;
  /** Keyed by container id. */
  byContainer: Map<string, Stat>;
}

export function parseStats(v: unknown): Stats {
  const o = obj(v);
  const byContainer = new Map<string, Stat>();
  for (const s of arr(o.stats)) {
    const e = obj(s);
    const id = str(e.container_id);
    if (id === null) continue;
    byContainer.set(id, {
      memoryBytes: num(e.memory_bytes),
      memoryLimitBytes: num(e.memory_limit_bytes),
      cpuCores: num(e.cpu_cores),
    });
  }
  return { cpuLimitCores: num(o.cpu_limit_cores), byContainer };
}

export interface Death {
  kernelId: string;
  cause: string;
  reason: string;
  exitCode: number | null;
  at: Date | null;
}

export function parseDeaths(v: unknown): Death[] {
  return arr(obj(v).deaths).flatMap((d) => {
    const o = obj(d);
    const kernelId = str(o.kernel_id);
    if (kernelId === null) return [];
    const at = str(o.at);
    const date = at === null ? null : new Date(at);
    return [
      {
        kernelId,
        cause: str(o.cause) ?? 'unknown',
        reason: str(o.reason) ?? '',
        exitCode: num(o.exit_code),
        at: date && !Number.isNaN(date.getTime()) ? date : null,
      },
    ];
  });
}
