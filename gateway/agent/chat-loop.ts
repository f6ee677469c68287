/**
 * The model ↔ tool loop of POST /api/chat: the gateway asks an OpenAI-compatible model server (the
 * official `openai` client, any `baseURL`) what to do, runs the tool calls it answers with in the
 * conversation's kernel through the agent execution path (the same AgentExecutor as
 * POST /api/kernels/{id}/execute and MCP: watchdog, artifacts, images), hands the results back as
 * text (and plots as image parts where the model takes them), and repeats until the model answers
 * in words or the step limit is reached.
 *
 * Longer than 400 lines because a turn is one piece of state (the conversation, its kernel, the
 * abort signal, the stream to the client) that the model call and every tool share; what does not
 * need it lives in chat-model.ts and tool-result.ts.
 */
import OpenAI, {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  OpenAIError,
} from 'openai';
import type {
  ChatCompletion,
  ChatCompletionContentPart,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionMessageFunctionToolCall,
  ChatCompletionMessageParam,
} from 'openai/resources/chat/completions';
import { z } from 'zod';
import { assertRunnable, type AgentExecutor, type ExecutionDocument } from './agent-execution.js';
import type { Conversation, ChatStep } from './chat-conversations.js';
import type { GatewayConfig } from '../base/config.js';
import { GatewayError } from '../base/errors.js';
import type { KernelRegistry } from '../kernel/kernel-registry.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Logger } from '../base/logger.js';
import {
  argsOf,
  clipMiddle,
  ListFilesArgs,
  parseReply,
  ReadFileArgs,
  Rejection,
  rootCause,
  RunPythonArgs,
  systemPrompt,
  TOOLS,
  type ChatUsage,
  type ModelReply,
} from './chat-model.js';
import { toolResultOf } from './tool-result.js';

export { clipMiddle, createModelClient, systemPrompt } from './chat-model.js';
import { mimeTypeOf, workspacePath, type WorkspaceFiles } from './workspace-files.js';

/** Tool calls honoured per model answer; more are refused (each one is a sandbox execution). */
const MAX_CALLS_PER_ROUND = 16;
/** Image parts sent per round at most, and the largest one (base64 characters). */
const MAX_IMAGES_PER_ROUND = 4;
const MAX_IMAGE_CHARS = 2 * 1024 ** 2;

/** The answer to a chat request. */
export interface ChatAnswer {
  conversation_id: string;
  kernel_id: string | null;
  message: { role: 'assistant'; content: string };
  /** This turn's tool calls, in order. */
  steps: ChatStep[];
  usage: ChatUsage;
  /** The model's finish_reason (stop, length, …), or step_limit when AIDO_LLM_MAX_STEPS ended the loop. */
  finish_reason: string;
}

/** What a streaming client is sent while a turn runs (the final message and errors come from the API). */
export type ChatEvent =
  | { event: 'delta'; data: { content: string } }
  | {
      event: 'tool_call';
      data: { id: string; name: string; arguments: string; code?: string };
    }
  | { event: 'tool_output'; data: { tool_call_id: string; event: string; data: unknown } }
  | { event: 'tool_result'; data: { tool_call_id: string; content: string; step: ChatStep } };

/** The client went away or the conversation was deleted: the turn ends quietly. */
export class TurnAborted extends Error {
  override readonly name = 'TurnAborted';
}

export interface ChatLoopDeps {
  config: GatewayConfig;
  client: OpenAI;
  kernels: KernelRegistry;
  executor: AgentExecutor;
  files: WorkspaceFiles;
  logger: Logger;
  /** Removed from any model error text before it reaches a client or a log. */
  apiKey?: string;
}

interface TurnContext {
  conversation: Conversation;
  emit: (e: ChatEvent) => void;
  signal: AbortSignal;
  streaming: boolean;
}

/** The answer to one tool call: text for the model, images, and the step for the history. */
interface ToolOutcome {
  content: string;
  images: string[];
  step: ChatStep;
}

export class ChatLoop {
  readonly #prompt: string;
  readonly #log: Logger;

  constructor(private readonly d: ChatLoopDeps) {
    this.#prompt = systemPrompt(d.config);
    this.#log = d.logger.child({ component: 'chat' });
  }

