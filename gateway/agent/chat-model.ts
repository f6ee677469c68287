/**
 * What the chat loop says to a model server and how it reads the answers: the tools and their
 * argument schemas, the system prompt, the client, and the parsing of a completion (the model
 * server is outside the gateway: its answers are checked for shape like any other input).
 */
import { randomUUID } from 'node:crypto';
import OpenAI from 'openai';
import type {
  ChatCompletion,
  ChatCompletionMessageFunctionToolCall,
  ChatCompletionTool,
} from 'openai/resources/chat/completions';
import { z } from 'zod';
import type { GatewayConfig } from '../base/config.js';
import { GatewayError } from '../base/errors.js';

/** Token counts summed over a turn's model requests. */
export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export const TOOLS: ChatCompletionTool[] = [
  {
    type: 'function',
    function: {
      name: 'run_python',
      description:
        'Run Python code in the sandboxed IPython kernel of this conversation. State (variables, imports, files) persists between calls. Returns stdout, stderr, the value of the last expression, errors with tracebacks, and the files created or changed in /workspace.',
      parameters: {
        type: 'object',
        properties: {
          code: { type: 'string', description: 'Python source to execute' },
          timeout_s: {
            type: 'number',
            description:
              'seconds before the execution is interrupted (default and maximum: the sandbox limit)',
          },
        },
        required: ['code'],
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'list_files',
      description: 'List a directory of /workspace (name, type, size).',
      parameters: {
        type: 'object',
        properties: {
          path: {
            type: 'string',
            description: 'directory relative to /workspace (default: /workspace)',
          },
        },
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'read_file',
      description: 'Read a UTF-8 text file from /workspace.',
      parameters: {
        type: 'object',
        properties: { path: { type: 'string', description: 'file relative to /workspace' } },
        required: ['path'],
        additionalProperties: false,
      },
    },
  },
];

export const RunPythonArgs = z.object({
  code: z.string(),
  timeout_s: z.number().positive().optional(),
});
export const ListFilesArgs = z.object({ path: z.string().optional() });
export const ReadFileArgs = z.object({ path: z.string() });

/** The sandbox's packages and network as the egress allow-list (AIDO_EGRESS_ALLOW) makes them. */
function networkLines(allow: readonly string[]): string[] {
  if (allow.length === 0)
    return [
      '- Python 3 with pandas, numpy and matplotlib (plots display inline) and the standard library; no other packages can be installed.',
      '- No network access: nothing can be downloaded or sent anywhere.',
    ];
  return [
    '- Python 3 with pandas, numpy and matplotlib (plots display inline) and the standard library; `%pip install <package>` installs more, and they import in the same kernel.',
    `- No network access of its own: only the gateway's egress proxy, which reaches these and nothing else: ${allow.join(', ')} (pypi: pypi.org and files.pythonhosted.org; conda: the Anaconda channels).`,
  ];
}

/** What the model is told about its sandbox, from the configuration it runs under. */
export function systemPrompt(config: GatewayConfig): string {
  const limit = config.execTimeoutS > 0 ? `${config.execTimeoutS} s` : 'no time limit';
  return [
    'You are a data-analysis assistant. You answer by running Python code with the run_python tool in a sandboxed IPython kernel, and you base your answers on the results.',
    '',
    'The sandbox:',
    ...networkLines(config.egressAllow),
    "- The working directory is /workspace: the user's uploaded files are there, and files you write there can be downloaded by the user. list_files and read_file look into it.",
    '- Variables, imports and files persist between calls in this conversation.',
    `- Each execution is interrupted after ${limit} (timeout_s may set a shorter limit); memory is limited to ${Math.round(config.memoryBytes / 1024 ** 2)} MB.`,
    `- Show a plot with plt.show(): the user sees it${config.llmImages ? ', and so do you' : ' (you get a note, not the image)'}.`,
    '- If the kernel dies (memory, a crash), it is restarted on a fresh sandbox: state and files from before are gone.',
    '',
    'Keep answers short and cite the numbers you computed.',
  ].join('\n');
}

/** A model answer, parsed: the model server is outside the gateway and is not trusted for shape. */
export interface ModelReply {
  content: string;
  toolCalls: ChatCompletionMessageFunctionToolCall[];
  finishReason: string;
  usage?: ChatUsage;
}

const ReplyShape = z.object({
  choices: z
    .array(
      z.object({
        finish_reason: z.string().nullish(),
        message: z.object({
          content: z.string().nullish(),
          tool_calls: z
            .array(
              z.object({
                id: z.string().nullish(),
                type: z.string().nullish(),
                // Some servers send the arguments as an object rather than JSON text.
                function: z.object({ name: z.string(), arguments: z.unknown() }).optional(),
                custom: z.object({ name: z.string() }).optional(),
              }),
            )
            .nullish(),
        }),
      }),
    )
    .min(1),
  usage: z
    .object({
      prompt_tokens: z.number(),
      completion_tokens: z.number(),
      total_tokens: z.number(),
    })
    .nullish(),
});

export function parseReply(completion: ChatCompletion): ModelReply {
  const parsed = ReplyShape.safeParse(completion);
  if (!parsed.success)
    throw new GatewayError(
      'MODEL_ERROR',
      `the model server's answer is not a chat completion: ${parsed.error.issues[0]?.message ?? 'bad shape'}`,
    );
  const choice = parsed.data.choices[0];
  if (!choice) throw new GatewayError('MODEL_ERROR', 'the model server answered without a choice');
  const toolCalls = (choice.message.tool_calls ?? []).map(
    (c): ChatCompletionMessageFunctionToolCall => {
      const fn = c.function ?? { name: c.custom?.name ?? '', arguments: '' };
      const args = fn.arguments;
      return {
        id: c.id || `call_${randomUUID()}`,
        type: 'function',
        function: {
          name: fn.name,
          arguments:
            typeof args === 'string' ? args : args === undefined ? '' : JSON.stringify(args),
        },
      };
    },
  );
  const u = parsed.data.usage;
  return {
    content: choice.message.content ?? '',
    toolCalls,
    finishReason: choice.finish_reason ?? 'stop',
    ...(u ? { usage: u } : {}),
  };
}

/** Keeps the head and the tail of a long text (tracebacks end there), with a note of what was cut. */
export function clipMiddle(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.length - max;
  const head = Math.ceil(max * 0.6);
  return `${text.slice(0, head)}\n… [${cut} characters cut: the result is longer than AIDO_LLM_TOOL_RESULT_MAX (${max})] …\n${text.slice(text.length - (max - head))}`;
}

/** What a connection failure came down to: fetch wraps the socket error (ECONNREFUSED, …). */
export function rootCause(err: Error): string {
  let e: unknown = err;
  let message = err.message;
  for (let depth = 0; depth < 5 && e instanceof Error; depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string') return code;
    message = e.message;
    e = e.cause;
  }
  return message;
}

/** A tool call the gateway refuses to run: the model is told why. */
export class Rejection extends Error {}

export function argsOf<T>(schema: z.ZodType<T>, raw: string, tool: string): T {
  let value: unknown;
  try {
    value = JSON.parse(raw === '' ? '{}' : raw);
  } catch (err) {
    throw new Rejection(
      `the arguments of ${tool} are not valid JSON (${(err as Error).message}); send a JSON object such as {"code": "print(1)"}`,
    );
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw new Rejection(
      `invalid arguments for ${tool}: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'arguments'}: ${i.message}`).join('; ')}`,
    );
  return parsed.data;
}

/**
 * fetch, but a response body is read only up to `maxBytes`: the model server is outside the
 * gateway, and the client would otherwise buffer whatever it sends within the timeout.
 */
export function boundedFetch(maxBytes: number, base: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const res = await base(input, init);
    if (!res.body) return res;
    let seen = 0;
    const body = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, ctl) {
          seen += chunk.byteLength;
          if (seen > maxBytes)
            ctl.error(new Error(`the model server's answer is over ${maxBytes} bytes`));
          else ctl.enqueue(chunk);
        },
      }),
    );
    return new Response(body, {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
  };
}

export function createModelClient(config: GatewayConfig, apiKey: string | undefined): OpenAI {
  return new OpenAI({
    // An answer bigger than a whole conversation may hold (AIDO_CHAT_MAX_BYTES) is not read.
    fetch: boundedFetch(config.chatMaxBytes),
    baseURL: config.llmBaseUrl,
    // The client insists on a key; without one, no Authorization header is sent at all.
    apiKey: apiKey ?? 'none',
    ...(apiKey === undefined ? { defaultHeaders: { Authorization: null } } : {}),
    // Everything explicit, so nothing comes from OPENAI_* variables of the gateway's environment.
    organization: null,
    project: null,
    webhookSecret: null,
    adminAPIKey: null,
    maxRetries: config.llmMaxRetries,
    timeout: config.llmTimeoutS * 1000,
    logLevel: 'off',
  });
}
