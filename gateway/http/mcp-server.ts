/**
 * The gateway as an MCP server (streamable HTTP at /mcp, behind the same token as the rest of the
 * API). Tools: run_python, list_files, read_file, write_file, reset. Each MCP session gets its own
 * kernel on first use (unless a tool names a kernel_id), shut down when the session closes: by the
 * client's DELETE, after AIDO_MCP_IDLE_TIMEOUT without a request, or when the gateway stops.
 */
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { assertRunnable, type AgentExecutor } from '../agent/agent-execution.js';
import { clip, toolResultOf, type Content } from '../agent/tool-result.js';
import type { GatewayConfig } from '../base/config.js';
import { asGatewayError, GatewayError } from '../base/errors.js';
import type { KernelRegistry } from '../kernel/kernel-registry.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Logger } from '../base/logger.js';
import { mimeTypeOf, workspacePath, type WorkspaceFiles } from '../agent/workspace-files.js';

export interface McpGatewayOptions {
  config: GatewayConfig;
  kernels: KernelRegistry;
  executor: AgentExecutor;
  files: WorkspaceFiles;
  logger: Logger;
}

const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

function errorResult(err: unknown): CallToolResult {
  const ge = asGatewayError(err);
  return { content: [{ type: 'text', text: `${ge.code}: ${ge.message}` }], isError: true };
}

/**
 * One MCP client (what the MCP specification calls a session, named by its Mcp-Session-Id): its
 * transport, server, and the kernel it started (if any). "Session" in this gateway means only
 * Jupyter's /api/sessions.
 */
class McpClient {
  lastUsed = Date.now();
  /** POSTs (tool calls) under way: a session is not idle while one runs. */
  active = 0;
  #kernel: Promise<Kernel> | undefined;
  #kernelId: string | undefined;
  #closed = false;

  constructor(
    readonly transport: StreamableHTTPServerTransport,
    private readonly kernels: KernelRegistry,
    private readonly logger: Logger,
  ) {}

  /** The kernel a tool call works on: `kernel_id`, else this session's own (started on first use). */
  async kernel(kernelId: string | undefined): Promise<Kernel> {
    if (kernelId !== undefined) return this.kernels.get(kernelId);
    if (this.#closed) throw new GatewayError('SHUTTING_DOWN', 'the MCP session is closing');
    if (this.#kernelId !== undefined) {
      const own = this.kernels.find(this.#kernelId);
      if (own && !own.closing) return own;
      // Shut down from elsewhere (DELETE /api/kernels/{id}, panic): the next call starts afresh.
      this.#kernel = undefined;
      this.#kernelId = undefined;
    }
    this.#kernel ??= this.kernels.start({}).then(
      (k) => {
        this.#kernelId = k.id;
        this.logger.info({ kernel: k.id }, 'MCP session kernel started');
        return k;
      },
      (err: unknown) => {
        this.#kernel = undefined;
        throw err;
      },
    );
    return this.#kernel;
  }

  /** Whether this session has started a kernel of its own. */
  get ownKernelId(): string | undefined {
    return this.#kernelId;
  }

  /** Shuts the session's own kernel down. Idempotent. */
  async closeKernel(): Promise<void> {
    this.#closed = true;
    const pending = this.#kernel;
    this.#kernel = undefined;
    const k = await pending?.catch(() => undefined);
    if (k && this.kernels.find(k.id)) {
      await this.kernels.shutdown(k.id).catch((err: unknown) => {
        this.logger.warn({ err: String(err), kernel: k.id }, 'MCP session kernel shutdown failed');
      });
    }
  }
}

/** The MCP endpoint: sessions keyed by Mcp-Session-Id. */
export class McpGateway {
  readonly #sessions = new Map<string, McpClient>();
  /** Sessions opened and not yet closed, initialized or not: what the cap counts. */
  readonly #live = new Set<McpClient>();
  readonly #reaper: NodeJS.Timeout | undefined;
  #closing = false;

  constructor(private readonly opts: McpGatewayOptions) {
    const idleMs = opts.config.mcpIdleTimeoutS * 1000;
    if (idleMs > 0) {
      this.#reaper = setInterval(
        () => {
          const cutoff = Date.now() - idleMs;
          for (const s of this.#sessions.values())
            if (s.active === 0 && s.lastUsed < cutoff) void s.transport.close();
        },
        Math.min(60_000, idleMs),
      );
      this.#reaper.unref();
    }
  }

