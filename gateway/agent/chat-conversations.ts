/**
 * Chat conversations, kept in memory: the transcript the model sees, the steps (tool calls) that
 * ran, and the kernel they ran on. Bounded three ways: a conversation idle for AIDO_CHAT_TTL is
 * dropped, at most AIDO_MAX_CHATS exist at once, and one holding more than
 * AIDO_CHAT_MAX_BYTES takes no new turn. Dropping a conversation ends its own kernel (through
 * `release`), never a kernel the caller brought.
 */
import { randomUUID } from 'node:crypto';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { AgentOutput, AgentStatus, Artifact } from './agent-execution.js';
import { GatewayError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';

/**
 * How a tool call ended: an execution's status, `rejected` (bad arguments, unknown tool) or
 * `cancelled` (the client went away while it ran: it was interrupted).
 */
export type StepStatus = AgentStatus | 'rejected' | 'cancelled';

/** One tool call of the model and what it did. */
export interface ChatStep {
  tool_call_id: string;
  tool: string;
  /** run_python's code. */
  code?: string;
  /** The other tools' arguments as the model sent them. */
  arguments?: string;
  kernel_id?: string;
  status: StepStatus;
  error?: { ename: string; evalue: string };
  execution_count?: number | null;
  outputs: AgentOutput[];
  outputs_truncated?: true;
  artifacts: Artifact[];
  duration_ms: number;
}

export interface ConversationView {
  conversation_id: string;
  kernel_id: string | null;
  /** false: the caller's kernel (kernel_id in the first request), which the conversation never ends. */
  kernel_owned: boolean;
  created: string;
  last_activity: string;
  busy: boolean;
  bytes: number;
  /** The transcript as the model sees it, after the system prompt. */
  messages: ChatCompletionMessageParam[];
  steps: ChatStep[];
}

function sizeOf(v: unknown): number {
  return Buffer.byteLength(JSON.stringify(v));
}

export class Conversation {
  readonly id = randomUUID();
  readonly created = new Date();
  lastActivity = Date.now();
  readonly messages: ChatCompletionMessageParam[] = [];
  readonly steps: ChatStep[] = [];
  /** The turn under way (one at a time); aborting it stops the loop. */
  turn: AbortController | undefined;
  #bytes = 0;

  constructor(
    public kernelId: string | undefined,
    readonly ownsKernel: boolean,
  ) {}

  get bytes(): number {
    return this.#bytes;
  }

  push(message: ChatCompletionMessageParam): void {
    this.messages.push(message);
    this.#bytes += sizeOf(message);
  }

  addStep(step: ChatStep): void {
    this.steps.push(step);
    this.#bytes += sizeOf(step);
  }

  /** Where the transcript stands, to roll a turn back to. */
  mark(): { messages: number; steps: number } {
    return { messages: this.messages.length, steps: this.steps.length };
  }

  rollback(to: { messages: number; steps: number }): void {
    for (const m of this.messages.splice(to.messages)) this.#bytes -= sizeOf(m);
    for (const s of this.steps.splice(to.steps)) this.#bytes -= sizeOf(s);
  }

  view(): ConversationView {
    return {
      conversation_id: this.id,
      kernel_id: this.kernelId ?? null,
      kernel_owned: this.ownsKernel,
      created: this.created.toISOString(),
      last_activity: new Date(this.lastActivity).toISOString(),
      busy: this.turn !== undefined,
      bytes: this.#bytes,
      messages: this.messages,
      steps: this.steps,
    };
  }
}

export interface ConversationStoreOptions {
  ttlMs: number;
  maxConversations: number;
  maxBytes: number;
  /** Ends what a dropped conversation holds (its own kernel). */
  release: (c: Conversation, reason: string) => Promise<void>;
  logger: Logger;
  now?: () => number;
}

export class ConversationStore {
  readonly #conversations = new Map<string, Conversation>();
  readonly #sweeper: NodeJS.Timeout;
  readonly #now: () => number;
  #closed = false;

  constructor(private readonly opts: ConversationStoreOptions) {
    this.#now = opts.now ?? Date.now;
    this.#sweeper = setInterval(
      () => {
        this.sweep();
      },
      Math.min(60_000, opts.ttlMs),
    );
    this.#sweeper.unref();
  }

  get size(): number {
    return this.#conversations.size;
  }

  /** A new conversation, refused past the cap. */
  create(kernelId: string | undefined): Conversation {
    if (this.#closed) throw new GatewayError('SHUTTING_DOWN', 'the gateway is shutting down');
    if (this.#conversations.size >= this.opts.maxConversations)
      throw new GatewayError(
        'TOO_MANY_CONVERSATIONS',
        `Maximum number of chat conversations (${this.opts.maxConversations}, AIDO_MAX_CHATS) reached; delete one or wait for idle ones to expire`,
      );
    const c = new Conversation(kernelId, kernelId === undefined);
    c.lastActivity = this.#now();
    this.#conversations.set(c.id, c);
    return c;
  }

  has(id: string): boolean {
    return this.#conversations.has(id);
  }

  get(id: string): Conversation {
    const c = this.#conversations.get(id);
    if (!c) throw new GatewayError('CONVERSATION_NOT_FOUND', `Conversation does not exist: ${id}`);
    return c;
  }

  /** Claims a conversation for a turn: refused while another turn runs or when it is full. */
  begin(c: Conversation): AbortController {
    if (c.turn)
      throw new GatewayError(
        'CONVERSATION_BUSY',
        `conversation ${c.id} is answering another request; wait for it to finish`,
      );
    if (c.bytes > this.opts.maxBytes)
      throw new GatewayError(
        'CONVERSATION_TOO_LARGE',
        `conversation ${c.id} holds ${c.bytes} bytes, more than AIDO_CHAT_MAX_BYTES (${this.opts.maxBytes}); start a new conversation`,
      );
    c.turn = new AbortController();
    c.lastActivity = this.#now();
    return c.turn;
  }

  end(c: Conversation): void {
    c.turn = undefined;
    c.lastActivity = this.#now();
  }

  /** Drops a conversation: stops its turn, then releases its kernel. */
  async delete(id: string, reason = 'deleted'): Promise<void> {
    const c = this.get(id);
    this.#conversations.delete(id);
    c.turn?.abort();
    await this.opts.release(c, reason);
  }

  /** Drops the conversations idle longer than the TTL. */
  sweep(): void {
    const cutoff = this.#now() - this.opts.ttlMs;
    for (const c of [...this.#conversations.values()]) {
      if (c.turn || c.lastActivity >= cutoff) continue;
      this.opts.logger.info(
        { conversation: c.id, kernel: c.kernelId },
        'chat conversation expired',
      );
      void this.delete(c.id, 'expired').catch((err: unknown) => {
        this.opts.logger.warn({ err: String(err), conversation: c.id }, 'dropping a chat failed');
      });
    }
  }

  /** Drops every conversation (gateway shutdown). */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    await Promise.allSettled(
      [...this.#conversations.keys()].map((id) => this.delete(id, 'closed')),
    );
  }
}
