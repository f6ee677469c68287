/**
 * The agent surface over HTTP: execute code and get one document back (or its events as they
 * happen, as SSE or NDJSON), a one-shot sandbox per request, workspace files in and out, and the
 * MCP endpoint. Mounted by http-api after authentication; it parses its own bodies (raw bytes for
 * uploads, JSON elsewhere).
 */
import express, { type Request, type Response } from 'express';
import { z } from 'zod';
import {
  assertRunnable,
  fileUrl,
  type AgentEvent,
  type AgentExecutor,
  type AgentRequest,
  type ExecutionDocument,
} from '../agent/agent-execution.js';
import type { GatewayConfig } from '../base/config.js';
import { asGatewayError, GatewayError } from '../base/errors.js';
import { jsonErrorBody } from './json-errors.js';
import { parseBody } from './request-body.js';
import { kernelEnvFrom } from '../kernel/kernel-env.js';
import type { KernelRegistry } from '../kernel/kernel-registry.js';
import type { Logger } from '../base/logger.js';
import type { McpGateway } from './mcp-server.js';
import {
  isTextMime,
  mimeTypeOf,
  workspacePath,
  type WorkspaceFiles,
} from '../agent/workspace-files.js';

export interface AgentApiDeps {
  config: GatewayConfig;
  kernels: KernelRegistry;
  executor: AgentExecutor;
  files: WorkspaceFiles;
  mcp: McpGateway;
  logger: Logger;
}

const ExecuteBody = z.strictObject({
  code: z.string(),
  timeout_s: z.number().positive().optional(),
  env: z.unknown().optional(),
});

/** Parses an execute body; `timeout_s` may not exceed the gateway's execution deadline. */
export function parseExecuteBody(
  body: unknown,
  config: Pick<GatewayConfig, 'execTimeoutS' | 'envAllowlist'>,
): AgentRequest & { rawEnv: unknown } {
  const { code, timeout_s: timeoutS, env } = parseBody(ExecuteBody, body, 'execute');
  if (timeoutS !== undefined && config.execTimeoutS > 0 && timeoutS > config.execTimeoutS) {
    throw new GatewayError(
      'BAD_REQUEST',
      `timeout_s must be at most the gateway's execution limit (AIDO_EXEC_TIMEOUT = ${config.execTimeoutS} s)`,
    );
  }
  const out: AgentRequest & { rawEnv: unknown } = {
    code,
    env: kernelEnvFrom(env, config.envAllowlist),
    rawEnv: env,
  };
  if (timeoutS !== undefined) out.timeoutMs = Math.round(timeoutS * 1000);
  return out;
}

type ResponseMode = 'json' | 'sse' | 'ndjson';

function responseMode(req: Request): ResponseMode {
  const best = req.accepts(['application/json', 'text/event-stream', 'application/x-ndjson']);
  if (best === 'text/event-stream') return 'sse';
  if (best === 'application/x-ndjson') return 'ndjson';
  return 'json';
}

/** Server-sent events or NDJSON lines: `{event, data}` per line. */
export class EventWriter {
  #keepalive: NodeJS.Timeout | undefined;

  constructor(
    private readonly res: Response,
    private readonly mode: 'sse' | 'ndjson',
  ) {
    res.status(200);
    res.setHeader(
      'Content-Type',
      mode === 'sse' ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
    );
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    // A quiet execution must not look like a dead connection to proxies.
    if (mode === 'sse') {
      this.#keepalive = setInterval(() => {
        res.write(': keepalive\n\n');
      }, 15_000);
    }
  }

  send(event: string, data: unknown): void {
    if (this.res.writableEnded) return;
    const json = JSON.stringify(data);
    this.res.write(
      this.mode === 'sse'
        ? `event: ${event}\ndata: ${json}\n\n`
        : `${JSON.stringify({ event, data })}\n`,
    );
  }

  end(): void {
    clearInterval(this.#keepalive);
    if (!this.res.writableEnded) this.res.end();
  }
}

function pathParam(req: Request): string {
  const p: unknown = req.params.path;
  // Express 5 hands a wildcard over as its decoded segments; a decoded segment may itself hold
  // "/" (from %2F), so the joined string is what workspacePath checks.
  return Array.isArray(p) ? p.join('/') : typeof p === 'string' ? p : '';
}

function param(req: Request, name: string): string {
  const v = req.params[name];
  return typeof v === 'string' ? v : '';
}