  /** Open MCP sessions. */
  get size(): number {
    return this.#sessions.size;
  }

  /** Handles POST (messages), GET (the server's event stream) and DELETE (end) on /mcp. */
  async handle(req: Request, res: Response): Promise<void> {
    const header = req.headers['mcp-session-id'];
    const sessionId = Array.isArray(header) ? header[0] : header;
    const body: unknown = req.body;
    if (sessionId !== undefined) {
      const session = this.#sessions.get(sessionId);
      if (!session) {
        // The spec's answer to an unknown (expired) session: 404, and the client starts afresh.
        res.status(404).json({
          jsonrpc: '2.0',
          error: { code: -32001, message: 'Session not found' },
          id: null,
        });
        return;
      }
      session.lastUsed = Date.now();
      // Ending the session ends its kernel first, so the client's DELETE returns once it is gone.
      if (req.method === 'DELETE') await session.closeKernel();
      if (req.method === 'POST') {
        session.active++;
        // The answer may be an SSE stream that outlives handleRequest: count until it closes.
        res.once('close', () => {
          session.active--;
          session.lastUsed = Date.now();
        });
      }
      await session.transport.handleRequest(req, res, body);
      return;
    }
    if (req.method !== 'POST' || !isInitializeRequest(body) || this.#closing) {
      res.status(400).json({
        jsonrpc: '2.0',
        error: { code: -32000, message: 'Bad Request: no valid session id (initialize first)' },
        id: null,
      });
      return;
    }
    const max = this.opts.config.maxMcpSessions;
    if (this.#live.size >= max) {
      this.opts.logger.warn({ max }, 'MCP session refused: at the cap');
      res.status(503).json({
        jsonrpc: '2.0',
        error: {
          code: -32000,
          message: `too many MCP sessions: ${max} are open (AIDO_MAX_MCP_SESSIONS); close one (DELETE /mcp) or retry after an idle one expires`,
        },
        id: null,
      });
      return;
    }
    const session = this.#open();
    try {
      await session.transport.handleRequest(req, res, body);
    } finally {
      // An initialize the transport refused leaves no session behind to count.
      if (session.transport.sessionId === undefined) this.#live.delete(session);
    }
  }