  /**
   * Runs one turn: `input` is appended to the conversation, then model and tools alternate. A turn
   * that fails or is aborted leaves a well-formed transcript (every tool call answered); one that
   * ran no tool leaves none at all.
   */
  async runTurn(
    conversation: Conversation,
    input: ChatCompletionMessageParam[],
    opts: Omit<TurnContext, 'conversation'>,
  ): Promise<ChatAnswer> {
    const ctx: TurnContext = { conversation, ...opts };
    const maxSteps = this.d.config.llmMaxSteps;
    const mark = conversation.mark();
    const usage: ChatUsage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
    const unanswered: string[] = [];
    for (const m of input) conversation.push(m);
    try {
      for (let round = 0; ; round++) {
        const last = round >= maxSteps;
        const reply = await this.#complete(ctx, last);
        if (reply.usage) {
          usage.prompt_tokens += reply.usage.prompt_tokens;
          usage.completion_tokens += reply.usage.completion_tokens;
          usage.total_tokens += reply.usage.total_tokens;
        }
        if (last || reply.toolCalls.length === 0) {
          const content =
            reply.content ||
            (last
              ? `Stopped: the step limit (${maxSteps} tool rounds, AIDO_LLM_MAX_STEPS) was reached before the model gave an answer.`
              : '');
          conversation.push({ role: 'assistant', content });
          this.#log.info(
            {
              conversation: conversation.id,
              kernel: conversation.kernelId,
              steps: conversation.steps.length - mark.steps,
              finish_reason: last ? 'step_limit' : reply.finishReason,
              tokens: usage.total_tokens,
            },
            'chat turn answered',
          );
          return {
            conversation_id: conversation.id,
            kernel_id: conversation.kernelId ?? null,
            message: { role: 'assistant', content },
            steps: conversation.steps.slice(mark.steps),
            usage,
            finish_reason: last ? 'step_limit' : reply.finishReason,
          };
        }
        conversation.push({
          role: 'assistant',
          content: reply.content || null,
          tool_calls: reply.toolCalls,
        });
        unanswered.push(...reply.toolCalls.map((c) => c.id));
        const images: { callId: string; data: string }[] = [];
        for (const [i, call] of reply.toolCalls.entries()) {
          const outcome =
            i < MAX_CALLS_PER_ROUND
              ? await this.#tool(ctx, call, round === maxSteps - 1)
              : this.#rejected(
                  call,
                  `more than ${MAX_CALLS_PER_ROUND} tool calls in one answer: this one was not run`,
                );
          conversation.addStep(outcome.step);
          conversation.push({ role: 'tool', tool_call_id: call.id, content: outcome.content });
          unanswered.shift();
          ctx.emit({
            event: 'tool_result',
            data: { tool_call_id: call.id, content: outcome.content, step: outcome.step },
          });
          for (const data of outcome.images) images.push({ callId: call.id, data });
          if (ctx.signal.aborted) throw new TurnAborted('the client went away');
        }
        if (images.length > 0) conversation.push(imageMessage(images));
      }
    } catch (err) {
      // Every tool call needs its answer in the transcript, or the next request is malformed.
      const why = ctx.signal.aborted ? 'the request was cancelled' : 'the turn failed';
      for (const id of unanswered)
        conversation.push({ role: 'tool', tool_call_id: id, content: `Not completed: ${why}.` });
      // Nothing ran: as if the turn never happened (the client may simply retry it).
      if (conversation.steps.length === mark.steps) conversation.rollback(mark);
      if (ctx.signal.aborted && !(err instanceof TurnAborted))
        throw new TurnAborted('the client went away', { cause: err });
      throw err;
    }
  }

  /** One model request: streamed (deltas go to the client as they come) or one JSON answer. */
  async #complete(ctx: TurnContext, last: boolean): Promise<ModelReply> {
    const { config, client } = this.d;
    const deadline = AbortSignal.timeout(config.llmTimeoutS * 1000);
    const signal = AbortSignal.any([ctx.signal, deadline]);
    const params: Omit<ChatCompletionCreateParamsNonStreaming, 'stream'> = {
      model: config.llmModel,
      messages: [{ role: 'system', content: this.#prompt }, ...ctx.conversation.messages],
      tools: TOOLS,
      // Past the step limit the model may only answer.
      ...(last ? { tool_choice: 'none' as const } : {}),
    };
    let completion: ChatCompletion;
    try {
      if (ctx.streaming) {
        const stream = client.chat.completions.stream(
          { ...params, stream_options: { include_usage: true } },
          { signal },
        );
        stream.on('content', (delta) => {
          if (delta !== '') ctx.emit({ event: 'delta', data: { content: delta } });
        });
        completion = await stream.finalChatCompletion();
      } else {
        completion = await client.chat.completions.create(params, { signal });
      }
    } catch (err) {
      if (ctx.signal.aborted) throw new TurnAborted('the client went away', { cause: err });
      throw this.#modelError(err, deadline.aborted);
    }
    return parseReply(completion);
  }

  #modelError(err: unknown, timedOut: boolean): GatewayError {
    const { config } = this.d;
    const redact = (s: string): string =>
      this.d.apiKey ? s.split(this.d.apiKey).join('[redacted]') : s;
    let ge: GatewayError;
    if (err instanceof GatewayError) ge = err;
    else if (timedOut || err instanceof APIConnectionTimeoutError)
      ge = new GatewayError(
        'MODEL_TIMEOUT',
        `the model server did not answer within AIDO_LLM_TIMEOUT (${config.llmTimeoutS} s)`,
      );
    else if (err instanceof APIConnectionError) {
      ge = new GatewayError(
        'MODEL_UNREACHABLE',
        `the model server at ${config.llmBaseUrl} could not be reached (${redact(rootCause(err))})`,
      );
    } else if (err instanceof APIError && !(err instanceof APIUserAbortError))
      ge = new GatewayError(
        'MODEL_ERROR',
        `the model server answered ${err.status ?? 'an error'}: ${redact(err.message).slice(0, 500)}`,
      );
    else if (err instanceof OpenAIError)
      ge = new GatewayError(
        'MODEL_ERROR',
        `the model server's answer could not be read: ${redact(err.message).slice(0, 500)}`,
      );
    else
      ge = new GatewayError('MODEL_ERROR', 'the model request failed', {
        cause: err,
      });
    this.#log.warn({ code: ge.code, err: ge.message }, 'model request failed');
    return ge;
  }

  #rejected(call: ChatCompletionMessageFunctionToolCall, why: string): ToolOutcome {
    return {
      content: `Error: ${why}`,
      images: [],
      step: {
        tool_call_id: call.id,
        tool: call.function.name,
        arguments: call.function.arguments,
        status: 'rejected',
        error: { ename: 'ToolCallRejected', evalue: why },
        outputs: [],
        artifacts: [],
        duration_ms: 0,
      },
    };
  }

  /** Runs one tool call; refusals and sandbox trouble become the model's to read. */
  async #tool(
    ctx: TurnContext,
    call: ChatCompletionMessageFunctionToolCall,
    lastRound: boolean,
  ): Promise<ToolOutcome> {
    const { name, arguments: raw } = call.function;
    const lastNote = lastRound
      ? `\n\nNote: that was the last tool round allowed for this request (AIDO_LLM_MAX_STEPS = ${this.d.config.llmMaxSteps}): answer now with what you have.`
      : '';
    try {
      let outcome: ToolOutcome;
      switch (name) {
        case 'run_python': {
          const args = argsOf(RunPythonArgs, raw, name);
          ctx.emit({
            event: 'tool_call',
            data: { id: call.id, name, arguments: raw, code: args.code },
          });
          outcome = await this.#runPython(ctx, call, args);
          break;
        }
        case 'list_files': {
          const args = argsOf(ListFilesArgs, raw, name);
          ctx.emit({ event: 'tool_call', data: { id: call.id, name, arguments: raw } });
          outcome = await this.#fileTool(ctx, call, (id) => this.#listFiles(id, args.path));
          break;
        }
        case 'read_file': {
          const args = argsOf(ReadFileArgs, raw, name);
          ctx.emit({ event: 'tool_call', data: { id: call.id, name, arguments: raw } });
          outcome = await this.#fileTool(ctx, call, (id) => this.#readFile(id, args.path));
          break;
        }
        default:
          throw new Rejection(
            `there is no tool named ${JSON.stringify(name)}; the tools are ${TOOLS.map((t) => (t.type === 'function' ? t.function.name : '')).join(', ')}`,
          );
      }
      outcome.content += lastNote;
      return outcome;
    } catch (err) {
      if (err instanceof Rejection) {
        ctx.emit({ event: 'tool_call', data: { id: call.id, name, arguments: raw } });
        const outcome = this.#rejected(call, err.message);
        outcome.content += lastNote;
        return outcome;
      }
      throw err;
    }
  }

  async #runPython(
    ctx: TurnContext,
    call: ChatCompletionMessageFunctionToolCall,
    args: z.infer<typeof RunPythonArgs>,
  ): Promise<ToolOutcome> {
    const { config, executor } = this.d;
    const kernel = await this.#kernel(ctx);
    const limitS = config.execTimeoutS > 0 ? config.execTimeoutS : Infinity;
    const timeoutS = args.timeout_s !== undefined ? Math.min(args.timeout_s, limitS) : undefined;
    let doc: ExecutionDocument;
    try {
      doc = await executor.execute(
        kernel,
        {
          code: args.code,
          ...(timeoutS !== undefined && Number.isFinite(timeoutS)
            ? { timeoutMs: Math.round(timeoutS * 1000) }
            : {}),
        },
        {
          artifacts: 'url',
          signal: ctx.signal,
          onEvent: (e) => {
            if (e.event !== 'done')
              ctx.emit({
                event: 'tool_output',
                data: { tool_call_id: call.id, event: e.event, data: e.data },
              });
          },
        },
      );
    } catch (err) {
      if (ctx.signal.aborted) {
        // Collecting stopped with the client; the execution itself must stop too.
        kernel.interrupt().catch(() => undefined);
        const why =
          'the request was cancelled (the client went away); the execution was interrupted';
        const step = this.#rejected(call, why).step;
        step.status = 'cancelled';
        step.code = args.code;
        step.kernel_id = kernel.id;
        step.error = { ename: 'Cancelled', evalue: why };
        return { content: `Interrupted: ${why}.`, images: [], step };
      }
      // The kernel could not take it (dead, restarting, a sandbox at its process limit).
      if (err instanceof GatewayError && err.code !== 'INTERNAL') {
        const step = this.#rejected(call, err.message).step;
        step.status = 'error';
        step.code = args.code;
        step.kernel_id = kernel.id;
        step.error = { ename: err.code, evalue: err.message };
        return { content: `Error: the code did not run: ${err.message}`, images: [], step };
      }
      throw err;
    }

    const result = toolResultOf(doc);
    const text = result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
    const images = result.content.flatMap((c) => (c.type === 'image' ? [c.data] : []));
    const notes: string[] = [];
    if (doc.status === 'timeout' && doc.error)
      notes.push(`The execution was interrupted: ${doc.error.evalue}`);
    if (doc.status === 'killed') notes.push(await this.#afterDeath(kernel, doc));
    let sent: string[] = [];
    if (images.length > 0) {
      if (config.llmImages) {
        sent = images.filter((d) => d.length <= MAX_IMAGE_CHARS).slice(0, MAX_IMAGES_PER_ROUND);
        notes.push(
          `${images.length} image(s) displayed; ${sent.length} sent to you in the next message.`,
        );
      } else {
        notes.push(
          `${images.length} image(s) displayed to the user; images are not sent to you (AIDO_LLM_IMAGES is off).`,
        );
      }
    }
    const content = clipMiddle([text, ...notes].join('\n'), config.llmToolResultChars);
    const step: ChatStep = {
      tool_call_id: call.id,
      tool: 'run_python',
      code: args.code,
      kernel_id: kernel.id,
      status: doc.status,
      ...(doc.error ? { error: doc.error } : {}),
      execution_count: doc.execution_count,
      outputs: doc.outputs,
      ...(doc.outputs_truncated ? { outputs_truncated: true as const } : {}),
      artifacts: doc.artifacts,
      duration_ms: doc.duration_ms,
    };
    return { content, images: sent, step };
  }

  /** A killed or dead sandbox: restart the kernel (same id, fresh sandbox) and say so. */
  async #afterDeath(kernel: Kernel, doc: ExecutionDocument): Promise<string> {
    const what = doc.error ? `${doc.error.ename}: ${doc.error.evalue}` : 'the sandbox stopped';
    try {
      // Memoized: joins the watchdog's own restart when that is what killed it.
      await kernel.restart();
      return `The sandbox died (${what}). The kernel was restarted on a fresh sandbox: variables, imports and /workspace files from before are gone.`;
    } catch (err) {
      this.#log.warn({ kernel: kernel.id, err: String(err) }, 'chat: kernel restart failed');
      return `The sandbox died (${what}) and could not be restarted: ${(err as Error).message}`;
    }
  }

  async #fileTool(
    ctx: TurnContext,
    call: ChatCompletionMessageFunctionToolCall,
    read: (sandboxId: string) => Promise<string>,
  ): Promise<ToolOutcome> {
    const started = performance.now();
    const step = (status: 'ok' | 'error', error?: GatewayError): ChatStep => ({
      tool_call_id: call.id,
      tool: call.function.name,
      arguments: call.function.arguments,
      ...(ctx.conversation.kernelId !== undefined ? { kernel_id: ctx.conversation.kernelId } : {}),
      status,
      ...(error ? { error: { ename: error.code, evalue: error.message } } : {}),
      outputs: [],
      artifacts: [],
      duration_ms: Math.round(performance.now() - started),
    });
    try {
      const text = await read(assertRunnable(await this.#kernel(ctx)));
      return {
        content: clipMiddle(text, this.d.config.llmToolResultChars),
        images: [],
        step: step('ok'),
      };
    } catch (err) {
      if (err instanceof GatewayError && err.code !== 'INTERNAL')
        return { content: `Error: ${err.message}`, images: [], step: step('error', err) };
      throw err;
    }
  }

  async #listFiles(sandboxId: string, path: string | undefined): Promise<string> {
    const listing = await this.d.files.list(sandboxId, workspacePath(path ?? ''));
    return [
      `${`/workspace/${listing.path}`.replace(/\/$/, '')}:`,
      ...listing.entries.map(
        (e) => `${e.type === 'directory' ? `${e.name}/` : e.name}  ${e.type}  ${e.size} bytes`,
      ),
      ...(listing.truncated ? ['(more entries not listed)'] : []),
    ].join('\n');
  }

  async #readFile(sandboxId: string, path: string): Promise<string> {
    const rel = workspacePath(path);
    const bytes = await this.d.files.readForAgent(sandboxId, rel);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return `${rel} is not UTF-8 text (${bytes.length} bytes, ${mimeTypeOf(rel)}): inspect it with run_python.`;
    }
  }

  /**
   * The conversation's kernel, ready to run: started from the registry (the warm pool) on first
   * use, restarted when it died, replaced when its own was shut down from elsewhere.
   */
  async #kernel(ctx: TurnContext): Promise<Kernel> {
    const c = ctx.conversation;
    const { kernels } = this.d;
    let kernel = c.kernelId !== undefined ? kernels.find(c.kernelId) : undefined;
    if (kernel?.closing) kernel = undefined;
    if (!kernel) {
      if (!c.ownsKernel)
        throw new GatewayError(
          'KERNEL_NOT_FOUND',
          `the conversation's kernel ${c.kernelId ?? ''} was shut down`,
        );
      const started = await kernels.start({});
      if (ctx.signal.aborted) {
        // Deleted or abandoned while the sandbox started: nobody will use it.
        await kernels.shutdown(started.id).catch(() => undefined);
        throw new TurnAborted('the client went away');
      }
      if (c.kernelId !== undefined)
        this.#log.info({ conversation: c.id, kernel: started.id }, 'chat kernel replaced');
      c.kernelId = started.id;
      kernel = started;
    }
    if (kernel.executionState === 'dead' || kernel.executionState === 'restarting')
      await kernel.restart();
    return kernel;
  }
}

/** Plots for a model that takes images: one user message after the round's tool results. */
function imageMessage(images: { callId: string; data: string }[]): ChatCompletionMessageParam {
  const ids = [...new Set(images.map((i) => i.callId))].join(', ');
  const parts: ChatCompletionContentPart[] = [
    { type: 'text', text: `Images displayed by tool call ${ids}:` },
    ...images.map((i): ChatCompletionContentPart => ({
      type: 'image_url',
      image_url: { url: `data:image/png;base64,${i.data}` },
    })),
  ];
  return { role: 'user', content: parts };
}
