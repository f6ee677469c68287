/**
 * One agent execution: the code runs through the kernel's bridge as an in-process client (its own
 * client session `agent-<uuid>`, so WebSocket clients of the kernel see its output on iopub, and the
 * execution deadline and its ExecutionTimeout/ExecutionKilled replies apply), its output is
 * collected into one document (streams merged, MIME bundles, errors with plain-text tracebacks,
 * the files it created or changed in /workspace, the images it displayed), and each output can be
 * reported as it happens.
 */
import { randomUUID } from 'node:crypto';
import { createMessage, toRaw, type RawMessage } from '../../protocol/index.js';
import type { ClientChannels, ClientSink } from '../channels/client-channels.js';
import { GatewayError } from '../base/errors.js';
import type { KernelSession } from '../kernel/kernel-session.js';
import type { Logger } from '../base/logger.js';
import { parseJsonObject, peekParent } from '../channels/parent-peek.js';
import {
  changedFiles,
  mimeTypeOf,
  type SandboxExec,
  type WorkspaceFiles,
  type WorkspaceSnapshot,
} from './workspace-files.js';

/** How an execution ended. */
export type AgentStatus = 'ok' | 'error' | 'timeout' | 'killed';

/** A MIME bundle: MIME type → data (base64 text for binary types). */
export type MimeBundle = Record<string, unknown>;

/** Outputs, in nbformat's shapes. */
export type AgentOutput =
  | { output_type: 'stream'; name: 'stdout' | 'stderr'; text: string }
  | {
      output_type: 'display_data';
      data: MimeBundle;
      metadata: Record<string, unknown>;
      display_id?: string;
    }
  | {
      output_type: 'execute_result';
      execution_count: number | null;
      data: MimeBundle;
      metadata: Record<string, unknown>;
    }
  | {
      output_type: 'error';
      ename: string;
      evalue: string;
      traceback: string[];
      /** The traceback as one text without ANSI colour codes. */
      traceback_text: string;
    };

/** A file the execution created or changed in /workspace. */
export interface Artifact {
  /** Relative to /workspace. */
  path: string;
  size: number;
  mime_type: string;
  change: 'created' | 'modified';
  /** Where to download it (kernel executions). */
  url?: string;
  /** Its bytes (one-shot executions, whose sandbox is gone afterwards; small files only). */
  content_base64?: string;
}

/** An image an output displayed: PNG as base64, SVG as text. */
export interface AgentImage {
  mime_type: 'image/png' | 'image/svg+xml';
  data: string;
  /** Index into `outputs`. */
  output_index: number;
}

/** The answer to an execute request. */
export interface ExecutionDocument {
  /** The kernel that ran it (not for one-shot executions: that sandbox is gone). */
  kernel_id?: string;
  status: AgentStatus;
  /** For every status but ok: what ended it. */
  error?: { ename: string; evalue: string };
  execution_count: number | null;
  outputs: AgentOutput[];
  /** Output past the size cap was dropped. */
  outputs_truncated?: true;
  artifacts: Artifact[];
  /** Why artifacts could not be determined (the listing is then empty). */
  artifacts_error?: string;
  artifacts_truncated?: true;
  images: AgentImage[];
  duration_ms: number;
}

/** What a streaming client is sent: each output as it arrives, then the whole document. */
export type AgentEvent =
  | { event: AgentOutput['output_type']; data: AgentOutput }
  | { event: 'clear_output'; data: { wait: boolean } }
  | {
      event: 'update_display_data';
      data: { display_id: string; data: MimeBundle; metadata: Record<string, unknown> };
    }
  | { event: 'done'; data: ExecutionDocument };

const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b[@-Z\\-_]/g;

/** Removes ANSI escape sequences (IPython colours its tracebacks). */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

function str(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : '')).join('');
  return '';
}

function obj(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : {};
}

function displayIdOf(content: Record<string, unknown>): string | undefined {
  const id = obj(content.transient).display_id;
  return typeof id === 'string' ? id : undefined;
}

/** The iopub types whose content becomes an output (and counts against the output limit). */
const OUTPUT_TYPES = new Set(['stream', 'display_data', 'execute_result', 'error']);

/**
 * Turns an execution's iopub messages into outputs: consecutive stream text of one name merged,
 * `clear_output` and `update_display_data` applied as a notebook would, everything past
 * `maxBytes` dropped (and flagged). `add` returns the event to report as it happens.
 */
export class OutputCollector {
  readonly outputs: AgentOutput[] = [];
  truncated = false;
  #bytes = 0;
  #clearOnNext = false;

