/** The /api/sessions store, in the current Jupyter shape `{id, path, name, type, kernel}`, in memory. */
import { randomUUID } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { GatewayError } from '../base/errors.js';
import type { KernelModel } from '../kernel/kernel.js';
import type { KernelRegistry } from '../kernel/kernel-registry.js';

export interface SessionModel {
  id: string;
  path: string;
  name: string;
  type: string;
  kernel: KernelModel;
}

interface SessionRow {
  id: string;
  path: string;
  name: string;
  type: string;
  kernelId: string;
}

function str(v: unknown, field: string, required: boolean): string | undefined {
  if (v === undefined || v === null) {
    if (required) throw new GatewayError('BAD_REQUEST', `"${field}" is required`);
    return undefined;
  }
  if (typeof v !== 'string') throw new GatewayError('BAD_REQUEST', `"${field}" must be a string`);
  return v;
}

function kernelRef(v: unknown): { id?: string; name?: string } {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v))
    throw new GatewayError('BAD_REQUEST', '"kernel" must be an object');
  const o = v as Record<string, unknown>;
  const out: { id?: string; name?: string } = {};
  const id = str(o.id, 'kernel.id', false);
  const name = str(o.name, 'kernel.name', false);
  if (id !== undefined) out.id = id;
  if (name !== undefined) out.name = name;
  return out;
}

export class SessionStore {
  #rows = new Map<string, SessionRow>();

  /**
   * @param file - where sessions are kept across gateway restarts (kernels survive them too);
   *   undefined keeps them in memory only.
   */
  constructor(
    private readonly kernels: KernelRegistry,
    private readonly file?: string,
  ) {
    if (!file) return;
    try {
      const rows = JSON.parse(readFileSync(file, 'utf8')) as unknown;
      if (!Array.isArray(rows)) return;
      for (const r of rows as Partial<SessionRow>[]) {
        if ([r.id, r.path, r.name, r.type, r.kernelId].every((v) => typeof v === 'string')) {
          this.#rows.set(r.id as string, r as SessionRow);
        }
      }
    } catch {
      // No file yet, or unreadable: start empty.
    }
  }

  #save(): void {
    if (!this.file) return;
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify([...this.#rows.values()]), { mode: 0o600 });
    renameSync(tmp, this.file);
  }

  #model(row: SessionRow): SessionModel | undefined {
    const k = this.kernels.find(row.kernelId);
    if (!k) return undefined;
    return { id: row.id, path: row.path, name: row.name, type: row.type, kernel: k.model() };
  }

  /** Sessions whose kernel still exists; rows of vanished kernels are dropped. */
  list(): SessionModel[] {
    const out: SessionModel[] = [];
    for (const row of [...this.#rows.values()]) {
      const m = this.#model(row);
      if (m) out.push(m);
      else this.#rows.delete(row.id);
    }
    return out;
  }

  get(id: string): SessionModel {
    const row = this.#rows.get(id);
    const m = row && this.#model(row);
    if (!m) throw new GatewayError('SESSION_NOT_FOUND', `Session not found: ${id}`);
    return m;
  }

  /** Ids of the sessions bound to a kernel. */
  idsForKernel(kernelId: string): string[] {
    return [...this.#rows.values()].filter((r) => r.kernelId === kernelId).map((r) => r.id);
  }

  /** The kernel id of a session, if it exists. */
  kernelOf(id: string): string | undefined {
    return this.#rows.get(id)?.kernelId;
  }

  async create(body: Record<string, unknown>): Promise<SessionModel> {
    // Legacy clients send {notebook: {path}}.
    const notebook = body.notebook as Record<string, unknown> | undefined;
    const path = str(body.path ?? notebook?.path, 'path', true) ?? '';
    const type = str(body.type, 'type', false) ?? (notebook ? 'notebook' : undefined);
    if (type === undefined) throw new GatewayError('BAD_REQUEST', '"type" is required');
    const name = str(body.name, 'name', false) ?? '';
    for (const row of this.#rows.values()) {
      if (row.path === path && this.kernels.find(row.kernelId)) return this.get(row.id);
    }
    const ref = kernelRef(body.kernel);
    let kernelId: string;
    if (ref.id !== undefined) {
      kernelId = this.kernels.get(ref.id).id;
    } else {
      kernelId = (await this.kernels.start({ name: ref.name })).id;
    }
    const row: SessionRow = { id: randomUUID(), path, name, type, kernelId };
    this.#rows.set(row.id, row);
    this.#save();
    return this.get(row.id);
  }

  async patch(id: string, body: Record<string, unknown>): Promise<SessionModel> {
    const row = this.#rows.get(id);
    if (!row) throw new GatewayError('SESSION_NOT_FOUND', `Session not found: ${id}`);
    const path = str(body.path, 'path', false);
    const name = str(body.name, 'name', false);
    const type = str(body.type, 'type', false);
    const ref = kernelRef(body.kernel);
    if (ref.id !== undefined) row.kernelId = this.kernels.get(ref.id).id;
    else if (ref.name !== undefined)
      row.kernelId = (await this.kernels.start({ name: ref.name })).id;
    if (path !== undefined) row.path = path;
    if (name !== undefined) row.name = name;
    if (type !== undefined) row.type = type;
    this.#save();
    return this.get(id);
  }

  /** Deletes a session and shuts its kernel down (as Jupyter Server does). */
  async delete(id: string): Promise<void> {
    const row = this.#rows.get(id);
    if (!row) throw new GatewayError('SESSION_NOT_FOUND', `Session not found: ${id}`);
    this.#rows.delete(id);
    this.#save();
    if (this.kernels.find(row.kernelId)) await this.kernels.shutdown(row.kernelId);
  }
}
