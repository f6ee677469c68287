/**
 * One agent execution: env handed over, the code run through the kernel's bridge as an in-process
 * client (run-code.ts), the workspace snapshots around it, and the document that answers the
 * request (agent-outputs.ts) with the files it created or changed in /workspace.
 */
import type { Timers } from '../base/deadline.js';
import { GatewayError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import { envWriterArgv, handOverEnv } from '../kernel/env-handover.js';
import type { Kernel } from '../kernel/kernel.js';
import {
  imagesOf,
  type AgentEvent,
  type Artifact,
  type ExecutionDocument,
} from './agent-outputs.js';
import { assertRunnable, runCode } from './run-code.js';
import {
  changedFiles,
  mimeTypeOf,
  type SandboxExec,
  type WorkspaceFiles,
  type WorkspaceSnapshot,
} from './workspace-files.js';

export * from './agent-outputs.js';
export { assertRunnable, runCode, type RunOptions, type RunOutcome } from './run-code.js';

/** The data file an agent request's env travels in (the loader removes it). */
const AGENT_ENV_FILE = 'agent-env.json';

/** What an execute request asks for (already validated). */
export interface AgentRequest {
  code: string;
  timeoutMs?: number;
  /** Allow-listed variables set in the kernel's os.environ before the code runs. */
  env?: Record<string, string>;
}

export interface AgentExecutorOptions {
  files: WorkspaceFiles;
  exec: SandboxExec;
  logger: Logger;
  /** Output kept per execution (stream text and MIME bundles). */
  maxOutputBytes?: number;
  /** The timers behind timeout_s (Node's by default). */
  timers?: Timers;
}

/** Artifacts listed per execution at most. */
const MAX_ARTIFACTS = 100;
/** One-shot executions inline artifacts up to these sizes (their sandbox is removed afterwards). */
const INLINE_FILE_BYTES = 2 * 1024 ** 2;
const INLINE_TOTAL_BYTES = 8 * 1024 ** 2;

/** The URL that downloads a workspace file of a kernel. */
export function fileUrl(kernelId: string, path: string): string {
  return `/api/kernels/${kernelId}/files/${path.split('/').map(encodeURIComponent).join('/')}`;
}

/** Runs agent executions: env, the code, the workspace snapshots around it, the document. */
export class AgentExecutor {
  readonly #envLocks = new Map<string, Promise<void>>();
  readonly #maxOutputBytes: number;

  constructor(private readonly opts: AgentExecutorOptions) {
    this.#maxOutputBytes = opts.maxOutputBytes ?? 16 * 1024 ** 2;
  }

  /**
   * Executes on `kernel`. `artifacts: 'url'` lists changed files with download URLs; `'inline'`
   * (one-shot) carries small files' bytes instead.
   */
  async execute(
    kernel: Kernel,
    req: AgentRequest,
    opts: {
      artifacts: 'url' | 'inline';
      onEvent?: (e: AgentEvent) => void;
      signal?: AbortSignal;
    },
  ): Promise<ExecutionDocument> {
    const sandboxId = assertRunnable(kernel);
    const log = this.opts.logger.child({ kernel: kernel.id });
    let before: WorkspaceSnapshot | undefined;
    let artifactsError: string | undefined;
    try {
      before = await this.opts.files.snapshot(sandboxId);
    } catch (err) {
      artifactsError = `the workspace could not be listed before the execution: ${(err as Error).message}`;
      log.warn({ err: String(err) }, 'workspace snapshot failed');
    }
    if (req.env && Object.keys(req.env).length > 0)
      await this.#applyEnv(kernel, sandboxId, req.env, opts.signal);
    const run = await runCode(kernel, {
      code: req.code,
      maxOutputBytes: this.#maxOutputBytes,
      ...(req.timeoutMs !== undefined ? { timeoutMs: req.timeoutMs } : {}),
      ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(this.opts.timers ? { timers: this.opts.timers } : {}),
    });

    let artifacts: Artifact[] = [];
    let artifactsTruncated = false;
    if (before) {
      if (kernel.sandboxId !== sandboxId) {
        artifactsError = 'the sandbox was replaced during the execution; its workspace is gone';
      } else {
        try {
          const after = await this.opts.files.snapshot(sandboxId);
          const changed = changedFiles(before, after);
          artifactsTruncated = changed.length > MAX_ARTIFACTS || after.truncated;
          artifacts = await this.#artifacts(
            kernel.id,
            sandboxId,
            changed.slice(0, MAX_ARTIFACTS),
            opts.artifacts,
          );
        } catch (err) {
          artifactsError = `the workspace could not be listed after the execution: ${(err as Error).message}`;
          log.warn({ err: String(err) }, 'workspace snapshot failed');
        }
      }
    }

    // Field order is the order a reader wants: what ran where, how it ended, then the details.
    const doc: ExecutionDocument = {
      ...(opts.artifacts === 'url' ? { kernel_id: kernel.id } : {}),
      status: run.status,
      ...(run.error ? { error: run.error } : {}),
      execution_count: run.execution_count,
      outputs: run.outputs,
      ...(run.outputs_truncated ? { outputs_truncated: true as const } : {}),
      artifacts,
      ...(artifactsError !== undefined ? { artifacts_error: artifactsError } : {}),
      ...(artifactsTruncated ? { artifacts_truncated: true as const } : {}),
      images: imagesOf(run.outputs),
      duration_ms: run.duration_ms,
    };
    opts.onEvent?.({ event: 'done', data: doc });
    return doc;
  }

  async #artifacts(
    kernelId: string,
    sandboxId: string,
    changed: { path: string; size: number; change: 'created' | 'modified' }[],
    mode: 'url' | 'inline',
  ): Promise<Artifact[]> {
    let inlined = 0;
    const out: Artifact[] = [];
    // One deadline for all the reads: the kernel can stop each helper (same uid) until its timeout.
    const deadline = performance.now() + this.opts.files.timeoutMs;
    for (const c of changed) {
      const a: Artifact = {
        path: c.path,
        size: c.size,
        mime_type: mimeTypeOf(c.path),
        change: c.change,
      };
      if (mode === 'url') a.url = fileUrl(kernelId, c.path);
      else if (
        c.size <= INLINE_FILE_BYTES &&
        inlined + c.size <= INLINE_TOTAL_BYTES &&
        performance.now() < deadline
      ) {
        // The file may have grown since the snapshot: read at most what may still be inlined.
        const bytes = await this.opts.files
          .read(sandboxId, c.path, Math.min(INLINE_FILE_BYTES, INLINE_TOTAL_BYTES - inlined))
          .catch(() => undefined);
        if (bytes) {
          a.content_base64 = bytes.toString('base64');
          inlined += bytes.length;
        }
      }
      out.push(a);
    }
    return out;
  }

  /**
   * Sets env in the kernel's os.environ by the data-file route: the values go into a file through
   * exec's stdin and fixed code loads it; nothing is spliced into code. One at a time per kernel,
   * since the file's name is fixed.
   */
  async #applyEnv(
    kernel: Kernel,
    sandboxId: string,
    env: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const previous = this.#envLocks.get(kernel.id) ?? Promise.resolve();
    let release = (): void => undefined;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.#envLocks.set(kernel.id, tail);
    await previous;
    try {
      await handOverEnv(env, {
        file: AGENT_ENV_FILE,
        removeAfter: true,
        write: async (json) => {
          const w = await this.opts
            .exec(sandboxId, envWriterArgv(AGENT_ENV_FILE), json)
            .catch((err: unknown) => {
              throw new GatewayError('SANDBOX_EXEC_FAILED', 'could not hand env to the sandbox', {
                cause: err,
              });
            });
          if (w.exitCode !== 0)
            throw new GatewayError(
              'SANDBOX_EXEC_FAILED',
              `could not hand env to the sandbox (exit code ${w.exitCode})`,
            );
        },
        load: async (code) => {
          const r = await runCode(kernel, {
            code,
            silent: true,
            maxOutputBytes: 64 * 1024,
            ...(signal ? { signal } : {}),
            ...(this.opts.timers ? { timers: this.opts.timers } : {}),
          });
          if (r.status !== 'ok')
            throw new GatewayError(
              'SANDBOX_EXEC_FAILED',
              `could not apply env in the kernel (${r.error?.ename ?? r.status})`,
            );
        },
      });
    } finally {
      release();
      if (this.#envLocks.get(kernel.id) === tail) this.#envLocks.delete(kernel.id);
    }
  }
}