  constructor(private readonly maxBytes: number) {}

  /**
   * Most content bytes worth parsing: an output's size in characters is at most its JSON's size
   * in bytes times six (`\u0000` escapes), so bigger content cannot fit and is not parsed.
   */
  get maxContentBytes(): number {
    return this.maxBytes * 6 + 64 * 1024;
  }

  /** An output too big to parse: dropped and flagged like any output past the limit. */
  skipOversized(): void {
    this.truncated = true;
  }

  add(msgType: string, content: Record<string, unknown>): AgentEvent | undefined {
    switch (msgType) {
      case 'stream':
        return this.#push({
          output_type: 'stream',
          name: content.name === 'stderr' ? 'stderr' : 'stdout',
          text: str(content.text),
        });
      case 'display_data': {
        const out: AgentOutput = {
          output_type: 'display_data',
          data: obj(content.data),
          metadata: obj(content.metadata),
        };
        const id = displayIdOf(content);
        if (id !== undefined) out.display_id = id;
        return this.#push(out);
      }
      case 'execute_result':
        return this.#push({
          output_type: 'execute_result',
          execution_count:
            typeof content.execution_count === 'number' ? content.execution_count : null,
          data: obj(content.data),
          metadata: obj(content.metadata),
        });
      case 'error': {
        const traceback = Array.isArray(content.traceback) ? content.traceback.map(str) : [];
        return this.#push({
          output_type: 'error',
          ename: str(content.ename),
          evalue: str(content.evalue),
          traceback,
          traceback_text: stripAnsi(traceback.join('\n')),
        });
      }
      case 'clear_output': {
        const wait = content.wait === true;
        if (wait) this.#clearOnNext = true;
        else this.#clear();
        return { event: 'clear_output', data: { wait } };
      }
      case 'update_display_data': {
        const id = displayIdOf(content);
        if (id === undefined) return undefined;
        const data = obj(content.data);
        const metadata = obj(content.metadata);
        for (const o of this.outputs) {
          if (o.output_type === 'display_data' && o.display_id === id) {
            o.data = data;
            o.metadata = metadata;
          }
        }
        return { event: 'update_display_data', data: { display_id: id, data, metadata } };
      }
      default:
        return undefined;
    }
  }

  #clear(): void {
    this.outputs.length = 0;
    this.#bytes = 0;
    this.#clearOnNext = false;
  }

  #push(out: AgentOutput): AgentEvent | undefined {
    if (this.#clearOnNext) this.#clear();
    const size = out.output_type === 'stream' ? out.text.length : JSON.stringify(out).length;
    if (this.truncated || this.#bytes + size > this.maxBytes) {
      this.truncated = true;
      return undefined;
    }
    this.#bytes += size;
    const last = this.outputs.at(-1);
    if (out.output_type === 'stream' && last?.output_type === 'stream' && last.name === out.name)
      last.text += out.text;
    else this.outputs.push(out.output_type === 'stream' ? { ...out } : out);
    return { event: out.output_type, data: out };
  }
}

/** PNG and SVG payloads of display_data and execute_result outputs. */
export function imagesOf(outputs: readonly AgentOutput[]): AgentImage[] {
  const images: AgentImage[] = [];
  outputs.forEach((o, i) => {
    if (o.output_type !== 'display_data' && o.output_type !== 'execute_result') return;
    const png = str(o.data['image/png']);
    if (png)
      images.push({ mime_type: 'image/png', data: png.replace(/\s+/g, ''), output_index: i });
    const svg = str(o.data['image/svg+xml']);
    if (svg) images.push({ mime_type: 'image/svg+xml', data: svg, output_index: i });
  });
  return images;
}

/** What {@link runCode} needs. */
export interface RunOptions {
  code: string;
  /** Silent executions (the env loader) produce no output and do not count. */
  silent?: boolean;
  /** Per-request limit, from when the kernel starts the execution; then it is interrupted. */
  timeoutMs?: number;
  maxOutputBytes: number;
  onEvent?: (e: AgentEvent) => void;
  /** Aborting (the HTTP client went away) stops collecting; the execution itself runs on. */
  signal?: AbortSignal;
}

/** How a run ended, before artifacts. */
export interface RunOutcome {
  status: AgentStatus;
  execution_count: number | null;
  outputs: AgentOutput[];
  outputs_truncated: boolean;
  error?: { ename: string; evalue: string };
  duration_ms: number;
}

/** Collects one client session's messages into a callback; the kernel session closes it. */
class CollectorSink implements ClientSink {
  constructor(
    private readonly onMessage: (raw: RawMessage) => void,
    private readonly onClose: (reason: string) => void,
  ) {}