  #open(): McpClient {
    const { kernels, logger } = this.opts;
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        this.#sessions.set(id, session);
        logger.info({ mcp_session: id }, 'MCP session opened');
      },
    });
    const session = new McpClient(transport, kernels, logger);
    this.#live.add(session);
    transport.onclose = () => {
      this.#live.delete(session);
      const id = transport.sessionId;
      if (id !== undefined) this.#sessions.delete(id);
      logger.info({ mcp_session: id, kernel: session.ownKernelId }, 'MCP session closed');
      void session.closeKernel();
    };
    const server = this.#server(session);
    // connect() starts the transport; it cannot fail for a transport that was never started.
    void server.connect(transport);
    return session;
  }

  #server(session: McpClient): McpServer {
    const { config, executor, files } = this.opts;
    const server = new McpServer({ name: 'aido-kernel-gateway', version: '0.1.0' });
    const kernelId = z
      .string()
      .optional()
      .describe('a kernel of this gateway; default: this MCP session’s own sandbox');

    server.registerTool(
      'run_python',
      {
        description:
          'Run Python code in a sandboxed IPython kernel (no network; /workspace holds files; state persists between calls). Returns stdout/stderr, results, errors with tracebacks, files created in /workspace, and plots as PNG images.',
        inputSchema: {
          code: z.string().describe('Python source to execute'),
          kernel_id: kernelId,
          timeout_s: z
            .number()
            .positive()
            .optional()
            .describe(
              `seconds before the execution is interrupted (at most ${config.execTimeoutS})`,
            ),
        },
      },
      async ({ code, kernel_id, timeout_s }) => {
        try {
          if (timeout_s !== undefined && config.execTimeoutS > 0 && timeout_s > config.execTimeoutS)
            throw new GatewayError(
              'BAD_REQUEST',
              `timeout_s must be at most ${config.execTimeoutS}`,
            );
          const kernel = await session.kernel(kernel_id);
          const doc = await executor.execute(
            kernel,
            {
              code,
              ...(timeout_s !== undefined ? { timeoutMs: Math.round(timeout_s * 1000) } : {}),
            },
            { artifacts: 'url' },
          );
          return toolResultOf(doc);
        } catch (err) {
          return errorResult(err);
        }
      },
    );

    server.registerTool(
      'list_files',
      {
        description: 'List a directory of the sandbox’s /workspace (name, type, size, mtime).',
        inputSchema: {
          path: z
            .string()
            .optional()
            .describe('directory relative to /workspace (default: /workspace)'),
          kernel_id: kernelId,
        },
      },
      async ({ path, kernel_id }) => {
        try {
          const sandboxId = assertRunnable(await session.kernel(kernel_id));
          const listing = await files.list(sandboxId, workspacePath(path ?? ''));
          return { content: [{ type: 'text', text: clip(JSON.stringify(listing, null, 1)) }] };
        } catch (err) {
          return errorResult(err);
        }
      },
    );

    server.registerTool(
      'read_file',
      {
        description:
          'Read a file from /workspace: UTF-8 text as text; anything else as base64 (images also as image content).',
        inputSchema: {
          path: z.string().describe('file relative to /workspace'),
          kernel_id: kernelId,
        },
      },
      async ({ path, kernel_id }) => {
        try {
          const sandboxId = assertRunnable(await session.kernel(kernel_id));
          const rel = workspacePath(path);
          const bytes = await files.readForAgent(sandboxId, rel);
          const mime = mimeTypeOf(rel);
          const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
          if (!IMAGE_TYPES.has(mime)) {
            try {
              return { content: [{ type: 'text', text: clip(text.decode(bytes)) }] };
            } catch {
              // not UTF-8: base64 below
            }
          }
          const b64 = bytes.toString('base64');
          const content: Content[] = [
            {
              type: 'text',
              text: `${rel}: ${bytes.length} bytes, ${mime}, base64:\n${clip(b64)}`,
            },
          ];
          if (IMAGE_TYPES.has(mime)) content.push({ type: 'image', data: b64, mimeType: mime });
          return { content };
        } catch (err) {
          return errorResult(err);
        }
      },
    );

    server.registerTool(
      'write_file',
      {
        description: 'Create or replace a file in /workspace (parent directories are created).',
        inputSchema: {
          path: z.string().describe('file relative to /workspace'),
          content: z.string().describe('the file content'),
          encoding: z
            .enum(['utf-8', 'base64'])
            .optional()
            .describe('how content is encoded (default utf-8)'),
          kernel_id: kernelId,
        },
      },
      async ({ path, content, encoding, kernel_id }) => {
        try {
          const rel = workspacePath(path);
          const data =
            encoding === 'base64' ? Buffer.from(content, 'base64') : Buffer.from(content, 'utf8');
          if (data.length > config.maxUploadBytes)
            throw new GatewayError(
              'PAYLOAD_TOO_LARGE',
              `the file is larger than AIDO_MAX_UPLOAD_BYTES (${config.maxUploadBytes} bytes)`,
            );
          const sandboxId = assertRunnable(await session.kernel(kernel_id));
          const entry = await files.write(sandboxId, rel, data);
          return {
            content: [
              { type: 'text', text: `wrote /workspace/${entry.path} (${entry.size} bytes)` },
            ],
          };
        } catch (err) {
          return errorResult(err);
        }
      },
    );

    server.registerTool(
      'reset',
      {
        description:
          'Restart the kernel on a fresh sandbox: Python state and /workspace files are gone.',
        inputSchema: { kernel_id: kernelId },
      },
      async ({ kernel_id }) => {
        try {
          if (kernel_id === undefined && session.ownKernelId === undefined)
            return {
              content: [{ type: 'text', text: 'no kernel yet: a fresh one starts on first use' }],
            };
          const kernel = await session.kernel(kernel_id);
          await kernel.restart();
          return {
            content: [{ type: 'text', text: `kernel ${kernel.id} restarted on a fresh sandbox` }],
          };
        } catch (err) {
          return errorResult(err);
        }
      },
    );
    return server;
  }

  /** Closes every session (and their kernels). */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#reaper);
    const sessions = [...this.#sessions.values()];
    await Promise.allSettled(sessions.map((s) => s.transport.close()));
    await Promise.allSettled(sessions.map((s) => s.closeKernel()));
  }
}
