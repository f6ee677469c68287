/**
 * Runs code on a kernel as an in-process client (its own client session `agent-<uuid>`, so
 * WebSocket clients of the kernel see its output on iopub, and the execution deadline and its
 * ExecutionTimeout/ExecutionKilled replies apply) and collects its outputs until the kernel is
 * idle again and has replied.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { executeRequest, toRaw, type RawMessage } from '../../protocol/index.js';
import { realTimers, type Timers } from '../base/deadline.js';
import { GatewayError } from '../base/errors.js';
import type { ClientChannels, ClientSink } from '../channels/client-channels.js';
import { parseObjectOrEmpty, peekParent } from '../channels/parent-peek.js';
import { asExecutionTimeout, requestTimeoutText } from '../kernel/execution-timeout.js';
import type { Kernel } from '../kernel/kernel.js';
import {
  OutputCollector,
  type AgentEvent,
  type AgentOutput,
  type AgentStatus,
  textOf,
} from './agent-outputs.js';
import { CloseCode } from '../base/close-codes.js';

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
  /** The timer behind timeoutMs (Node's by default). */
  timers?: Timers;
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

/** The iopub types whose content becomes an output (and counts against the output limit). */
const OUTPUT_TYPES = new Set(['stream', 'display_data', 'execute_result', 'error']);

/** Throws unless the kernel can take an execution now. */
export function assertRunnable(kernel: Kernel): string {
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
  const error = { ename: textOf(reply.ename), evalue: textOf(reply.evalue) };
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
export function runCode(kernel: Kernel, opts: RunOptions): Promise<RunOutcome> {
  assertRunnable(kernel);
  return new Promise<RunOutcome>((resolve, reject) => {
    new AgentRun(kernel, opts, resolve, reject).start();
  });
}

/** One run: what has arrived so far, and whether it is over. */
class AgentRun implements ClientSink {
  readonly #sessionId = `agent-${randomUUID()}`;
  readonly #request;
  readonly #collector: OutputCollector;
  readonly #timers: Timers;
  readonly #startedAt = performance.now();
  /** Set once attached (a reply can settle the run from inside receive()). */
  #channels: ClientChannels | undefined;
  #reply: Record<string, unknown> | undefined;
  #idle = false;
  #executionCount: number | null = null;
  #timer: unknown;
  #timedOut = false;
  #finished = false;

  constructor(
    private readonly kernel: Kernel,
    private readonly opts: RunOptions,
    private readonly resolve: (outcome: RunOutcome) => void,
    private readonly reject: (err: Error) => void,
  ) {
    this.#collector = new OutputCollector(opts.maxOutputBytes);
    this.#timers = opts.timers ?? realTimers;
    const silent = opts.silent ?? false;
    // No stdin (the default): input() raises StdinNotImplementedError, since nobody could answer.
    this.#request = executeRequest(this.#sessionId, opts.code, { silent, store_history: !silent });
  }

  start(): void {
    if (this.opts.signal?.aborted) {
      this.reject(new GatewayError('BAD_REQUEST', 'the client went away'));
      return;
    }
    this.opts.signal?.addEventListener('abort', this.#onAbort);
    this.#channels = this.kernel.attachSink(this.#sessionId, this);
    this.#channels.receive(toRaw(this.#request));
  }

  // ClientSink: every message of the kernel reaches this client session.
  send(raw: RawMessage): boolean {
    this.#onMessage(raw);
    return true;
  }

  /** The kernel closed this client session (it settles pending requests first). */
  close(_code: number, reason: string): void {
    if (this.#finished) return;
    this.#reply ??= {
      status: 'error',
      ename: 'KernelShutdown',
      evalue: `the kernel session closed: ${reason}`,
    };
    this.#idle = true;
    this.#finish();
  }

  #onMessage(raw: RawMessage): void {
    if (this.#finished) return;
    // The parent header was bounded by the inbound gate and is parsed once for every watcher.
    if (peekParent(raw.parentHeader).msg_id !== this.#request.header.msg_id) return;
    const type = raw.header.msg_type;
    const collector = this.#collector;
    if (raw.content.length > collector.maxContentBytes && OUTPUT_TYPES.has(type)) {
      collector.skipOversized();
      return;
    }
    const content = parseObjectOrEmpty(raw.content, collector.maxContentBytes);
    if (raw.channel === 'shell') {
      if (type === 'execute_reply') {
        this.#reply = content;
        this.#finish();
      }
      return;
    }
    if (raw.channel !== 'iopub') return;
    if (type === 'status') {
      if (content.execution_state === 'busy') this.#startTimer();
      else if (content.execution_state === 'idle') {
        this.#idle = true;
        this.#finish();
      }
      return;
    }
    if (type === 'execute_input') {
      this.#startTimer();
      if (typeof content.execution_count === 'number')
        this.#executionCount = content.execution_count;
      return;
    }
    const event = collector.add(type, type === 'error' ? this.#asTimeout(content) : content);
    if (event) this.opts.onEvent?.(event);
  }

  /**
   * The request's own timeout ended it: its KeyboardInterrupt (error output or reply) says so,
   * the traceback stays.
   */
  #asTimeout(content: Record<string, unknown>): Record<string, unknown> {
    const limitMs = this.opts.timeoutMs;
    if (!this.#timedOut || content.ename !== 'KeyboardInterrupt' || !limitMs) return content;
    return asExecutionTimeout(content, requestTimeoutText(limitMs), { traceback: 'keep' });
  }

  #startTimer(): void {
    const limitMs = this.opts.timeoutMs;
    if (this.#timer !== undefined || limitMs === undefined) return;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timedOut = true;
      // The kernel's own path: interrupt, then kill after the grace period if it keeps running.
      this.kernel.interrupt().catch(() => undefined);
    }, limitMs);
  }

  #finish(): void {
    const reply = this.#reply;
    if (this.#finished || !reply || !this.#idle) return;
    this.#cleanup('done');
    const { status, error } = statusOf(this.#asTimeout(reply), this.#timedOut);
    const outcome: RunOutcome = {
      status,
      execution_count:
        typeof reply.execution_count === 'number' ? reply.execution_count : this.#executionCount,
      outputs: this.#collector.outputs,
      outputs_truncated: this.#collector.truncated,
      duration_ms: Math.round(performance.now() - this.#startedAt),
    };
    if (error) outcome.error = error;
    this.resolve(outcome);
  }

  readonly #onAbort = (): void => {
    if (this.#finished) return;
    this.#cleanup('abandoned');
    this.reject(new GatewayError('BAD_REQUEST', 'the client went away'));
  };

  #cleanup(how: 'done' | 'abandoned'): void {
    this.#finished = true;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.opts.signal?.removeEventListener('abort', this.#onAbort);
    const channels = this.#channels;
    if (!channels) return;
    if (how === 'abandoned') {
      // The execution runs on: detach like a dropped socket, so the reply still reaches these
      // channels (settling the kernel's pending request) until they expire.
      channels.detach(this);
      return;
    }
    channels.close(CloseCode.NORMAL, 'agent execution finished');
    // The kernel forgets closed channels only on expiry: tell it now.
    this.kernel.expired(channels);
  }
}
