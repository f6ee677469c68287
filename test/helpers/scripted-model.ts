/**
 * An OpenAI-compatible Chat Completions server on loopback for tests, scripted per test: it answers
 * POST /v1/chat/completions with what the script returns, as one `chat.completion` JSON document or,
 * when the request says `stream: true`, as server-sent `chat.completion.chunk` events (content in
 * pieces, tool calls as `tool_calls` deltas: id, type and name first, then the arguments in pieces,
 * then finish_reason, a usage chunk when asked, and `[DONE]`) — the shapes the `openai` package
 * parses. Every request is recorded, so a test asserts what the gateway sent.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A request as the gateway sent it. */
export interface ModelRequest {
  headers: IncomingHttpHeaders;
  body: {
    model: string;
    stream?: boolean;
    stream_options?: { include_usage?: boolean };
    tool_choice?: unknown;
    tools?: { type: string; function: { name: string; parameters: Record<string, unknown> } }[];
    messages: ModelMessage[];
  };
}

export interface ModelMessage {
  role: string;
  content?: string | null | { type: string; text?: string; image_url?: { url: string } }[];
  tool_calls?: { id: string; type: string; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

/** What the scripted model answers. */
export type ModelReply =
  | {
      content?: string;
      tool_calls?: { id?: string; name: string; arguments: string }[];
      finish_reason?: string;
    }
  | { status: number; body: unknown }
  /** Sends the headers of a stream (or nothing) and then waits until the client goes away. */
  | { hang: true };

export type Script = (req: ModelRequest, index: number) => ModelReply | Promise<ModelReply>;

export class ScriptedModel {
  readonly requests: ModelRequest[] = [];
  /** Answers whose connection closed before they were complete (the client gave up on them). */
  abandoned = 0;
  script: Script = () => ({ content: 'no script' });
  #server: Server;
  #port = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<ScriptedModel> {
    const model: ScriptedModel = new ScriptedModel(
      createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          void model.#answer(req.url ?? '', req.headers, Buffer.concat(chunks), res);
        });
      }),
    );
    await new Promise<void>((resolve) => model.#server.listen(0, '127.0.0.1', resolve));
    model.#port = (model.#server.address() as AddressInfo).port;
    return model;
  }

  /** The base URL the gateway is configured with. */
  get baseUrl(): string {
    return `http://127.0.0.1:${this.#port}/v1`;
  }

  /** Starts a test afresh: a new script, no recorded requests. */
  reset(script: Script): void {
    this.requests.length = 0;
    this.abandoned = 0;
    this.script = script;
  }

  async #answer(
    url: string,
    headers: IncomingHttpHeaders,
    raw: Buffer,
    res: import('node:http').ServerResponse,
  ): Promise<void> {
    if (url !== '/v1/chat/completions') {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `no route ${url}`, type: 'invalid_request' } }));
      return;
    }
    const body = JSON.parse(raw.toString('utf8')) as ModelRequest['body'];
    const request: ModelRequest = { headers, body };
    const index = this.requests.push(request) - 1;
    res.on('close', () => {
      if (!res.writableFinished) this.abandoned++;
    });
    const reply = await this.script(request, index);
    if ('status' in reply) {
      res.writeHead(reply.status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(reply.body));
      return;
    }
    if ('hang' in reply) {
      if (body.stream) res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      return;
    }
    const id = `chatcmpl-${index}`;
    const created = Math.floor(Date.now() / 1000);
    const toolCalls = (reply.tool_calls ?? []).map((c, i) => ({
      id: c.id ?? `call_${index}_${i}`,
      name: c.name,
      arguments: c.arguments,
    }));
    const finish = reply.finish_reason ?? (toolCalls.length > 0 ? 'tool_calls' : 'stop');
    const usage = { prompt_tokens: 100 + index, completion_tokens: 10, total_tokens: 110 + index };
    if (!body.stream) {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(
        JSON.stringify({
          id,
          object: 'chat.completion',
          created,
          model: body.model,
          choices: [
            {
              index: 0,
              message: {
                role: 'assistant',
                content: reply.content ?? null,
                ...(toolCalls.length > 0
                  ? {
                      tool_calls: toolCalls.map((c) => ({
                        id: c.id,
                        type: 'function',
                        function: { name: c.name, arguments: c.arguments },
                      })),
                    }
                  : {}),
              },
              finish_reason: finish,
            },
          ],
          usage,
        }),
      );
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null): void => {
      res.write(
        `data: ${JSON.stringify({
          id,
          object: 'chat.completion.chunk',
          created,
          model: body.model,
          choices: [{ index: 0, delta, finish_reason: finishReason }],
        })}\n\n`,
      );
    };
    chunk({ role: 'assistant', content: '' });
    // Content in pieces of a few characters, as a model produces tokens.
    const content = reply.content ?? '';
    for (let i = 0; i < content.length; i += 7) chunk({ content: content.slice(i, i + 7) });
    toolCalls.forEach((c, i) => {
      chunk({
        tool_calls: [
          { index: i, id: c.id, type: 'function', function: { name: c.name, arguments: '' } },
        ],
      });
      for (let j = 0; j < c.arguments.length; j += 11)
        chunk({
          tool_calls: [{ index: i, function: { arguments: c.arguments.slice(j, j + 11) } }],
        });
    });
    chunk({}, finish);
    if (body.stream_options?.include_usage)
      res.write(
        `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: body.model, choices: [], usage })}\n\n`,
      );
    res.end('data: [DONE]\n\n');
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) =>
      this.#server.close(() => {
        resolve();
      }),
    );
  }
}

/** The text of a message's content (string or text parts). */
export function textOf(m: ModelMessage | undefined): string {
  if (!m) return '';
  if (typeof m.content === 'string') return m.content;
  if (Array.isArray(m.content)) return m.content.map((p) => p.text ?? '').join('');
  return '';
}

/** The last message of a role in a request. */
export function lastOf(req: ModelRequest | undefined, role: string): ModelMessage | undefined {
  return req?.body.messages.filter((m) => m.role === role).at(-1);
}
