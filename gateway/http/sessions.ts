/** The /api/sessions store, in the current Jupyter shape `{id, path, name, type, kernel}`, in memory. */
import { randomUUID } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { GatewayError } from '../base/errors.js';
import { NOT_AN_OBJECT } from './request-body.js';
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

/** An optional string field; null is absent, as Jupyter Server treats it. */
const str = (field: string) =>
  z
    .string({ error: `"${field}" must be a string` })
    .nullish()
    .transform((v) => v ?? undefined);

/** `kernel: {id?, name?}`: an existing kernel, or the kernelspec of a new one. */
const KernelRef = z
  .object(
    { id: str('kernel.id'), name: str('kernel.name') },
    { error: '"kernel" must be an object' },
  )
  .nullish()
  .transform((v): { id?: string | undefined; name?: string | undefined } => v ?? {});

const SessionFields = { name: str('name'), type: str('type'), kernel: KernelRef };

/** POST /api/sessions. Legacy clients send `{notebook: {path}}` and no type. */
export const SessionCreateBody = z
  .object(
    {
      ...SessionFields,
      path: str('path'),
      notebook: z
        .object({ path: str('path') }, { error: '"notebook" must be an object' })
        .nullish(),
    },
    { error: NOT_AN_OBJECT },
  )
  .transform((b, ctx) => {
    const path = b.path ?? b.notebook?.path;
    const type = b.type ?? (b.notebook ? 'notebook' : undefined);
    if (path === undefined || type === undefined) {
      const missing = path === undefined ? 'path' : 'type';
      ctx.issues.push({ code: 'custom', message: `"${missing}" is required`, input: b });
      return z.NEVER;
    }
    return { path, type, name: b.name ?? '', kernel: b.kernel };
  });

/** PATCH /api/sessions/{id}: any of path, name, type, and a kernel to move to. */
export const SessionPatchBody = z.object(
  { ...SessionFields, path: str('path') },
  { error: NOT_AN_OBJECT },
);

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

  async create(body: z.output<typeof SessionCreateBody>): Promise<SessionModel> {
    const { path, type, name, kernel: ref } = body;
    for (const row of this.#rows.values()) {
      if (row.path === path && this.kernels.find(row.kernelId)) return this.get(row.id);
    }
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

  async patch(id: string, body: z.output<typeof SessionPatchBody>): Promise<SessionModel> {
    const row = this.#rows.get(id);
    if (!row) throw new GatewayError('SESSION_NOT_FOUND', `Session not found: ${id}`);
    const { path, name, type, kernel: ref } = body;
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
