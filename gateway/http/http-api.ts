/**
 * The REST surface: Jupyter's /api (kernels, kernelspecs, sessions) with the status codes Jupyter
 * Server and Kernel Gateway use, plus the security API. Errors are `{reason, message}`, never a
 * traceback.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import { z } from 'zod';
import { isAuthorized } from './auth.js';
import type { GatewayConfig } from '../base/config.js';
import { asGatewayError, GatewayError } from '../base/errors.js';
import { sendJsonError as sendError } from './json-errors.js';
import type { KernelRegistry } from '../kernel/kernel-registry.js';
import type { KernelSpecs } from '../kernel/kernelspecs.js';
import type { Logger } from '../base/logger.js';
import type { GatewayMetrics } from '../base/metrics.js';
import type { SecurityService } from './security-service.js';
import { NOT_AN_OBJECT, parseBody } from './request-body.js';
import { SessionCreateBody, SessionPatchBody, type SessionStore } from './sessions.js';

const API_VERSION = '2.12.0';

export interface HttpApiDeps {
  config: GatewayConfig;
  kernels: KernelRegistry;
  sessions: SessionStore;
  specs: KernelSpecs;
  security: SecurityService;
  logger: Logger;
  isDraining: () => boolean;
  /** Served at GET /metrics (behind the same token as everything else). */
  metrics?: Pick<GatewayMetrics, 'contentType' | 'render'>;
  /** The agent surface (execute, workspace files, MCP): parses its own bodies. */
  agentApi?: express.Router;
  /** POST /api/chat and its conversations: parses its own bodies. */
  chatApi?: express.Router;
  /** The security console's static page (/console): no data in it, served without the token. */
  consolePage?: express.Router;
  /** What the console reads beyond the security API (events, stats), behind the token. */
  consoleApi?: express.Router;
}

const KERNEL_ID = '"kernel_id" must be a UUID';

/** POST /api/kernels; KernelRegistry.start applies the defaults and filters env. */
export const KernelStartBody = z.object(
  {
    name: z.string({ error: '"name" must be a string' }).nullish(),
    env: z
      .record(z.string(), z.unknown(), { error: '"env" must be an object of strings' })
      .nullish(),
    kernel_id: z.guid({ error: KERNEL_ID }).nullish(),
  },
  { error: NOT_AN_OBJECT },
);

/** The kernel a request path names (`/api/kernels/{id}...`), as a log field. */
function kernelOfPath(p: string): { kernel?: string } {
  const m = /^\/api\/kernels\/([^/]+)/.exec(p);
  return m?.[1] ? { kernel: m[1] } : {};
}

function param(req: Request, name: string): string {
  const v = req.params[name];
  return typeof v === 'string' ? v : '';
}

