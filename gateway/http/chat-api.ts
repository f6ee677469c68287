/**
 * POST /api/chat, GET and DELETE /api/chat/{conversation_id}: a data-analysis assistant driven by
 * an OpenAI-compatible model server, whose code runs only in the conversation's sandbox. Mounted by
 * http-api after authentication; parses its own bodies. Without AIDO_LLM_BASE_URL every route
 * answers 503 and says what to set.
 */
import { readFileSync, statSync } from 'node:fs';
import express, { type Request } from 'express';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { z } from 'zod';
import { EventWriter } from './agent-api.js';
import type { AgentExecutor } from '../agent/agent-execution.js';
import { ConversationStore, type Conversation } from '../agent/chat-conversations.js';
import { ChatLoop, createModelClient, TurnAborted, type ChatAnswer } from '../agent/chat-loop.js';
import type { GatewayConfig } from '../base/config.js';
import { asGatewayError, GatewayError } from '../base/errors.js';
import { jsonErrorBody, sendJsonError } from './json-errors.js';
import { parseBody } from './request-body.js';
import type { KernelRegistry } from '../kernel/kernel-registry.js';
import type { Logger } from '../base/logger.js';
import type { WorkspaceFiles } from '../agent/workspace-files.js';

export interface ChatApiDeps {
  config: GatewayConfig;
  kernels: KernelRegistry;
  executor: AgentExecutor;
  files: WorkspaceFiles;
  logger: Logger;
}

/** The chat routes and what to stop when the gateway closes. */
export interface ChatApi {
  router: express.Router;
  /** Stops running turns and ends every conversation's own kernel. */
  close(): Promise<void>;
}

const MAX_MESSAGE_CHARS = 200_000;

const ClientMessage = z.strictObject({
  role: z.enum(['system', 'user', 'assistant']),
  content: z.string().max(MAX_MESSAGE_CHARS),
});

const ChatBody = z
  .strictObject({
    message: z.string().min(1).max(MAX_MESSAGE_CHARS).optional(),
    messages: z.array(ClientMessage).min(1).max(100).optional(),
    conversation_id: z.string().optional(),
    kernel_id: z.string().optional(),
    stream: z.boolean().optional(),
  })
  .refine((b) => (b.message === undefined) !== (b.messages === undefined), {
    error: 'send either "message" (one user message) or "messages" (a list), not both',
  });

/** The API key, read once at start; never logged, never handed to a sandbox. */
function readApiKey(file: string, logger: Logger): string | undefined {
  if (file === '') return undefined;
  const key = readFileSync(file, 'utf8').trim();
  if ((statSync(file).mode & 0o077) !== 0)
    logger.warn({ file }, 'the model API key file is readable by other users (chmod 600 it)');
  if (key === '') {
    logger.warn({ file }, 'the model API key file is empty: requests go without a key');
    return undefined;
  }
  return key;
}

function param(req: Request, name: string): string {
  const v = req.params[name];
  return typeof v === 'string' ? v : '';
}

function wantsStream(req: Request, stream: boolean | undefined): boolean {
  if (stream !== undefined) return stream;
  return req.accepts(['application/json', 'text/event-stream']) === 'text/event-stream';
}