export function createAgentApi(deps: AgentApiDeps): express.Router {
  const { config, kernels, executor, files, mcp, logger } = deps;
  const router = express.Router();
  const json = express.json({ limit: '4mb', type: () => true });
  // MCP's write_file carries a file as base64 in JSON: room for the largest upload.
  const mcpJson = express.json({
    limit: Math.ceil((config.maxUploadBytes * 4) / 3) + 1024 ** 2,
    type: () => true,
  });
  const raw = express.raw({ limit: config.maxUploadBytes, type: () => true });

  const sandboxOf = (kernelId: string): string => assertRunnable(kernels.get(kernelId));

  /**
   * Answers an execution as JSON, SSE or NDJSON; `run` executes with the given event sink.
   * `finalize` runs (always, once) before the final document goes out: a one-shot sandbox is gone
   * by the time the client reads the answer.
   */
  async function answer(
    req: Request,
    res: Response,
    run: (
      onEvent: ((e: AgentEvent) => void) | undefined,
      signal: AbortSignal,
    ) => Promise<ExecutionDocument>,
    finalize: () => Promise<void> = () => Promise.resolve(),
  ): Promise<void> {
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const mode = responseMode(req);
    if (mode === 'json') {
      let doc: ExecutionDocument | undefined;
      try {
        doc = await run(undefined, abort.signal).catch((err: unknown) => {
          if (abort.signal.aborted) return undefined;
          throw err;
        });
      } finally {
        await finalize();
      }
      if (doc) res.json(doc);
      return;
    }
    const stream = new EventWriter(res, mode);
    let done: ExecutionDocument | undefined;
    try {
      await run((e) => {
        if (e.event === 'done') done = e.data;
        else stream.send(e.event, e.data);
      }, abort.signal);
    } catch (err) {
      if (!abort.signal.aborted) {
        const ge = asGatewayError(err);
        if (ge.code === 'INTERNAL') logger.error({ err }, 'agent execution failed');
        // Headers are gone: the failure is the last event.
        stream.send('failed', jsonErrorBody(ge));
      }
    } finally {
      await finalize();
      if (done) stream.send('done', done);
      stream.end();
    }
  }

  router.post('/api/kernels/:id/execute', json, async (req, res) => {
    const kernel = kernels.get(param(req, 'id'));
    const body = parseExecuteBody(req.body, config);
    assertRunnable(kernel);
    await answer(req, res, (onEvent, signal) =>
      executor.execute(kernel, body, {
        artifacts: 'url',
        signal,
        ...(onEvent ? { onEvent } : {}),
      }),
    );
  });

  router.post('/api/execute', json, async (req, res) => {
    const body = parseExecuteBody(req.body, config);
    // The env goes into the new sandbox at its start, like POST /api/kernels.
    const kernel = await kernels.start({ env: body.rawEnv });
    const request: AgentRequest = { code: body.code };
    if (body.timeoutMs !== undefined) request.timeoutMs = body.timeoutMs;
    await answer(
      req,
      res,
      (onEvent, signal) =>
        executor.execute(kernel, request, {
          artifacts: 'inline',
          signal,
          ...(onEvent ? { onEvent } : {}),
        }),
      // Nobody comes back for this sandbox: removed without the shutdown_request round.
      () =>
        kernels.terminate(kernel.id, 'one-shot execution finished').catch((err: unknown) => {
          logger.warn({ err: String(err), kernel: kernel.id }, 'one-shot kernel removal failed');
        }),
    );
  });

  // ---- workspace files ----
  router.get('/api/kernels/:id/files', async (req, res) => {
    const sandboxId = sandboxOf(param(req, 'id'));
    const query: unknown = req.query.path;
    res.json(await files.list(sandboxId, workspacePath(query ?? '')));
  });
  router.get('/api/kernels/:id/files/*path', async (req, res) => {
    const sandboxId = sandboxOf(param(req, 'id'));
    const rel = workspacePath(pathParam(req));
    const mime = mimeTypeOf(rel);
    try {
      // Streamed: the status and headers go out once the helper has said the file's size.
      await files.download(sandboxId, rel, (size) => {
        res.setHeader('Content-Type', isTextMime(mime) ? `${mime}; charset=utf-8` : mime);
        res.setHeader('Content-Length', String(size));
        res.setHeader('X-Content-Type-Options', 'nosniff');
        // Files written by sandboxed code: never let a browser run them with the gateway's origin.
        res.setHeader('Content-Security-Policy', "sandbox; default-src 'none'");
        res.status(200);
        return res;
      });
    } catch (err) {
      if (!res.headersSent) throw err;
      // Part of the body is out: cutting the connection short of Content-Length is the only
      // way left to tell the client.
      logger.warn({ err: String(err), kernel: param(req, 'id') }, 'download cut short');
      res.destroy();
      return;
    }
    res.end();
  });
  router.put('/api/kernels/:id/files/*path', raw, async (req, res) => {
    const kernelId = param(req, 'id');
    const sandboxId = sandboxOf(kernelId);
    const rel = workspacePath(pathParam(req));
    const body: unknown = req.body;
    const data = Buffer.isBuffer(body) ? body : Buffer.alloc(0);
    const entry = await files.write(sandboxId, rel, data);
    res.status(entry.created ? 201 : 200).json({
      ...entry,
      mime_type: mimeTypeOf(entry.path),
      url: fileUrl(kernelId, entry.path),
    });
  });
  router.delete('/api/kernels/:id/files/*path', async (req, res) => {
    const sandboxId = sandboxOf(param(req, 'id'));
    await files.remove(sandboxId, workspacePath(pathParam(req)));
    res.status(204).end();
  });

  // ---- MCP (streamable HTTP) ----
  router.all('/mcp', mcpJson, async (req, res) => {
    await mcp.handle(req, res);
  });

  // A path whose percent-encoding does not decode is a bad path, not a server error.
  router.use((err: unknown, _req: Request, _res: Response, next: (err?: unknown) => void): void => {
    if (err instanceof URIError || (err as { status?: number } | null)?.status === 400) {
      if ((err as { type?: string }).type === undefined) {
        next(new GatewayError('BAD_PATH', 'the path is not valid percent-encoding'));
        return;
      }
    }
    next(err);
  });
  return router;
}