  send(raw: RawMessage): boolean {
    this.onMessage(raw);
    return true;
  }

  close(_code: number, reason: string): void {
    this.onClose(reason);
  }
}

/** Throws unless the kernel can take an execution now. */
export function assertRunnable(kernel: KernelSession): string {
  if (kernel.closing)
    throw new GatewayError('KERNEL_NOT_FOUND', `kernel ${kernel.id} is shutting down`);
  if (kernel.executionState === 'dead')
    throw new GatewayError(
      'KERNEL_DEAD',
      `kernel ${kernel.id} is dead${kernel.reason ? `: ${kernel.reason}` : ''}`,
    );
  const sandboxId = kernel.sandboxId;
  if (kernel.executionState === 'restarting' || kernel.executionState === 'starting' || !sandboxId)
    throw new GatewayError('KERNEL_DEAD', `kernel ${kernel.id} is restarting; try again shortly`);
  return sandboxId;
}

function statusOf(
  reply: Record<string, unknown>,
  timedOut: boolean,
): { status: AgentStatus; error?: { ename: string; evalue: string } } {
  if (reply.status === 'ok') return { status: 'ok' };
  if (reply.status === 'aborted')
    return {
      status: 'error',
      error: { ename: 'ExecutionAborted', evalue: 'the kernel aborted the execution' },
    };
  const error = { ename: str(reply.ename), evalue: str(reply.evalue) };
  if (error.ename === 'ExecutionTimeout') return { status: 'timeout', error };
  if (error.ename === 'ExecutionKilled' || error.ename === 'KernelDied')
    return { status: 'killed', error };
  if (timedOut && error.ename === 'KeyboardInterrupt') return { status: 'timeout', error };
  return { status: 'error', error };
}

/**
 * Runs code on a kernel as an in-process client and collects its outputs until the kernel is idle
 * again and has replied. Every message reaches this client (iopub is fanned out), so only those
 * parented to its own request are kept.
 */
export function runCode(kernel: KernelSession, opts: RunOptions): Promise<RunOutcome> {
  assertRunnable(kernel);
  const sessionId = `agent-${randomUUID()}`;
  const request = createMessage({
    msgType: 'execute_request',
    channel: 'shell',
    session: sessionId,
    content: {
      code: opts.code,
      silent: opts.silent ?? false,
      store_history: !(opts.silent ?? false),
      user_expressions: {},
      // input() then raises StdinNotImplementedError in the kernel: nobody could answer it.
      allow_stdin: false,
      stop_on_error: true,
    },
  });
  const msgId = request.header.msg_id;
  const collector = new OutputCollector(opts.maxOutputBytes);
  const timeoutText = (s: number): string =>
    `Execution exceeded the request's timeout_s (${s} s) and was interrupted.`;

  return new Promise<RunOutcome>((resolve, reject) => {
    const started = performance.now();
    // Set once attached; a reply can settle the run from inside receive(), before attachSink's
    // caller could assign a variable.
    const client: { channels?: ClientChannels } = {};
    let reply: Record<string, unknown> | undefined;
    let idle = false;
    let executionCount: number | null = null;
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    let finished = false;

    const cleanup = (how: 'done' | 'abandoned'): void => {
      finished = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      const channels = client.channels;
      if (!channels) return;
      if (how === 'abandoned') {
        // The execution runs on: detach like a dropped socket, so the reply still reaches these
        // channels (settling the kernel's pending request) until they expire.
        channels.detach(sink);
        return;
      }
      channels.close(1000, 'agent execution finished');
      // The session forgets closed channels only on expiry: tell it now.
      kernel.expired(channels);
    };
    const finish = (): void => {
      if (finished || !reply || !idle) return;
      cleanup('done');
      const { status, error } = statusOf(reply, timedOut);
      const outcome: RunOutcome = {
        status,
        execution_count:
          typeof reply.execution_count === 'number' ? reply.execution_count : executionCount,
        outputs: collector.outputs,
        outputs_truncated: collector.truncated,
        duration_ms: Math.round(performance.now() - started),
      };
      if (error) {
        outcome.error =
          status === 'timeout' && error.ename === 'KeyboardInterrupt' && opts.timeoutMs
            ? { ename: 'ExecutionTimeout', evalue: timeoutText(opts.timeoutMs / 1000) }
            : error;
      }
      resolve(outcome);
    };
    function onAbort(): void {
      if (finished) return;
      cleanup('abandoned');
      reject(new GatewayError('BAD_REQUEST', 'the client went away'));
    }
    const startTimer = (): void => {
      if (timer || opts.timeoutMs === undefined) return;
      timer = setTimeout(() => {
        timedOut = true;
        // The kernel's own path: interrupt, then kill after the grace period if it keeps running.
        kernel.interrupt().catch(() => undefined);
      }, opts.timeoutMs);
    };

    const onMessage = (raw: RawMessage): void => {
      if (finished) return;
      // The parent header was bounded by the inbound gate and is parsed once for every watcher.
      if (peekParent(raw.parentHeader).msg_id !== msgId) return;
      const type = raw.header.msg_type;
      if (raw.content.length > collector.maxContentBytes && OUTPUT_TYPES.has(type)) {
        collector.skipOversized();
        return;
      }
      let content = parseJsonObject(raw.content, collector.maxContentBytes);
      if (raw.channel === 'shell') {
        if (type === 'execute_reply') {
          reply = content;
          finish();
        }
        return;
      }
      if (raw.channel !== 'iopub') return;
      if (type === 'status') {
        if (content.execution_state === 'busy') startTimer();
        else if (content.execution_state === 'idle') {
          idle = true;
          finish();
        }
        return;
      }
      if (type === 'execute_input') {
        startTimer();
        if (typeof content.execution_count === 'number') executionCount = content.execution_count;
        return;
      }
      if (type === 'error' && timedOut && content.ename === 'KeyboardInterrupt' && opts.timeoutMs)
        content = {
          ...content,
          ename: 'ExecutionTimeout',
          evalue: timeoutText(opts.timeoutMs / 1000),
        };
      const event = collector.add(type, content);
      if (event) opts.onEvent?.(event);
    };
    const onClose = (reason: string): void => {
      if (finished) return;
      // The kernel settles pending requests before it closes its clients; this is the fallback.
      reply ??= {
        status: 'error',
        ename: 'KernelShutdown',
        evalue: `the kernel session closed: ${reason}`,
      };
      idle = true;
      finish();
    };

    const sink = new CollectorSink(onMessage, onClose);
    if (opts.signal?.aborted) {
      reject(new GatewayError('BAD_REQUEST', 'the client went away'));
      return;
    }
    opts.signal?.addEventListener('abort', onAbort);
    client.channels = kernel.attachSink(sessionId, sink);
    client.channels.receive(toRaw(request));
  });
}