export function createChatApi(deps: ChatApiDeps): ChatApi {
  const { config, kernels, logger } = deps;
  const router = express.Router();
  if (config.llmBaseUrl === '') {
    router.all(['/api/chat', '/api/chat/:id'], () => {
      throw new GatewayError(
        'CHAT_NOT_CONFIGURED',
        'chat needs a model server: set AIDO_LLM_BASE_URL (an OpenAI-compatible Chat Completions endpoint, e.g. http://127.0.0.1:11434/v1) and AIDO_LLM_MODEL, and AIDO_LLM_API_KEY_FILE if the server wants a key',
      );
    });
    return { router, close: () => Promise.resolve() };
  }

  const log = logger.child({ component: 'chat' });
  const apiKey = readApiKey(config.llmApiKeyFile, log);
  const loop = new ChatLoop({
    ...deps,
    client: createModelClient(config, apiKey),
    ...(apiKey !== undefined ? { apiKey } : {}),
  });
  const store = new ConversationStore({
    ttlMs: config.chatTtlS * 1000,
    maxConversations: config.maxChats,
    maxBytes: config.chatMaxBytes,
    logger: log,
    release: async (c, reason) => {
      if (!c.ownsKernel || c.kernelId === undefined || !kernels.find(c.kernelId)) return;
      log.info({ conversation: c.id, kernel: c.kernelId, reason }, 'ending a chat kernel');
      await kernels.shutdown(c.kernelId).catch((err: unknown) => {
        log.warn({ err: String(err), kernel: c.kernelId }, 'chat kernel shutdown failed');
      });
    },
  });
  const json = express.json({ limit: '4mb', type: () => true });

  /**
   * What to tell the client about a turn that did not finish: nothing when it went away itself;
   * that the conversation ended (DELETE, expiry, gateway stop) when it is still listening.
   */
  function turnFailure(err: unknown, c: Conversation): GatewayError | undefined {
    if (err instanceof TurnAborted)
      return store.has(c.id)
        ? undefined
        : new GatewayError(
            'CONVERSATION_NOT_FOUND',
            `conversation ${c.id} was ended (deleted, expired or the gateway is stopping) while this request ran`,
          );
    const ge = asGatewayError(err);
    if (ge.code === 'INTERNAL') log.error({ err }, 'chat turn failed');
    return ge;
  }

  /** After a turn: free the conversation; drop it when its first turn left nothing behind. */
  async function settle(c: Conversation, created: boolean): Promise<void> {
    store.end(c);
    if (created && c.messages.length === 0)
      await store.delete(c.id, 'its first turn failed').catch(() => undefined);
  }

  router.post('/api/chat', json, async (req, res) => {
    const body = parseBody(ChatBody, req.body, 'chat');
    let c: Conversation;
    let created = false;
    if (body.conversation_id !== undefined) {
      c = store.get(body.conversation_id);
      if (body.kernel_id !== undefined && body.kernel_id !== c.kernelId)
        throw new GatewayError(
          'BAD_REQUEST',
          `conversation ${c.id} runs on kernel ${c.kernelId ?? '(none yet)'}; a conversation keeps its kernel`,
        );
    } else {
      // The caller's kernel: it must exist now; the conversation never shuts it down.
      if (body.kernel_id !== undefined) kernels.get(body.kernel_id);
      c = store.create(body.kernel_id);
      created = true;
    }
    const turn = store.begin(c);
    res.on('close', () => {
      if (!res.writableFinished) turn.abort();
    });
    const input: ChatCompletionMessageParam[] =
      body.message !== undefined
        ? [{ role: 'user', content: body.message }]
        : (body.messages ?? []);
    // A failed turn's error names the conversation while the conversation is kept.
    const kept = (): Record<string, unknown> => (store.has(c.id) ? { conversation_id: c.id } : {});

    if (!wantsStream(req, body.stream)) {
      let answer: ChatAnswer | undefined;
      let failure: GatewayError | undefined;
      try {
        answer = await loop.runTurn(c, input, {
          emit: () => undefined,
          signal: turn.signal,
          streaming: false,
        });
      } catch (err) {
        failure = turnFailure(err, c);
      } finally {
        await settle(c, created);
      }
      if (answer) res.json(answer);
      else if (failure) sendJsonError(res, failure, kept());
      return;
    }

    const stream = new EventWriter(res, 'sse');
    stream.send('conversation', { conversation_id: c.id, kernel_id: c.kernelId ?? null });
    let failure: GatewayError | undefined;
    try {
      const answer = await loop.runTurn(c, input, {
        emit: (e) => {
          stream.send(e.event, e.data);
        },
        signal: turn.signal,
        streaming: true,
      });
      stream.send('message', answer);
    } catch (err) {
      failure = turnFailure(err, c);
    } finally {
      await settle(c, created);
      // Headers are gone: the failure is the last event.
      if (failure) stream.send('error', jsonErrorBody(failure, kept()));
      stream.end();
    }
  });

  router.get('/api/chat/:id', (req, res) => {
    res.json(store.get(param(req, 'id')).view());
  });

  router.delete('/api/chat/:id', async (req, res) => {
    await store.delete(param(req, 'id'));
    res.status(204).end();
  });

  return { router, close: () => store.close() };
}