export function createHttpApi(deps: HttpApiDeps): express.Express {
  const { config, kernels, sessions, specs, security, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  if (deps.consolePage) app.use(deps.consolePage);

  // CORS per configuration; OPTIONS is answered without auth (as Kernel Gateway does).
  app.use((req: Request, res: Response, next: NextFunction) => {
    const origin = req.headers.origin;
    if (origin && (config.allowOrigin.includes('*') || config.allowOrigin.includes(origin))) {
      res.setHeader('Access-Control-Allow-Origin', config.allowOrigin.includes('*') ? '*' : origin);
      res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type, X-XSRFToken');
      res.setHeader('Access-Control-Allow-Methods', 'GET, POST, PATCH, PUT, DELETE, OPTIONS');
      res.setHeader('Vary', 'Origin');
    }
    if (req.method === 'OPTIONS') {
      res.status(200).end();
      return;
    }
    if (deps.isDraining()) {
      sendError(res, new GatewayError('SHUTTING_DOWN', 'the gateway is shutting down'));
      return;
    }
    let url: URL;
    try {
      url = new URL(req.originalUrl, 'http://gateway');
    } catch {
      sendError(res, new GatewayError('BAD_REQUEST', 'the request URL is malformed'));
      return;
    }
    if (!isAuthorized(req, url, config.authToken, false)) {
      sendError(
        res,
        new GatewayError('AUTH_REQUIRED', 'a valid token is required (Authorization: token <T>)'),
      );
      return;
    }
    next();
  });
  // Before the JSON parser: uploads are raw bytes and /mcp takes larger JSON bodies.
  if (deps.agentApi) app.use(deps.agentApi);
  if (deps.chatApi) app.use(deps.chatApi);
  if (deps.consoleApi) app.use(deps.consoleApi);
  app.use(express.json({ limit: '1mb', type: () => true }));

  const metrics = deps.metrics;
  if (metrics) {
    app.get('/metrics', async (_req, res) => {
      res.setHeader('Content-Type', metrics.contentType);
      res.send(await metrics.render());
    });
  }

  app.get('/api', (_req, res) => {
    res.json({ version: API_VERSION });
  });

  // ---- kernelspecs ----
  app.get('/api/kernelspecs', (_req, res) => {
    res.json(specs.all());
  });
  app.get('/api/kernelspecs/:name', (req, res) => {
    res.json(specs.model(param(req, 'name')));
  });
  app.get('/kernelspecs/:name/:file', (req, res) => {
    const file = specs.resource(param(req, 'name'), param(req, 'file'));
    res.setHeader('Cache-Control', 'max-age=2592000');
    res.sendFile(file);
  });

  // ---- kernels ----
  app.get('/api/kernels', (_req, res) => {
    res.json(kernels.list().map((k) => k.model()));
  });
  app.post('/api/kernels', async (req, res) => {
    const kernel = await kernels.start(parseBody(KernelStartBody, req.body));
    res.status(201).location(`/api/kernels/${kernel.id}`).json(kernel.model());
  });
  app.get('/api/kernels/:id', (req, res) => {
    res.json(kernels.get(param(req, 'id')).model());
  });
  app.delete('/api/kernels/:id', async (req, res) => {
    await kernels.shutdown(param(req, 'id'));
    res.status(204).end();
  });
  app.post('/api/kernels/:id/interrupt', async (req, res) => {
    await kernels.get(param(req, 'id')).interrupt();
    res.status(204).end();
  });
  app.post('/api/kernels/:id/restart', async (req, res) => {
    const k = kernels.get(param(req, 'id'));
    await k.restart();
    res.status(200).json(k.model());
  });

  // ---- sessions ----
  app.get('/api/sessions', (_req, res) => {
    res.json(sessions.list());
  });
  app.post('/api/sessions', async (req, res) => {
    const s = await sessions.create(parseBody(SessionCreateBody, req.body));
    res.status(201).location(`/api/sessions/${s.id}`).json(s);
  });
  app.get('/api/sessions/:id', (req, res) => {
    res.json(sessions.get(param(req, 'id')));
  });
  app.patch('/api/sessions/:id', async (req, res) => {
    res.json(await sessions.patch(param(req, 'id'), parseBody(SessionPatchBody, req.body)));
  });
  app.delete('/api/sessions/:id', async (req, res) => {
    await sessions.delete(param(req, 'id'));
    res.status(204).end();
  });

  // ---- security ----
  app.post('/api/security/panic', async (_req, res) => {
    res.json(await security.panic());
  });
  app.get('/api/security/containers', async (_req, res) => {
    res.json(await security.containers());
  });
  app.delete('/api/security/containers/:id', async (req, res) => {
    await security.removeSandbox(param(req, 'id'));
    res.status(204).end();
  });
  app.delete('/api/security/sessions/:id', async (req, res) => {
    await security.removeSession(param(req, 'id'));
    res.status(204).end();
  });
  app.get('/api/security/health', async (_req, res) => {
    res.json(await security.health());
  });

  app.use((_req, res) => {
    sendError(res, new GatewayError('NOT_FOUND', 'Not Found'));
  });

  // Errors: body-parser errors carry a `type`; domain errors a code; anything else is hidden.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = err as { type?: string; status?: number };
    let ge: GatewayError;
    if (e.type === 'entity.parse.failed')
      ge = new GatewayError('BAD_JSON', 'the request body is not valid JSON');
    else if (e.type === 'entity.too.large')
      ge = new GatewayError('PAYLOAD_TOO_LARGE', 'the request body is too large');
    // The HTTP stack's other client errors: a malformed %-escape in a path parameter, an
    // unsupported charset or Content-Encoding, a body that does not decompress.
    else if (typeof e.status === 'number' && e.status >= 400 && e.status < 500)
      ge = new GatewayError(
        'BAD_REQUEST',
        'the request is malformed (URL encoding or body encoding)',
      );
    else ge = asGatewayError(err);
    if (ge.code === 'INTERNAL') logger.error({ err, path: req.path }, 'unhandled error');
    else logger.debug({ code: ge.code, path: req.path, ...kernelOfPath(req.path) }, ge.message);
    sendError(res, ge);
  });
  return app;
}