/** Fixed program that stores the env data file (stdin) where the loader reads it. */
const ENV_WRITER = String.raw`
import os, sys
data = sys.stdin.buffer.read()
fd = os.open('/run/kernel/agent-env.json', os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
view = memoryview(data)
while view:
    view = view[os.write(fd, view):]
os.close(fd)
`;

/** Fixed code that loads the env data file into the kernel's os.environ (and removes it). */
const ENV_LOADER = [
  'def _aido_agent_env():',
  '    import json, os',
  "    path = '/run/kernel/agent-env.json'",
  '    try:',
  "        with open(path, encoding='utf-8') as f:",
  '            os.environ.update(json.load(f))',
  '    finally:',
  '        os.remove(path)',
  '_aido_agent_env()',
  'del _aido_agent_env',
].join('\n');

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
    kernel: KernelSession,
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
    for (const c of changed) {
      const a: Artifact = {
        path: c.path,
        size: c.size,
        mime_type: mimeTypeOf(c.path),
        change: c.change,
      };
      if (mode === 'url') a.url = fileUrl(kernelId, c.path);
      else if (c.size <= INLINE_FILE_BYTES && inlined + c.size <= INLINE_TOTAL_BYTES) {
        // The file may have grown since the snapshot: read at most what may be inlined.
        const bytes = await this.opts.files
          .read(sandboxId, c.path, INLINE_FILE_BYTES)
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
    kernel: KernelSession,
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
      const w = await this.opts
        .exec(
          sandboxId,
          ['python3', '-I', '-S', '-c', ENV_WRITER],
          Buffer.from(JSON.stringify(env)),
        )
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
      const r = await runCode(kernel, {
        code: ENV_LOADER,
        silent: true,
        maxOutputBytes: 64 * 1024,
        ...(signal ? { signal } : {}),
      });
      if (r.status !== 'ok')
        throw new GatewayError(
          'SANDBOX_EXEC_FAILED',
          `could not apply env in the kernel (${r.error?.ename ?? r.status})`,
        );
    } finally {
      release();
      if (this.#envLocks.get(kernel.id) === tail) this.#envLocks.delete(kernel.id);
    }
  }
}
